"""Children that never outlive the harness: PR_SET_PDEATHSIG where it is safe, plus a watchdog."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1
PARENT_PID_ENV = "HARNESS_PARENT_PID"


def die_with_parent(expected_ppid: int | None = None, poll_s: float = 0.5, pdeathsig: bool = True) -> None:
    """Exit when the parent process does.

    PDEATHSIG fires when the parent *thread* that forked us exits, so it is only used for children
    spawned from a long-lived thread (`pdeathsig`); the watchdog thread covers the rest, and the
    fork/prctl race.
    """
    parent = expected_ppid if expected_ppid is not None else os.getppid()
    if pdeathsig and sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def die_with_parent_if_asked(pdeathsig: bool = False) -> None:
    """die_with_parent() when the harness named itself in HARNESS_PARENT_PID (it does for its children)."""
    parent = os.environ.get(PARENT_PID_ENV, "")
    if parent.isdigit() and int(parent) == os.getppid():
        die_with_parent(int(parent), pdeathsig=pdeathsig)
