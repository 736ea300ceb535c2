"""The history of a run: everything the checks may read, all of it files in the run directory.

- `events.jsonl`: the harness's own log (submissions, responses, status polls, faults, phases).
- `ledger/*.jsonl`: step executions appended by the workers (see harness.probe).
- `promises.json`: the server's promises for the run's jobs, read over its HTTP API at the end.
- `sink.db`: the idempotent sink the workflow writes its effects to.
- `run.json`: what was run (scenario, backend, seed, versions, settings).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from harness.errors import HarnessError
from harness.stack import LegacyStack, get_stack

EVENTS = "events.jsonl"
PROMISES = "promises.json"
RUN_META = "run.json"


class EventLog:
    """Append-only, thread-safe JSON-lines log of what the harness did and saw."""

    ECHOED = ("phase", "fault", "heal", "armed", "worker-exit", "lost", "error")

    def __init__(self, run_dir: Path, echo: Callable[[str], None] | None = None) -> None:
        self.path = run_dir / EVENTS
        self.t0 = time.time()
        self.echo = echo  # progress lines for a person watching a long run
        self._lock = threading.Lock()
        self._f = open(self.path, "a", buffering=1)  # noqa: SIM115 - closed in close()

    def append(self, kind: str, **fields: Any) -> dict[str, Any]:
        rec = {"kind": kind, "t": time.time(), **fields}
        line = json.dumps(rec, sort_keys=True, default=str)
        with self._lock:
            self._f.write(line + "\n")
        if self.echo is not None and kind in self.ECHOED:
            what = " ".join(
                f"{k}={v}" for k, v in fields.items() if k not in ("trace", "attempt", "expected")
            )
            self.echo(f"harness: +{rec['t'] - self.t0:6.1f}s {kind} {what}")
        return rec

    def close(self) -> None:
        with self._lock:
            self._f.close()


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Records of a JSON-lines file; a torn last line (writer killed mid-write) is skipped."""
    out = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def read_ledger(ledger_dir: Path) -> list[dict[str, Any]]:
    records = [r for p in sorted(ledger_dir.glob("*.jsonl")) for r in read_jsonl(p)]
    return sorted(records, key=lambda r: r["t"])


class LedgerTail:
    """The ledger of a running cluster, read incrementally: each call reads only what was appended
    since the last one (complete lines only), for live fault targeting during a run."""

    def __init__(self, ledger_dir: Path) -> None:
        self.dir = ledger_dir
        self._offsets: dict[Path, int] = {}
        self._records: list[dict[str, Any]] = []

    def read(self) -> list[dict[str, Any]]:
        """Every record so far, in time order."""
        fresh = []
        for path in sorted(self.dir.glob("*.jsonl")):
            offset = self._offsets.get(path, 0)
            with open(path, "rb") as f:
                f.seek(offset)
                data = f.read()
            complete = data[: data.rfind(b"\n") + 1]  # a line being written is read next time
            self._offsets[path] = offset + len(complete)
            for line in complete.splitlines():
                with contextlib.suppress(json.JSONDecodeError):
                    fresh.append(json.loads(line))
        if fresh:
            self._records = sorted(self._records + fresh, key=lambda r: r["t"])
        return self._records


def snapshot_promises(server_api: str, run_dir: Path, pattern: str = "doc/*") -> list[dict[str, Any]]:
    """Read every promise matching `pattern` from the server (paginated) into promises.json."""
    promises: list[dict[str, Any]] = []
    params: dict[str, Any] = {"id": pattern, "limit": 100}
    while True:
        try:
            res = requests.get(f"{server_api}/promises", params=params, timeout=10)
            res.raise_for_status()
        except requests.RequestException as e:
            raise HarnessError(f"the server's promise list at {server_api}", seen=str(e)) from e
        body = res.json()
        promises.extend(body.get("promises") or [])
        if not body.get("cursor"):
            break
        params = {"cursor": body["cursor"]}
    promises.sort(key=lambda p: p["id"])
    (run_dir / PROMISES).write_text(json.dumps(promises, indent=1))
    return promises


def read_sink(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        conn.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in conn.execute("SELECT * FROM effects ORDER BY t")]
        except sqlite3.OperationalError:
            return []


@dataclass
class History:
    """A loaded run: the only input of the checks."""

    run_dir: Path
    meta: dict[str, Any]
    events: list[dict[str, Any]]
    ledger: list[dict[str, Any]]
    promises: list[dict[str, Any]]
    sink: list[dict[str, Any]]
    _by_job: dict[str, list[dict[str, Any]]] = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, run_dir: Path) -> History:
        run_dir = Path(run_dir)
        meta_path = run_dir / RUN_META
        if not meta_path.exists():
            raise HarnessError(f"a run directory with {RUN_META}", seen=f"none in {run_dir}")
        promises_path = run_dir / PROMISES
        return cls(
            run_dir=run_dir,
            meta=json.loads(meta_path.read_text()),
            events=read_jsonl(run_dir / EVENTS) if (run_dir / EVENTS).exists() else [],
            ledger=read_ledger(run_dir / "ledger"),
            promises=json.loads(promises_path.read_text()) if promises_path.exists() else [],
            sink=read_sink(run_dir / "sink.db"),
        )

    # --- views used by checks and reports --------------------------------------------------
    @property
    def stack(self) -> LegacyStack:
        """The Resonate generation the run used: how to read its promises."""
        return get_stack(self.meta.get("stack", "legacy"))

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["kind"] == kind]

    def by_job(self, kind: str) -> defaultdict[str, list[dict[str, Any]]]:
        """Events of one kind grouped by their job_id (an absent job gets an empty list)."""
        grouped: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
        for e in self.of_kind(kind):
            grouped[e["job_id"]].append(e)
        return grouped

    def jobs(self) -> dict[str, dict[str, Any]]:
        """Every job the harness submitted, by jobId, with its expected result."""
        return {e["job"]["jobId"]: e for e in self.of_kind("job")}

    def accepted(self) -> set[str]:
        return {e["job_id"] for e in self.of_kind("response") if e.get("status") == 202}

    def ledger_of(self, job_id: str) -> list[dict[str, Any]]:
        if not self._by_job:
            grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for r in self.ledger:
                if "job" in r:
                    grouped[r["job"]].append(r)
            self._by_job = dict(grouped)
        return self._by_job.get(job_id, [])

    def faults(self) -> list[dict[str, Any]]:
        return self.of_kind("fault")
