"""Failpoints armed by the harness: exact fault placement inside a step execution.

HARNESS_FAILPOINTS names a JSON file ``[{"id", "root", "pos", "at", "action", "seconds"}]`` that the
harness replaces atomically. `root` is the root promise id, `pos` the step's position (``"3"``,
``"4.1"``). `at` is where in the step it fires: ``before`` (the step has not started), ``during``
(after its start record), ``after_effect`` (right after the app's declared effect function
returned), ``after`` (after its end record, before the SDK stores the checkpoint). `action`:
``crash`` (SIGKILL itself), ``hang`` (sleep for ever), ``hold`` (wait `seconds`, or until the
harness creates ``<id>.release``: the harness strikes the process while it waits).
Each failpoint fires once per run: the first process to create ``<id>.fired`` wins.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

from harness.agent import ledger

SITES = ("before", "during", "after_effect", "after")
ACTIONS = ("crash", "hang", "hold")
FAILPOINTS_ENV = "HARNESS_FAILPOINTS"

_cache: tuple[int, list[dict[str, Any]]] = (-1, [])


def _armed() -> list[dict[str, Any]]:
    global _cache
    path = os.environ.get(FAILPOINTS_ENV)
    if not path:
        return []
    try:
        mtime = os.stat(path).st_mtime_ns
    except OSError:
        return []
    if mtime != _cache[0]:
        try:
            _cache = (mtime, json.loads(Path(path).read_text()))
        except (OSError, ValueError):
            return _cache[1]
    return _cache[1]


def check(site: str, root: str, pos: str, **context: Any) -> None:
    """Fire the failpoint armed at this site of step `pos` of root `root`, if any."""
    try:
        armed = _armed()
    except Exception as e:
        ledger.warn("failpoint check failed", e)
        return
    for fp in armed:
        if fp.get("root") != root or fp.get("pos") != pos or fp.get("at") != site:
            continue
        directory = Path(os.environ[FAILPOINTS_ENV]).parent
        try:
            os.close(os.open(directory / f"{fp['id']}.fired", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            continue
        except OSError as e:
            ledger.warn("failpoint marker", e)
            continue
        action = fp.get("action", "crash")
        ledger.record("failpoint", root=root, pos=pos, at=site, action=action, fp=fp["id"], **context)
        if action == "crash":
            os.kill(os.getpid(), signal.SIGKILL)
        if action == "hang":
            while True:
                time.sleep(3600)
        if action == "hold":
            release = directory / f"{fp['id']}.release"
            deadline = time.monotonic() + float(fp.get("seconds", 30))
            while time.monotonic() < deadline and not release.exists():
                time.sleep(0.01)
            ledger.record("released", fp=fp["id"], root=root, pos=pos)
        return
