"""The ledger: one append-only JSON-lines file per process in HARNESS_LEDGER_DIR.

Each record is a single ``os.write`` on an O_APPEND descriptor, so it reaches the kernel before the
next line of code runs and survives a SIGKILL of its writer. Writing never raises into the app: a
failure is logged once on stderr and the record is dropped.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

LEDGER_ENV = "HARNESS_LEDGER_DIR"
MEMBER_ENV = "HARNESS_WORKER_ID"  # the member's name: worker-1, lambda-3, replay

_fd: int | None = None
_pid: int | None = None
_lock = threading.Lock()
_warned = False


def member() -> str:
    return os.environ.get(MEMBER_ENV, f"pid-{os.getpid()}")


def _open() -> int | None:
    global _fd, _pid
    if _fd is not None and _pid == os.getpid():
        return _fd
    directory = os.environ.get(LEDGER_ENV)
    if not directory:
        return None
    Path(directory).mkdir(parents=True, exist_ok=True)
    path = Path(directory) / f"{member()}.{os.getpid()}.jsonl"
    _fd, _pid = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644), os.getpid()
    return _fd


def warn(what: str, error: BaseException | str) -> None:
    """The agent's own errors: logged (once per process), never raised."""
    global _warned
    if not _warned:
        _warned = True
        print(f"harness-agent[{os.getpid()}]: {what}: {error!r} (further agent errors are not shown)",
              file=sys.stderr, flush=True)  # fmt: skip


def record(ev: str, **fields: Any) -> None:
    """Append one ledger record (a no-op without a ledger directory)."""
    try:
        with _lock:
            fd = _open()
            if fd is None:
                return
            rec = {"ev": ev, "worker": member(), "pid": os.getpid(), "t": time.time(), **fields}
            os.write(fd, (json.dumps(rec, sort_keys=True, default=repr) + "\n").encode())
    except Exception as e:  # the instrumentation never breaks the app
        warn("ledger write failed", e)
