"""What the system under test writes for the harness: ledger records and failpoints.

Imported by the workflow's step wrappers inside worker processes; no SDK imports here.

Ledger: one append-only JSON-lines file per worker process in HARNESS_LEDGER_DIR. Each record is a
single `os.write` on an O_APPEND descriptor, so it reaches the kernel before the next line of
code runs and survives a SIGKILL of its writer. A `start` without an `end` for the same attempt
is the evidence of an interrupted step.

Failpoints: HARNESS_FAILPOINTS names a JSON file of armed failpoints
(`[{"id", "job", "step", "at", "action"}]`). `at` is where in a step it fires:
`before` (the previous step is checkpointed, this one has not started), `during` (after the
start record), `after_effect` (after the sink write), `after` (after the end record, before the
SDK checkpoints the value). `action` is `crash` (SIGKILL itself) or `hang` (sleep for ever).
Each failpoint fires once per run: the first process to create `<id>.fired` wins.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

FAILPOINT_SITES = ("before", "during", "after_effect", "after")

_ledger_fd: int | None = None


def worker_id() -> str:
    return os.environ.get("HARNESS_WORKER_ID", f"pid-{os.getpid()}")


def _fd() -> int | None:
    global _ledger_fd
    directory = os.environ.get("HARNESS_LEDGER_DIR")
    if not directory:
        return None
    if _ledger_fd is None:
        Path(directory).mkdir(parents=True, exist_ok=True)
        path = Path(directory) / f"{worker_id()}.{os.getpid()}.jsonl"
        _ledger_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    return _ledger_fd


def record(ev: str, **fields: Any) -> None:
    """Append one ledger record (a no-op when no ledger directory is configured)."""
    fd = _fd()
    if fd is None:
        return
    rec = {"ev": ev, "worker": worker_id(), "pid": os.getpid(), "t": time.time(), **fields}
    os.write(fd, (json.dumps(rec, sort_keys=True) + "\n").encode())


def _failpoint(job_id: str, step: int, site: str) -> None:
    path = os.environ.get("HARNESS_FAILPOINTS")
    if not path or not os.path.exists(path):
        return
    with open(path) as f:
        armed = json.load(f)
    for fp in armed:
        if fp["job"] != job_id or fp["step"] != step or fp["at"] != site:
            continue
        marker = Path(path).with_name(f"{fp['id']}.fired")
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            continue
        record("failpoint", job=job_id, step=step, at=site, action=fp["action"], fp=fp["id"])
        if fp["action"] == "crash":
            os.kill(os.getpid(), signal.SIGKILL)
        while fp["action"] == "hang":
            time.sleep(3600)


def step_durations() -> list[float]:
    """WORKFLOW_STEP_SECONDS: one duration for all five steps, or five comma-separated ones."""
    raw = os.environ.get("WORKFLOW_STEP_SECONDS", "0.5")
    values = [float(x) for x in raw.split(",")]
    return values * 5 if len(values) == 1 else values


def execute(
    job: dict[str, Any],
    step: int,
    name: str,
    compute: Callable[[], Any],
    effect: Callable[[Any, str], None] | None = None,
) -> Any:
    """Run one step execution with ledger records, its configured duration and failpoints.

    `effect(value, attempt)` is the step's side effect (a sink write), made halfway through.
    """
    job_id = job["jobId"]
    _failpoint(job_id, step, "before")
    attempt = uuid.uuid4().hex
    record("start", job=job_id, step=step, name=name, attempt=attempt)
    _failpoint(job_id, step, "during")
    half = step_durations()[step - 1] / 2
    time.sleep(half)
    value = compute()
    if effect is not None:
        effect(value, attempt)
        _failpoint(job_id, step, "after_effect")
    time.sleep(half)
    record("end", job=job_id, step=step, name=name, attempt=attempt, value=value)
    _failpoint(job_id, step, "after")
    return value
