"""Offline replay: ``python -m harness.agent.replay RUN_DIR SCRIPT`` writes RUN_DIR/replay.json.

The determinism oracle. It loads the app's worker script as ``__main__`` with ``Resonate.start``
stopped (so the script registers its functions and returns instead of serving), then, for every
root promise of the run (promises.json), drives the registered workflow function with the
server's checkpoint values, the way the SDK replays a generator: each step it asks for is
answered with the value stored at that position, never run. It records what the workflow asked
for at each position and what it returned; the checks compare that with the ledger and with the
root promise's value. Generator sub-steps are replayed the same way, recursively.

With HARNESS_ORACLE (``module:function``), it also computes the app's declared expected value of
every job from its submitted body (events.jsonl ``job`` records).

Output: ``{"roots": {root id: {"fn", "asked": [{"id", "pos", "fn", "kind"}], "vd", "value", "error",
"incomplete", "subs": {child id: {...}}}}, "expected": {job: {"vd", "value", "error"}}, "error"}``.
"""

from __future__ import annotations

import importlib
import inspect
import json
import runpy
import sys
import traceback
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from harness.agent.hooks import encoded, position
from harness.agent.worker import prepare_imports

ORACLE_ENV = "HARNESS_ORACLE"
OUTPUT = "replay.json"
MAX_ASKS = 10_000


class _Loaded(Exception):
    """Raised by the stubbed Resonate.start: the worker script has registered its functions."""

    def __init__(self, client: Any) -> None:
        self.client = client


def load_app(script: str) -> Any:
    """Run the worker script up to resonate.start(); return its Resonate client."""
    from resonate import Resonate

    def start(self: Any) -> None:
        raise _Loaded(self)

    Resonate.start = start  # type: ignore[method-assign]
    prepare_imports(script)
    sys.argv = [script]
    try:
        runpy.run_path(script, run_name="__main__")
    except _Loaded as loaded:
        return loaded.client
    raise RuntimeError(f"{script} returned without calling resonate.start()")


class Checkpoints:
    """The server's promises of the run, decoded with the SDK's own encoders."""

    def __init__(self, promises: list[dict[str, Any]]) -> None:
        from resonate.encoders import Base64Encoder
        from resonate.options import Options

        self.by_id = {p["id"]: p for p in promises}
        self._store = SimpleNamespace(encoder=Base64Encoder())
        self._encoder = Options().get_encoder()

    def durable(self, pid: str) -> Any:
        from resonate.models.durable_promise import DurablePromise

        p = self.by_id.get(pid)
        if p is None:
            return None
        return DurablePromise.from_dict(self._store, {"timeout": 0, "createdOn": 0, **p})

    def result(self, pid: str) -> Any:
        """Ok/Ko of a completed promise; None if it is missing or pending."""
        promise = self.durable(pid)
        if promise is None or promise.pending:
            return None
        return promise.result(self._encoder)

    def param(self, pid: str) -> Any:
        promise = self.durable(pid)
        return self._encoder.decode(promise.param.to_tuple()) if promise is not None else None


def _info(pid: str) -> Any:
    return SimpleNamespace(attempt=1, idempotency_key=pid, tags={}, timeout=0.0, version=1)


def drive(
    client: Any, func: Any, root: str, pid: str, args: Any, kwargs: Any, cps: Checkpoints
) -> dict[str, Any]:
    """Replay one generator body (root or sub-step) against the checkpoints."""
    from resonate.coroutine import AWT, LFI, RFI, TRM, Coroutine
    from resonate.models.result import Ko, Ok

    out: dict[str, Any] = {"fn": getattr(func, "__qualname__", repr(func)), "asked": [], "subs": {},
                           "incomplete": False, "error": None}  # fmt: skip
    try:
        ctx = client._bridge._ctx(pid, root, _info(pid))
        co = Coroutine(pid, root, func(ctx, *args, **kwargs))
        nxt: Any = None
        for _ in range(MAX_ASKS):
            cmd = co.send(nxt)
            if isinstance(cmd, (LFI, RFI)):
                fn = (
                    getattr(cmd.func, "__qualname__", "?")
                    if isinstance(cmd, LFI)
                    else getattr(cmd.conv, "name", "?")
                )
                out["asked"].append({"id": cmd.id, "pos": position(root, cmd.id), "fn": fn,
                                     "kind": "local" if isinstance(cmd, LFI) else "remote"})  # fmt: skip
                if isinstance(cmd, LFI) and inspect.isgeneratorfunction(cmd.func):
                    out["subs"][cmd.id] = drive(client, cmd.func, root, cmd.id, cmd.args, cmd.kwargs, cps)
                nxt = AWT(cmd.id)
            elif isinstance(cmd, AWT):
                result = cps.result(cmd.id)
                if result is None:  # the job did not get this far: replay stops here
                    out["incomplete"] = True
                    return out
                nxt = result
            elif isinstance(cmd, TRM):
                if isinstance(cmd.result, Ok):
                    out["value"], out["vd"] = encoded(cmd.result.value)
                elif isinstance(cmd.result, Ko):
                    out["error"] = f"{type(cmd.result.value).__name__}: {cmd.result.value}"
                return out
        out["error"] = f"more than {MAX_ASKS} steps asked"
    except StopIteration:
        out["error"] = "the body ended without a value"
    except Exception as e:
        out["error"] = f"{type(e).__name__}: {e}"
    return out


def replay_all(client: Any, promises: list[dict[str, Any]]) -> dict[str, Any]:
    cps = Checkpoints(promises)
    registry = client._registry
    roots: dict[str, Any] = {}
    for p in promises:
        if (p.get("tags") or {}).get("resonate:scope") != "global":
            continue
        try:
            param = cps.param(p["id"]) or {}
            _, func, _ = registry.get(param["func"], param.get("version", 0) or 0)
        except Exception as e:
            roots[p["id"]] = {"error": f"no registered function for this root: {e}", "asked": [], "subs": {}}
            continue
        if not inspect.isgeneratorfunction(func):
            roots[p["id"]] = {"fn": func.__qualname__, "asked": [], "subs": {}, "error": None, "plain": True}
            continue
        roots[p["id"]] = drive(client, func, p["id"], p["id"], tuple(param.get("args") or ()),
                               dict(param.get("kwargs") or {}), cps)  # fmt: skip
    return roots


def expected_values(oracle: str, run_dir: Path) -> dict[str, Any]:
    module, _, name = oracle.partition(":")
    func = getattr(importlib.import_module(module), name)
    out: dict[str, Any] = {}
    events = run_dir / "events.jsonl"
    for line in events.read_text().splitlines() if events.exists() else []:
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if not isinstance(e, dict) or e.get("kind") != "job":
            continue
        try:
            value, vd = encoded(func(e.get("body")))
            out[e["job_id"]] = {"value": value, "vd": vd, "error": None}
        except Exception as exc:
            out[e["job_id"]] = {"error": f"{type(exc).__name__}: {exc}"}
    return out


def main(argv: list[str] | None = None) -> int:
    import os

    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 2:
        print("usage: python -m harness.agent.replay RUN_DIR WORKER_SCRIPT", file=sys.stderr)
        return 2
    run_dir, script = Path(args[0]), args[1]
    result: dict[str, Any] = {"roots": {}, "expected": {}, "error": None}
    try:
        promises = json.loads((run_dir / "promises.json").read_text())
        client = load_app(script)
        result["roots"] = replay_all(client, promises)
        if os.environ.get(ORACLE_ENV):
            result["expected"] = expected_values(os.environ[ORACLE_ENV], run_dir)
    except BaseException as e:  # one line in the file, the trace on stderr
        traceback.print_exc()
        result["error"] = f"{type(e).__name__}: {e}"
    tmp = run_dir / (OUTPUT + ".tmp")
    tmp.write_text(json.dumps(result, indent=1, default=repr))
    tmp.replace(run_dir / OUTPUT)
    return 0 if result["error"] is None else 1


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os_exit = __import__("os")._exit
    os_exit(code)  # the app's module-scope threads must not keep a finished replay alive
