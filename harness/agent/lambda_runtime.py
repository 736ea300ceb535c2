"""A Lambda-like instance process: one cold start, then one invocation at a time.

``python -m harness.agent.lambda_runtime --handler module:function`` installs the SDK hooks
(harness.agent.hooks), imports the app's handler module once (its cold start; import roots from
HARNESS_APP_PATH), then speaks JSON lines: stdin carries requests, stdout replies. A request's
``harness`` fields (the submission it carries) name the invocation in the ledger's dispatch records.

    -> (after import)  {"type": "ready", "pid": 123, "module": "...", "init_ms": 41.2}
    -> (import failed) {"type": "init_error", "errorType": "...", "errorMessage": "..."}
    <- {"id": "r1", "event": {...API Gateway proxy event...}, "deadline_ms": 1700000000000,
        "harness": {"sub": 12, "job": "j1"}}
    -> {"type": "result", "id": "r1", "response": {...}, "duration_ms": 3.1}
    -> {"type": "error", "id": "r1", "errorType": "...", "errorMessage": "...", "stackTrace": [...]}

The protocol owns the original stdout; file descriptor 1 (print, subprocesses) is redirected to
stderr, where all logs go. The process exits when stdin closes, and dies with its parent
(PR_SET_PDEATHSIG plus a parent-pid watchdog), so an instance never outlives its gateway.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
import time
import traceback
import uuid
from collections.abc import Callable
from typing import IO, Any

from harness.agent import hooks, lifecycle
from harness.agent.worker import prepare_imports

logger = logging.getLogger("harness.agent.lambda_runtime")


class LambdaContext:
    """The subset of the AWS Lambda context object a handler may use."""

    def __init__(self, request_id: str, function_name: str, deadline_ms: float) -> None:
        self.aws_request_id = request_id
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = 128
        self.invoked_function_arn = f"arn:aws:lambda:local:000000000000:function:{function_name}"
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = f"local/{os.getpid()}"
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the integration times out."""
        return max(0, int(self._deadline_ms - time.time() * 1000))


def _take_stdout() -> IO[str]:
    """Return a private text stream on the original stdout; fd 1 then points to stderr."""
    proto_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(proto_fd, "w", encoding="utf-8", buffering=1)


def _send(out: IO[str], msg: dict[str, Any]) -> None:
    """Write one protocol line; an unserialisable reply becomes an error reply."""
    try:
        line = json.dumps(msg, separators=(",", ":"))
    except (TypeError, ValueError) as e:
        line = json.dumps(_error_reply(msg.get("id"), e), separators=(",", ":"))
    out.write(line + "\n")
    out.flush()


def _error_reply(req_id: Any, exc: BaseException) -> dict[str, Any]:
    return {
        "type": "error",
        "id": req_id,
        "errorType": type(exc).__name__,
        "errorMessage": str(exc),
        "stackTrace": traceback.format_exception(exc),
    }


def _invoke(
    handler: Callable[[Any, Any], Any], function_name: str, request: dict[str, Any]
) -> dict[str, Any]:
    """Run one invocation; any handler failure becomes an error reply."""
    req_id = request.get("id")
    event = request.get("event")
    request_id = str(req_id) if req_id is not None else uuid.uuid4().hex
    deadline_ms = float(request.get("deadline_ms") or time.time() * 1000 + 29_000)
    ctx = LambdaContext(request_id, function_name, deadline_ms)
    start = time.perf_counter()
    marks = request.get("harness") if isinstance(request.get("harness"), dict) else {}
    hooks.set_invocation(request_id, **marks)
    try:
        response = handler(event, ctx)
    except Exception as e:
        logger.exception("invocation %s failed", req_id)
        return _error_reply(req_id, e)
    finally:
        hooks.set_invocation(None)
    duration_ms = round((time.perf_counter() - start) * 1000, 3)
    return {"type": "result", "id": req_id, "response": response, "duration_ms": duration_ms}


def serve(module_name: str, handler_name: str = "handler") -> int:
    """Import the module (cold start), then serve invocations until stdin closes."""
    out = _take_stdout()
    start = time.perf_counter()
    prepare_imports()
    hooks.install("lambda")
    try:
        module = importlib.import_module(module_name)
        handler = getattr(module, handler_name)
        if not callable(handler):
            raise TypeError(f"{module_name}.{handler_name} is not callable")
    except BaseException as e:
        logger.exception("cold start of %s failed", module_name)
        _send(out, {"type": "init_error", "errorType": type(e).__name__, "errorMessage": str(e)})
        return 1
    init_ms = round((time.perf_counter() - start) * 1000, 3)
    _send(out, {"type": "ready", "pid": os.getpid(), "module": module_name, "init_ms": init_ms})

    function_name = module_name.rsplit(".", 1)[-1]
    sys.stdin.reconfigure(encoding="utf-8", errors="replace")  # type: ignore[union-attr]
    for raw in sys.stdin:
        if not raw.strip():
            continue
        try:
            request = json.loads(raw)
            if not isinstance(request, dict):
                raise ValueError("request must be a JSON object")
        except ValueError as e:
            _send(out, _error_reply(None, e))
            continue
        _send(out, _invoke(handler, function_name, request))
    return 0


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--handler", required=True, help="module:function, the app's Lambda entry point")
    args = parser.parse_args(argv)
    module, sep, function = args.handler.partition(":")
    if not sep or not module or not function:
        parser.error("--handler module:function")

    logging.basicConfig(
        level=os.environ.get("HARNESS_LOG_LEVEL", "INFO"),
        stream=sys.stderr,
        format=f"%(asctime)s lambda[{os.getpid()}] %(levelname)s %(name)s: %(message)s",
    )
    lifecycle.die_with_parent_if_asked(pdeathsig=True)
    code = serve(module, function)
    sys.stderr.flush()
    # SDK threads may block interpreter shutdown; an instance simply ends.
    os._exit(code)


if __name__ == "__main__":
    main()
