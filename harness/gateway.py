"""API Gateway (REST, proxy integration) + Lambda simulator.

``python -m harness.gateway --host 127.0.0.1 --port P --instances N --handler MOD:FUNC [--resource R ...] --log FILE``

A threaded HTTP server turns each request into an API Gateway REST (v1) proxy event and hands
it to an idle instance from a pool of N ``harness.agent.lambda_runtime`` subprocesses, each running
one invocation at a time after a single cold start (module import). Lambda-like behaviour:

- all instances busy: wait up to ``--throttle-wait`` seconds, then 429 (throttling);
- an instance dies mid-request: 502, and a fresh instance (new cold start) replaces it;
- an invocation over ``--timeout`` (default 29 s): 504, the instance is killed and replaced;
- a handler exception or malformed proxy response: 502, the instance stays warm.

Idle instances are picked least-recently-used first, so a fresh instance serves next.
Requests are mapped to the API's resources (``--resource /status/{jobId}``: path parameters, else
``/{proxy+}``). The harness marks its requests with ``X-Harness-Sub`` / ``X-Harness-Job``; the
gateway takes those headers out of the event and hands them to the instance beside it, so the
instrumentation can attribute what the invocation dispatched.
One JSON line per proxied request goes to ``--log`` (time, request_id, method, path, instance,
pid, cold_start, status, latency_ms, outcome). Admin routes (not proxied, not logged):
``GET /_gateway/instances`` and ``POST /_gateway/instances/{id}/kill`` (SIGKILL).

Fault hook (the API Gateway timeout case: the Lambda did its work, the client never heard):
``POST /_gateway/faults/die-after-handler`` with ``{"jobId": X, "status": 502|504, "count": 1}``
arms "the next invocation the harness marked with job X (``X-Harness-Job: X``) dies after its
handler returned and before the reply is written": the instance is SIGKILLed once its handler has replied (so the
handler's side effects, e.g. ``begin_rpc``, happened), its reply is dropped, the client gets
502 (instance crashed) or 504 (integration timeout, without waiting the full timeout), and a
fresh instance replaces it. ``GET /_gateway/faults`` lists armed and fired faults (each fired one
with the instance, its pid and the status the handler had returned); ``DELETE /_gateway/faults``
disarms everything.
``gateway ready on http://HOST:PORT`` is printed once every instance finished its cold start.
Instances die with the gateway (PR_SET_PDEATHSIG, parent watchdog, stdin EOF).

``Gateway`` runs all this in-process; ``GatewayProcess`` runs the command as a subprocess.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import itertools
import json
import logging
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import IO, Any
from urllib.parse import parse_qs, unquote, urlsplit

import requests

from harness.agent.lifecycle import PARENT_PID_ENV, die_with_parent

logger = logging.getLogger("harness.gateway")

HARNESS_ROOT = Path(__file__).resolve().parent.parent  # the directory holding the harness package
MARK_HEADERS = {"x-harness-sub": "sub", "x-harness-job": "job"}
READY_PREFIX = "gateway ready on "
ADMIN_PREFIX = "/_gateway/"
MAX_PAYLOAD_BYTES = 10 * 1024 * 1024  # API Gateway's request payload limit
DRAIN_LIMIT_BYTES = 64 * 1024 * 1024
KILL_RE = re.compile(r"/_gateway/instances/([^/]+)/kill")
FAULTS_PATH = "/_gateway/faults"
DIE_AFTER_HANDLER_PATH = "/_gateway/faults/die-after-handler"
DEATH_STATUSES = {
    502: ("Internal server error", "fault_crash"),
    504: ("Endpoint request timed out", "fault_timeout"),
}


@dataclass
class Instance:
    """One Lambda-like instance process and its bookkeeping (guarded by the pool lock)."""

    id: str
    proc: subprocess.Popen[str]
    spawned_at: float
    replies: queue.Queue[dict[str, Any] | None] = field(default_factory=queue.Queue)
    state: str = "starting"  # starting | idle | busy | dead
    init_ms: float | None = None
    cold_start_ms: float | None = None
    invocations: int = 0
    last_used: float = 0.0
    exit_code: int | None = None
    kill_reason: str | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "pid": self.pid,
            "state": self.state,
            "busy": self.state == "busy",
            "invocations": self.invocations,
            "init_ms": self.init_ms,
            "cold_start_ms": self.cold_start_ms,
            "exit_code": self.exit_code,
            "kill_reason": self.kill_reason,
        }


@dataclass
class Outcome:
    """The HTTP answer to one proxied request, plus what the log needs."""

    status: int
    headers: dict[str, str]
    body: bytes
    kind: str
    instance: Instance | None = None
    cold_start: bool | None = None


def _json_body(status: int, payload: dict[str, Any], kind: str, **kw: Any) -> Outcome:
    body = json.dumps(payload).encode()
    return Outcome(status, {"Content-Type": "application/json"}, body, kind, **kw)


def match_resource(
    path: str, resources: list[str] | tuple[str, ...] = ()
) -> tuple[str, dict[str, str] | None]:
    """Map a raw request path to (resource, pathParameters) like the deployed REST API: the first
    resource whose segments match (``{name}`` takes one segment, ``{name+}`` the rest), else
    ``/{proxy+}``."""
    parts = path.split("/")
    for resource in resources:
        tmpl = resource.split("/")
        params: dict[str, str] = {}
        for i, seg in enumerate(tmpl):
            if seg.startswith("{") and seg.endswith("+}"):
                rest = "/".join(parts[i:])
                if rest:
                    params[seg[1:-2]] = unquote(rest)
                    return resource, params
                break
            if i >= len(parts):
                break
            if seg.startswith("{") and seg.endswith("}"):
                if not parts[i]:
                    break
                params[seg[1:-1]] = unquote(parts[i])
            elif seg != parts[i]:
                break
        else:
            if len(tmpl) == len(parts):
                return resource, params or None
    if path == "/":
        return "/", None
    return "/{proxy+}", {"proxy": unquote(path.lstrip("/"))}


def build_event(
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes,
    *,
    request_id: str,
    stage: str = "local",
    source_ip: str = "127.0.0.1",
    resources: list[str] | tuple[str, ...] = (),
) -> dict[str, Any]:
    """Build an API Gateway REST (v1) proxy integration event."""
    url = urlsplit(target)
    path = url.path or "/"
    resource, path_params = match_resource(path, resources)
    multi_query = parse_qs(url.query, keep_blank_values=True) if url.query else {}
    multi_headers: dict[str, list[str]] = {}
    for name, value in headers:
        multi_headers.setdefault(name, []).append(value)
    if not body:
        body_field, is_b64 = None, False
    else:
        try:
            body_field, is_b64 = body.decode("utf-8"), False
        except UnicodeDecodeError:
            body_field, is_b64 = base64.b64encode(body).decode("ascii"), True
    now = time.time()
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": {k: v[-1] for k, v in multi_headers.items()} or None,
        "multiValueHeaders": multi_headers or None,
        "queryStringParameters": {k: v[-1] for k, v in multi_query.items()} or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": path_params,
        "stageVariables": None,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            "domainName": multi_headers.get("Host", ["localhost"])[-1],
            "httpMethod": method,
            "identity": {"sourceIp": source_ip, "userAgent": multi_headers.get("User-Agent", [None])[-1]},
            "path": f"/{stage}{path}",
            "protocol": "HTTP/1.1",
            "requestId": request_id,
            "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "requestTimeEpoch": int(now * 1000),
            "resourceId": "local",
            "resourcePath": resource,
            "stage": stage,
        },
        "body": body_field,
        "isBase64Encoded": is_b64,
    }


def proxy_response(response: Any) -> tuple[int, dict[str, str], bytes] | None:
    """Validate a Lambda proxy response; None if malformed (API Gateway answers 502)."""
    if not isinstance(response, dict):
        return None
    status = response.get("statusCode")
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        return None
    headers: dict[str, str] = {}
    for name, values in (response.get("multiValueHeaders") or {}).items():
        if isinstance(values, list) and values:
            headers[str(name)] = ", ".join(str(v) for v in values)
    raw_headers = response.get("headers") or {}
    if not isinstance(raw_headers, dict):
        return None
    headers.update({str(k): str(v) for k, v in raw_headers.items()})
    body = response.get("body")
    if body is None:
        data = b""
    elif isinstance(body, str):
        try:
            data = base64.b64decode(body) if response.get("isBase64Encoded") else body.encode("utf-8")
        except (ValueError, UnicodeEncodeError):
            return None
    else:
        return None
    return status, headers, data


class Gateway:
    """In-process API Gateway + Lambda pool. ``start()`` returns once all instances are warm."""

    def __init__(
        self,
        handler: str,
        *,
        resources: list[str] | tuple[str, ...] = (),
        cwd: str | os.PathLike[str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        instances: int = 3,
        log_path: str | os.PathLike[str] | None = None,
        timeout: float = 29.0,
        throttle_wait: float = 10.0,
        cold_start_timeout: float = 60.0,
        stage: str = "local",
        env: dict[str, str] | None = None,
        python: str = sys.executable,
    ) -> None:
        if instances < 1:
            raise ValueError("instances must be >= 1")
        self.handler = handler
        self.resources = tuple(resources)
        self.cwd = str(cwd or os.getcwd())
        self.host = host
        self.port = port
        self.size = instances
        self.log_path = Path(log_path) if log_path else None
        self.timeout = timeout
        self.throttle_wait = throttle_wait
        self.cold_start_timeout = cold_start_timeout
        self.stage = stage
        self.python = python
        self.env = self._child_env(env)

        self._cond = threading.Condition()
        self._live: dict[str, Instance] = {}
        self._dead: deque[Instance] = deque(maxlen=100)
        self._ids = itertools.count(1)
        self._stopping = False
        self._starting = True
        self._init_failures: list[str] = []
        self._replacements = 0
        self._spawn_q: queue.Queue[float | None] = queue.Queue()
        self._spawner = threading.Thread(target=self._spawn_loop, name="gateway-spawner", daemon=True)
        self._log_lock = threading.Lock()
        self._log_file: IO[str] | None = None
        self._httpd: _Server | None = None
        self._http_thread: threading.Thread | None = None
        self._fault_ids = itertools.count(1)
        self._armed: list[dict[str, Any]] = []  # guarded by self._cond
        self._fired: deque[dict[str, Any]] = deque(maxlen=1000)

    # ----- lifecycle -----

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        """Bind, cold-start all instances, then serve HTTP in a background thread."""
        if self.log_path:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_file = self.log_path.open("a", encoding="utf-8", buffering=1)
        self._httpd = _Server((self.host, self.port), _make_handler(self))
        self.port = self._httpd.server_address[1]
        self._spawner.start()
        for _ in range(self.size):
            self._spawn_q.put(0.0)
        deadline = time.monotonic() + self.cold_start_timeout
        with self._cond:
            while self._ready_count() < self.size:
                if self._init_failures or self._stopping:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._init_failures.append(f"cold start exceeded {self.cold_start_timeout}s")
                    break
                self._cond.wait(min(remaining, 0.2))
            failures = list(self._init_failures)
            self._starting = False
        if failures or self._stopping:
            self.stop()
            raise RuntimeError("gateway start failed: " + ("; ".join(failures) or "stopped"))
        self._http_thread = threading.Thread(
            target=self._httpd.serve_forever, name="gateway-http", daemon=True
        )
        self._http_thread.start()

    def stop(self) -> None:
        """Stop serving and SIGKILL every instance; idempotent."""
        with self._cond:
            self._stopping = True
            procs = [i.proc for i in self._live.values()]
            self._cond.notify_all()
        if self._httpd is not None:
            if self._http_thread is not None:
                self._httpd.shutdown()
            self._httpd.server_close()
        for proc in procs:
            _kill(proc)
        for proc in procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                logger.error("instance pid %s did not die", proc.pid)
        self._spawn_q.put(None)
        if self._spawner.is_alive():
            self._spawner.join(timeout=5)
        if self._log_file is not None:
            with self._log_lock:
                self._log_file.close()
                self._log_file = None

    def __enter__(self) -> Gateway:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----- instances -----

    def _child_env(self, extra: dict[str, str] | None) -> dict[str, str]:
        env = {**os.environ, **(extra or {})}
        paths = [str(HARNESS_ROOT), *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        env["PYTHONUNBUFFERED"] = "1"
        env[PARENT_PID_ENV] = str(os.getpid())
        return env

    def _ready_count(self) -> int:
        return sum(1 for i in self._live.values() if i.state in ("idle", "busy"))

    def _spawn_loop(self) -> None:
        """Spawn every instance from this one long-lived thread (PDEATHSIG follows the thread)."""
        while (delay := self._spawn_q.get()) is not None:
            if delay:
                time.sleep(delay)
            try:
                self._spawn()
            except Exception:
                logger.exception("spawning an instance failed; retrying")
                self._spawn_q.put(1.0)

    def _spawn(self) -> None:
        cmd = [self.python, "-m", "harness.agent.lambda_runtime", "--handler", self.handler]
        with self._cond:
            if self._stopping:
                return
            inst_id = f"lambda-{next(self._ids)}"
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=None,
                env={**self.env, "HARNESS_WORKER_ID": inst_id},
                cwd=self.cwd,
                text=True,
                encoding="utf-8",
                bufsize=1,
            )
            inst = Instance(inst_id, proc, time.monotonic())
            self._live[inst_id] = inst
        logger.info("spawned %s pid %s", inst_id, proc.pid)
        threading.Thread(target=self._read_loop, args=(inst,), name=f"reader-{inst_id}", daemon=True).start()

    def _read_loop(self, inst: Instance) -> None:
        """Read an instance's stdout: the ready line, then replies; handle its exit on EOF."""
        assert inst.proc.stdout is not None
        for line in inst.proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                logger.warning("%s wrote a non-protocol line: %r", inst.id, line[:200])
                continue
            if not isinstance(msg, dict):
                continue
            kind = msg.get("type")
            if kind == "ready":
                self._on_ready(inst, msg)
            elif kind == "init_error":
                logger.error(
                    "%s cold start failed: %s: %s", inst.id, msg.get("errorType"), msg.get("errorMessage")
                )
                with self._cond:
                    if self._starting:
                        self._init_failures.append(
                            f"{inst.id}: {msg.get('errorType')}: {msg.get('errorMessage')}"
                        )
            else:
                inst.replies.put(msg)
        inst.replies.put(None)
        inst.exit_code = inst.proc.wait()
        self._on_exit(inst)

    def _on_ready(self, inst: Instance, msg: dict[str, Any]) -> None:
        with self._cond:
            if inst.state != "starting":
                return
            inst.init_ms = msg.get("init_ms")
            inst.cold_start_ms = round((time.monotonic() - inst.spawned_at) * 1000, 3)
            inst.state = "idle"
            self._cond.notify_all()
        logger.info("%s pid %s warm (cold start %.1f ms)", inst.id, inst.pid, inst.cold_start_ms)

    def _on_exit(self, inst: Instance) -> None:
        with self._cond:
            was = inst.state
            inst.state = "dead"
            self._live.pop(inst.id, None)
            self._dead.append(inst)
            if self._starting and was == "starting":
                self._init_failures.append(f"{inst.id} exited with {inst.exit_code} during cold start")
            elif not self._stopping:
                self._replacements += 1
                self._spawn_q.put(1.0 if was == "starting" else 0.0)
            self._cond.notify_all()
        if not self._stopping:
            logger.warning(
                "%s pid %s exited (%s, reason %s); replacing",
                inst.id,
                inst.pid,
                inst.exit_code,
                inst.kill_reason,
            )

    def instances(self) -> dict[str, Any]:
        """Snapshot of live and recently dead instances."""
        with self._cond:
            return {
                "instances": [i.describe() for i in self._live.values()],
                "dead": [i.describe() for i in self._dead],
                "replacements": self._replacements,
                "size": self.size,
                "timeout_s": self.timeout,
            }

    def kill_instance(self, inst_id: str, reason: str = "admin") -> dict[str, Any] | None:
        """SIGKILL one live instance; None if unknown."""
        with self._cond:
            inst = self._live.get(inst_id)
            if inst is None:
                return None
            inst.kill_reason = inst.kill_reason or reason
        _kill(inst.proc)
        return {"id": inst.id, "pid": inst.pid, "signal": "SIGKILL"}

    def _acquire(self) -> Instance | None:
        deadline = time.monotonic() + self.throttle_wait
        with self._cond:
            while not self._stopping:
                idle = [i for i in self._live.values() if i.state == "idle"]
                if idle:
                    inst = min(idle, key=lambda i: i.last_used)
                    inst.state = "busy"
                    return inst
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)
        return None

    def _release(self, inst: Instance) -> None:
        with self._cond:
            inst.last_used = time.monotonic()
            if inst.state == "busy":
                inst.state = "idle"
                self._cond.notify_all()

    # ----- invocation -----

    def invoke(self, event: dict[str, Any], marks: dict[str, Any] | None = None) -> Outcome:
        """Run one event on an idle instance, with Lambda's throttling/crash/timeout semantics.

        `marks` (the harness's submission and job) travel beside the event to the instance."""
        marks = marks or {}
        inst = self._acquire()
        if inst is None:
            return _json_body(429, {"message": "Too Many Requests"}, "throttled")
        with self._cond:
            cold = inst.invocations == 0
            inst.invocations += 1
        request_id = event["requestContext"]["requestId"]
        deadline = time.monotonic() + self.timeout
        line = json.dumps({"id": request_id, "event": event, "harness": marks,
                           "deadline_ms": int((time.time() + self.timeout) * 1000)})  # fmt: skip
        writer = threading.Thread(target=_write_line, args=(inst.proc, line), daemon=True)
        writer.start()
        writer.join(self.timeout)
        msg: dict[str, Any] | None
        timed_out = writer.is_alive()
        while not timed_out:
            try:
                msg = inst.replies.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                timed_out = True
                break
            if msg is None:
                return _json_body(
                    502, {"message": "Internal server error"}, "crashed", instance=inst, cold_start=cold
                )
            if msg.get("id") == request_id:
                break
        if timed_out:
            self.kill_instance(inst.id, reason="timeout")
            return _json_body(
                504, {"message": "Endpoint request timed out"}, "timeout", instance=inst, cold_start=cold
            )
        fault = self._claim_death(marks.get("job"))
        if fault is not None:
            return self._die_after_handler(inst, fault, msg, request_id, cold)
        self._release(inst)
        if msg.get("type") != "result":
            logger.warning("%s handler error: %s: %s", inst.id, msg.get("errorType"), msg.get("errorMessage"))
            return _json_body(
                502, {"message": "Internal server error"}, "handler_error", instance=inst, cold_start=cold
            )
        parsed = proxy_response(msg.get("response"))
        if parsed is None:
            logger.warning("%s returned a malformed proxy response", inst.id)
            return _json_body(
                502,
                {"message": "Internal server error"},
                "malformed_response",
                instance=inst,
                cold_start=cold,
            )
        status, headers, body = parsed
        return Outcome(status, headers, body, "ok", instance=inst, cold_start=cold)

    # ----- fault hook: die after the handler returned, before the reply is written -----

    def arm_death(self, job_id: str, status: int = 502, count: int = 1) -> dict[str, Any]:
        """Arm: the next `count` invocations the harness marked with job `job_id` die after their handler."""
        if not isinstance(job_id, str) or not job_id:
            raise ValueError("jobId must be a non-empty string")
        if status not in DEATH_STATUSES:
            raise ValueError(f"status must be one of {sorted(DEATH_STATUSES)}")
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError("count must be a whole number >= 1")
        fault = {"id": f"fault-{next(self._fault_ids)}", "kind": "die-after-handler", "jobId": job_id,
                 "status": status, "remaining": count, "armed_at": time.time()}  # fmt: skip
        with self._cond:
            self._armed.append(fault)
        logger.info("armed %s: next %d invocation(s) with jobId %s die after the handler (%d)",
                    fault["id"], count, job_id, status)  # fmt: skip
        return dict(fault)

    def faults(self) -> dict[str, Any]:
        with self._cond:
            return {"armed": [dict(f) for f in self._armed], "fired": list(self._fired)}

    def disarm(self) -> int:
        with self._cond:
            n = len(self._armed)
            self._armed.clear()
        return n

    def _claim_death(self, job_id: str | None) -> dict[str, Any] | None:
        """The armed fault this invocation fires, if the harness marked it with an armed job."""
        if job_id is None:
            return None
        with self._cond:
            for fault in self._armed:
                if fault["jobId"] == job_id:
                    fault["remaining"] -= 1
                    if fault["remaining"] <= 0:
                        self._armed.remove(fault)
                    return dict(fault)
        return None

    def _die_after_handler(
        self, inst: Instance, fault: dict[str, Any], msg: dict[str, Any], request_id: str, cold: bool
    ) -> Outcome:
        """The instance dies with the handler's reply unsent; the client gets 502 or 504."""
        with self._cond:
            inst.kill_reason = f"fault:{fault['id']}"
        _kill(inst.proc)
        with contextlib.suppress(subprocess.TimeoutExpired):
            inst.proc.wait(timeout=5)
        response = msg.get("response")
        handler_status = response.get("statusCode") if isinstance(response, dict) else None
        fired = {"id": fault["id"], "kind": fault["kind"], "jobId": fault["jobId"], "status": fault["status"],
                 "instance": inst.id, "pid": inst.pid, "request_id": request_id,
                 "handler_status": handler_status, "handler_reply": msg.get("type"), "at": time.time()}  # fmt: skip
        with self._cond:
            self._fired.append(fired)
        logger.warning("%s pid %s killed by %s after its handler returned %s (jobId %s); answering %d",
                       inst.id, inst.pid, fault["id"], handler_status, fault["jobId"], fault["status"])  # fmt: skip
        message, kind = DEATH_STATUSES[fault["status"]]
        return _json_body(fault["status"], {"message": message}, kind, instance=inst, cold_start=cold)

    def log_request(
        self, request_id: str, method: str, path: str, outcome: Outcome, latency_s: float
    ) -> None:
        """Append one JSON line for a proxied request."""
        inst = outcome.instance
        record = {
            "time": round(time.time(), 6),
            "request_id": request_id,
            "method": method,
            "path": path,
            "instance": inst.id if inst else None,
            "pid": inst.pid if inst else None,
            "cold_start": outcome.cold_start,
            "status": outcome.status,
            "latency_ms": round(latency_s * 1000, 3),
            "outcome": outcome.kind,
        }
        with self._log_lock:
            if self._log_file is not None:
                self._log_file.write(json.dumps(record) + "\n")

    def admin(self, method: str, path: str, body: bytes = b"") -> Outcome:
        """Serve the /_gateway/ admin routes."""
        if path == FAULTS_PATH:
            if method == "GET":
                return _json_body(200, self.faults(), "admin")
            if method == "DELETE":
                return _json_body(200, {"disarmed": self.disarm()}, "admin")
            return _json_body(405, {"message": "Method Not Allowed"}, "admin")
        if path == DIE_AFTER_HANDLER_PATH:
            if method != "POST":
                return _json_body(405, {"message": "Method Not Allowed"}, "admin")
            try:
                spec = json.loads(body or b"{}")
                if not isinstance(spec, dict):
                    raise ValueError("body must be a JSON object")
                armed = self.arm_death(spec.get("jobId"), spec.get("status", 502), spec.get("count", 1))
            except ValueError as e:
                return _json_body(400, {"message": str(e)}, "admin")
            return _json_body(200, armed, "admin")
        if path == "/_gateway/instances":
            if method != "GET":
                return _json_body(405, {"message": "Method Not Allowed"}, "admin")
            return _json_body(200, self.instances(), "admin")
        if m := KILL_RE.fullmatch(path):
            if method != "POST":
                return _json_body(405, {"message": "Method Not Allowed"}, "admin")
            killed = self.kill_instance(unquote(m.group(1)))
            if killed is None:
                return _json_body(404, {"message": f"no live instance {m.group(1)}"}, "admin")
            return _json_body(200, killed, "admin")
        return _json_body(404, {"message": "Not Found"}, "admin")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256


def _write_line(proc: subprocess.Popen[str], line: str) -> None:
    try:
        assert proc.stdin is not None
        proc.stdin.write(line + "\n")
        proc.stdin.flush()
    except (OSError, ValueError):
        pass  # the instance died; its reader reports EOF


def split_marks(headers: list[tuple[str, str]]) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """The request's headers without the harness's marks, and the marks (sub as a number)."""
    kept, marks = [], {}
    for name, value in headers:
        key = MARK_HEADERS.get(name.lower())
        if key is None:
            kept.append((name, value))
        else:
            marks[key] = int(value) if key == "sub" and value.isdigit() else value
    return kept, marks


def _kill(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(OSError):
        proc.kill()


def _make_handler(gateway: Gateway) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        wbufsize = 1 << 16  # headers and body leave in one write (no Nagle/delayed-ACK stall)

        def setup(self) -> None:
            super().setup()
            with contextlib.suppress(OSError):
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def version_string(self) -> str:
            return "harness-gateway"

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("%s " + format, self.address_string(), *args)

        def _send(self, outcome: Outcome, request_id: str | None = None) -> None:
            self.send_response(outcome.status)
            headers = {
                k: v for k, v in outcome.headers.items() if k.lower() not in ("content-length", "connection")
            }
            for name, value in headers.items():
                self.send_header(name, value)
            if request_id:
                self.send_header("x-amzn-RequestId", request_id)
            if outcome.instance is not None:
                self.send_header("x-harness-instance", outcome.instance.id)
            self.send_header("Content-Length", str(len(outcome.body)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            try:
                if self.command != "HEAD":
                    self.wfile.write(outcome.body)
                self.wfile.flush()
            except OSError:
                self.close_connection = True

        def _read_body(self) -> bytes | Outcome:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                self.close_connection = True
                return _json_body(411, {"message": "Length Required"}, "rejected")
            raw = self.headers.get("Content-Length", "0") or "0"
            if not raw.isdigit():
                self.close_connection = True
                return _json_body(400, {"message": "Bad Content-Length"}, "rejected")
            length = int(raw)
            if length > MAX_PAYLOAD_BYTES:
                # Drain a moderately oversized body so the client sees the 413, not a reset.
                self.close_connection = True
                if length <= DRAIN_LIMIT_BYTES:
                    while length > 0 and (chunk := self.rfile.read(min(length, 1 << 20))):
                        length -= len(chunk)
                return _json_body(413, {"message": "Request Too Long"}, "rejected")
            return self.rfile.read(length) if length else b""

        def _handle(self) -> None:
            start = time.perf_counter()
            path = urlsplit(self.path).path or "/"
            if path.startswith(ADMIN_PREFIX):
                body = self._read_body()
                self._send(body if isinstance(body, Outcome) else gateway.admin(self.command, path, body))
                return
            request_id = str(uuid.uuid4())
            body = self._read_body()
            if isinstance(body, Outcome):
                outcome = body
            else:
                headers, marks = split_marks(list(self.headers.items()))
                event = build_event(
                    self.command,
                    self.path,
                    headers,
                    body,
                    request_id=request_id,
                    stage=gateway.stage,
                    source_ip=self.client_address[0],
                    resources=gateway.resources,
                )
                try:
                    outcome = gateway.invoke(event, marks)
                except Exception:
                    logger.exception("invocation failed inside the gateway")
                    outcome = _json_body(500, {"message": "Internal server error"}, "gateway_error")
            gateway.log_request(request_id, self.command, path, outcome, time.perf_counter() - start)
            self._send(outcome, request_id)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle

    return Handler


class GatewayProcess:
    """Run ``python -m harness.gateway`` as a subprocess; ``start()`` waits for its ready line."""

    def __init__(
        self,
        handler: str,
        *,
        resources: list[str] | tuple[str, ...] = (),
        cwd: str | os.PathLike[str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        instances: int = 3,
        log_path: str | os.PathLike[str] | None = None,
        stderr_path: str | os.PathLike[str] | None = None,
        timeout: float = 29.0,
        throttle_wait: float = 10.0,
        env: dict[str, str] | None = None,
        python: str = sys.executable,
        ready_timeout: float = 60.0,
    ) -> None:
        self.cmd = [*gateway_command(handler, resources=resources, host=host, port=port, instances=instances,
                                     python=python, timeout=timeout, throttle_wait=throttle_wait,
                                     log=log_path, cwd=cwd), "--exit-with-parent"]  # fmt: skip
        self.log_path = Path(log_path) if log_path else None
        self.stderr_path = Path(stderr_path) if stderr_path else None
        self.env = {**os.environ, **(env or {})}
        paths = [str(HARNESS_ROOT), *filter(None, self.env.get("PYTHONPATH", "").split(os.pathsep))]
        self.env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        self.ready_timeout = ready_timeout
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> str:
        """Start the gateway and return its base URL once all instances are warm."""
        stderr: IO[str] | None = self.stderr_path.open("a") if self.stderr_path else None
        try:
            self.proc = subprocess.Popen(
                self.cmd, stdout=subprocess.PIPE, stderr=stderr, env=self.env, text=True
            )
        finally:
            if stderr is not None:
                stderr.close()
        lines: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, name="gateway-stdout", daemon=True).start()
        deadline = time.monotonic() + self.ready_timeout
        while True:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None:
                self.stop()
                raise RuntimeError(f"gateway did not become ready (see {self.stderr_path or 'stderr'})")
            if line.startswith(READY_PREFIX):
                self.url = line[len(READY_PREFIX) :].strip()
                return self.url

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM the gateway (SIGKILL after ``timeout``); return its exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def instances(self) -> list[dict[str, Any]]:
        """Live instances as reported by the admin route."""
        res = requests.get(f"{self.url}/_gateway/instances", timeout=5)
        res.raise_for_status()
        return list(res.json()["instances"])

    def kill_instance(self, inst_id: str) -> dict[str, Any]:
        """SIGKILL one instance through the admin route."""
        res = requests.post(f"{self.url}/_gateway/instances/{inst_id}/kill", timeout=5)
        res.raise_for_status()
        return dict(res.json())

    def arm_death(self, job_id: str, status: int = 502, count: int = 1) -> dict[str, Any]:
        """Arm the die-after-handler fault for `job_id` through the admin route."""
        res = requests.post(f"{self.url}{DIE_AFTER_HANDLER_PATH}",
                            json={"jobId": job_id, "status": status, "count": count}, timeout=5)  # fmt: skip
        res.raise_for_status()
        return dict(res.json())

    def faults(self) -> dict[str, Any]:
        """Armed and fired faults as reported by the admin route."""
        res = requests.get(f"{self.url}{FAULTS_PATH}", timeout=5)
        res.raise_for_status()
        return dict(res.json())

    def __enter__(self) -> GatewayProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def gateway_command(handler: str, *, resources: list[str] | tuple[str, ...] = (), host: str = "127.0.0.1",
                    port: int = 0, instances: int = 3, python: str = sys.executable, timeout: float = 29.0,
                    throttle_wait: float = 10.0, log: str | os.PathLike[str] | None = None,
                    cwd: str | os.PathLike[str] | None = None) -> list[str]:  # fmt: skip
    """The command line of a gateway process (one place for both backends and GatewayProcess)."""
    cmd = [python, "-m", "harness.gateway", "--host", host, "--port", str(port), "--instances", str(instances),
           "--handler", handler, "--timeout", str(timeout), "--throttle-wait", str(throttle_wait)]  # fmt: skip
    for r in resources:
        cmd += ["--resource", r]
    if log:
        cmd += ["--log", str(log)]
    if cwd:
        cmd += ["--cwd", str(cwd)]
    return cmd


class _Shutdown(Exception):
    pass


def _on_signal(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise _Shutdown(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point: serve until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(description="API Gateway + Lambda simulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3000, help="0 picks a free port")
    parser.add_argument("--instances", type=int, default=3)
    parser.add_argument("--handler", required=True, help="module:function, the app's Lambda entry point")
    parser.add_argument(
        "--resource", action="append", default=[], help="an API resource, e.g. /status/{jobId}"
    )
    parser.add_argument("--cwd", help="working directory of the Lambda instances (the app's directory)")
    parser.add_argument("--log", help="JSON-lines request log")
    parser.add_argument("--timeout", type=float, default=29.0, help="integration timeout, seconds")
    parser.add_argument(
        "--throttle-wait", type=float, default=10.0, help="wait for an idle instance before 429"
    )
    parser.add_argument("--cold-start-timeout", type=float, default=60.0)
    parser.add_argument("--stage", default="local")
    parser.add_argument("--exit-with-parent", action="store_true", help="die when the parent process dies")
    args = parser.parse_args(argv)
    if args.instances < 1:
        parser.error("--instances must be >= 1")

    logging.basicConfig(
        level=os.environ.get("HARNESS_LOG_LEVEL", "INFO"),
        stream=sys.stderr,
        format="%(asctime)s gateway %(levelname)s %(message)s",
    )
    if args.exit_with_parent:  # not PDEATHSIG: the harness may spawn us from a short-lived thread
        die_with_parent(pdeathsig=False)
    gateway = Gateway(
        args.handler,
        resources=args.resource,
        cwd=args.cwd,
        host=args.host,
        port=args.port,
        instances=args.instances,
        log_path=args.log,
        timeout=args.timeout,
        throttle_wait=args.throttle_wait,
        cold_start_timeout=args.cold_start_timeout,
        stage=args.stage,
    )
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    code = 0
    try:
        gateway.start()
        print(f"{READY_PREFIX}{gateway.url}", flush=True)
        while True:
            time.sleep(3600)
    except _Shutdown as e:
        logger.info("received %s, shutting down", e)
    except (RuntimeError, OSError) as e:
        print(f"gateway: {e}", file=sys.stderr)
        code = 2
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        gateway.stop()
    return code


if __name__ == "__main__":
    sys.exit(main())
