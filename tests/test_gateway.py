"""Tests of the API Gateway + Lambda simulator and the seed's Lambda handler.

A real legacy Resonate server (no worker) sits behind the reference app's handler
(``lambda_function:handler`` in ``workflow/``, loaded as the harness loads any app: cwd and import
root the app's directory) run by ``harness.gateway`` with three instances. Server binary: the one
the harness runs (harness.stack: $RESONATE_SERVER_BIN, else what `harness setup` installed), through
the plugin's `server_versions` fixture; without one the server tests skip (fail when CI == "true").
The fault tests use a throwaway handler module and need no server.
The fuzz corpus is harness.fuzz.corpus, derived from the reference app's templates.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from harness.agent.worker import PATH_ENV
from harness.app.spec import REFERENCE_APP, AppSpec
from harness.fuzz.corpus import ACCEPT, STATUS, VALID_ID, build_corpus
from harness.fuzz.run import send
from harness.gateway import GatewayProcess
from harness.stack import Ports, get_stack
from harness.waiting import free_ports

APP = AppSpec.load(REFERENCE_APP)
FUZZ_SEED = 20240607


def reference_gateway(**kw: Any) -> GatewayProcess:
    """The reference app's handler behind a gateway, loaded like any app (cwd, import roots)."""
    env = {PATH_ENV: os.pathsep.join(APP.import_roots()), **kw.pop("env", {})}
    return GatewayProcess(APP.handler, resources=APP.gateway_resources(), cwd=APP.root, env=env, **kw)


# ----- helpers -----


def pid_gone(pid: int) -> bool:
    """True if the process does not exist or is a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def processes_spawned_by(gateway_pid: int) -> list[int]:
    """Live processes whose environment marks them as instances of this gateway."""
    marker = f"HARNESS_PARENT_PID={gateway_pid}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker in env.split(b"\0") and not pid_gone(int(entry.name)):
            found.append(int(entry.name))
    return found


def wait_for(pred: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll pred until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := pred():
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def read_log(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def valid_job(job_id: str) -> dict[str, str]:
    return {
        "jobId": job_id,
        "documentUrl": f"https://example.com/{job_id}.pdf",
        "requesterId": "alice",
        "type": "invoice",
    }


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    store_port: int
    msg_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.store_port}"

    def promises(self, pattern: str = "*") -> list[dict[str, Any]]:
        """All promises whose id matches pattern, following the cursor."""
        out: list[dict[str, Any]] = []
        params: dict[str, Any] = {"id": pattern, "limit": 100}
        while True:
            res = requests.get(f"{self.url}/promises", params=params, timeout=10)
            res.raise_for_status()
            page = res.json()
            out += page.get("promises") or []
            if not page.get("cursor") or not page.get("promises"):
                return out
            params = {"cursor": page["cursor"]}

    def promise_ids(self, pattern: str = "*") -> set[str]:
        return {p["id"] for p in self.promises(pattern)}


@dataclass
class Stack:
    server: Server
    gateway: GatewayProcess
    log: Path

    @property
    def url(self) -> str:
        return self.gateway.url


# ----- fixtures -----


@pytest.fixture(scope="module")
def server(server_versions: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A legacy server of its own: the binary and flags are the harness's (harness.stack), the
    plugin's `server_versions` installs it if missing (skip without one; fail under CI=true)."""
    legacy = get_stack()
    workdir = tmp_path_factory.mktemp("resonate")
    http, poll, metrics = free_ports(3)
    cmd = [
        str(legacy.server_bin),
        *legacy.serve_args(Ports(http, poll, metrics), str(workdir / "resonate.db")),
    ]
    with (workdir / "server.log").open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    srv = Server(proc, http, poll)
    try:

        def up() -> bool:
            assert proc.poll() is None, f"server exited with {proc.returncode}; see {workdir / 'server.log'}"
            try:
                return requests.get(f"{srv.url}/promises", params={"id": "x", "limit": 1}, timeout=1).ok
            except requests.RequestException:
                return False

        wait_for(up, 20, "the Resonate server")
        yield srv
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def stack(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("gateway")
    env = {
        "RESONATE_HOST": "http://127.0.0.1",
        "RESONATE_STORE_PORT": str(server.store_port),
        "RESONATE_MSG_PORT": str(server.msg_port),
    }
    gw = reference_gateway(
        instances=3,
        log_path=workdir / "gateway.jsonl",
        stderr_path=workdir / "gateway.err",
        env=env,
        timeout=15,
    )
    gw.start()
    try:
        yield Stack(server, gw, workdir / "gateway.jsonl")
    finally:
        gateway_pid = gw.pid
        gw.stop()
        if gateway_pid is not None:
            wait_for(lambda: not processes_spawned_by(gateway_pid), 5, "instances to exit")


# ----- (a) the happy path and status -----


@pytest.mark.server
def test_post_accepts_dispatches_and_reports_status(stack: Stack) -> None:
    job = valid_job("happy-1")
    res = requests.post(f"{stack.url}/process-document", json=job, timeout=10)
    assert res.status_code == 202, res.text
    assert res.headers["Content-Type"] == "application/json"
    assert res.json() == {
        "status": "accepted",
        "jobId": "happy-1",
        "statusUrl": "/status/happy-1",
        "message": "Processing in background. Poll statusUrl for results.",
    }
    promises = stack.server.promises("doc/happy-1*")
    assert [p["id"] for p in promises] == ["doc/happy-1"]
    assert promises[0]["state"] == "PENDING"
    assert promises[0]["tags"]["resonate:invoke"] == "poll://any@worker"
    param = json.loads(promises[0]["param"]["headers"]["resonate:format-py"])
    assert param["func"] == "process_document"
    assert param["args"]["py/tuple"] == [job]

    status = requests.get(f"{stack.url}/status/happy-1", timeout=10)
    assert status.status_code == 200
    assert status.json() == {"status": "processing", "jobId": "happy-1"}

    unknown = requests.get(f"{stack.url}/status/never-submitted", timeout=10)
    assert unknown.status_code == 404
    assert "error" in unknown.json()
    assert stack.server.promise_ids("doc/never-submitted*") == set()


@pytest.mark.server
def test_status_reports_done_and_failed(stack: Stack) -> None:
    """Completing the root promise on the server (as a worker would) shows up in /status."""
    outcomes = [
        ("done-1", "RESOLVED", {"jobId": "done-1", "pageCount": 3}),
        ("failed-1", "REJECTED", {"message": "step 3 failed"}),
    ]
    for job_id, state, value in outcomes:
        assert (
            requests.post(f"{stack.url}/process-document", json=valid_job(job_id), timeout=10).status_code
            == 202
        )
        data = base64.b64encode(json.dumps(value).encode()).decode()
        res = requests.patch(
            f"{stack.server.url}/promises/doc/{job_id}",
            json={"state": state, "value": {"data": data}},
            timeout=10,
        )
        assert res.status_code in (200, 201), res.text
    done = requests.get(f"{stack.url}/status/done-1", timeout=10)
    assert done.status_code == 200
    assert done.json() == {"status": "done", "jobId": "done-1", "result": {"jobId": "done-1", "pageCount": 3}}
    failed = requests.get(f"{stack.url}/status/failed-1", timeout=10)
    assert failed.status_code == 200
    assert failed.json()["status"] == "failed" and failed.json()["jobId"] == "failed-1"
    assert "step 3 failed" in failed.json()["error"]
    # a duplicate submission of a finished job is still accepted and creates nothing new
    assert (
        requests.post(f"{stack.url}/process-document", json=valid_job("done-1"), timeout=10).status_code
        == 202
    )
    assert stack.server.promise_ids("doc/done-1*") == {"doc/done-1"}


# ----- (b) fuzzing malformed requests -----


@pytest.mark.server
def test_fuzzed_malformed_requests_are_rejected_and_dispatch_nothing(stack: Stack) -> None:
    before = stack.server.promise_ids()
    cases = build_corpus(APP, FUZZ_SEED)
    assert len(cases) >= 300
    assert [c.body for c in build_corpus(APP, FUZZ_SEED)] == [c.body for c in cases]  # same seed, same corpus
    failures = []
    expected_new = set()
    for case in cases:
        res = send(
            stack.url, case.method, case.path, case.body, {"Content-Type": "application/json"}, timeout=30
        )
        status, body = res["status"], res["answer"]
        if case.expect == ACCEPT:
            expected_new.add(f"doc/{case.job}")
            ok = status == 202
        elif case.kind == STATUS and VALID_ID.fullmatch(case.job or ""):
            ok = status in (200, 404)  # a well-formed id: known or not
        else:
            ok = status is not None and 400 <= status < 500
            if ok and status != 413 and case.method != "HEAD":
                answer = json.loads(body)
                ok = "error" in answer or "message" in answer
        if not ok:
            failures.append(
                f"{case.id} {case.description}: {case.method} {case.path[:60]} -> {status} {body[:120]}"
            )
    assert not failures, "\n".join(failures[:20])
    after = stack.server.promise_ids()
    assert after - before == expected_new
    assert before <= after


# ----- (c) concurrent duplicates -----


@pytest.mark.server
def test_concurrent_duplicates_spread_over_instances_and_create_one_promise(stack: Stack) -> None:
    job = valid_job("dup-1")
    n = 10
    barrier = threading.Barrier(n)
    results: list[tuple[int, str, dict[str, Any]]] = []
    lock = threading.Lock()

    def submit() -> None:
        barrier.wait()
        res = requests.post(f"{stack.url}/process-document", json=job, timeout=30)
        with lock:
            results.append((res.status_code, res.headers.get("x-amzn-RequestId", ""), res.json()))

    threads = [threading.Thread(target=submit) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == n
    assert {status for status, _, _ in results} == {202}
    assert all(body["jobId"] == "dup-1" and body["statusUrl"] == "/status/dup-1" for _, _, body in results)

    request_ids = {rid for _, rid, _ in results}
    entries = [e for e in read_log(stack.log) if e["request_id"] in request_ids]
    assert len(entries) == n
    assert all(
        e["method"] == "POST" and e["path"] == "/process-document" and e["status"] == 202 for e in entries
    )
    assert len({e["instance"] for e in entries}) >= 2, entries
    assert stack.server.promise_ids("doc/dup-1*") == {"doc/dup-1"}


# ----- (d) killing an instance -----


@pytest.mark.server
def test_killed_instance_is_replaced_by_a_cold_one(stack: Stack) -> None:
    gw = stack.gateway

    def all_idle() -> list[dict[str, Any]] | None:
        now = gw.instances()
        return now if len(now) == 3 and all(i["state"] == "idle" for i in now) else None

    before = wait_for(all_idle, 10, "3 idle instances")
    victim = before[0]
    killed = gw.kill_instance(victim["id"])
    assert killed == {"id": victim["id"], "pid": victim["pid"], "signal": "SIGKILL"}

    old_pids = {i["pid"] for i in before}

    def replaced() -> list[dict[str, Any]] | None:
        now = gw.instances()
        ready = [i for i in now if i["state"] in ("idle", "busy")]
        if (
            len(ready) == 3
            and victim["id"] not in {i["id"] for i in now}
            and {i["pid"] for i in ready} - old_pids
        ):
            return now
        return None

    after = wait_for(replaced, 20, "a replacement instance")
    new = [i for i in after if i["pid"] not in old_pids]
    assert len(new) == 1 and new[0]["invocations"] == 0
    assert pid_gone(victim["pid"])
    admin = requests.get(f"{stack.url}/_gateway/instances", timeout=5).json()
    assert any(d["id"] == victim["id"] and d["exit_code"] == -signal.SIGKILL for d in admin["dead"])

    for i in range(6):
        res = requests.post(f"{stack.url}/process-document", json=valid_job(f"after-kill-{i}"), timeout=10)
        assert res.status_code == 202, res.text
    assert requests.get(f"{stack.url}/status/after-kill-0", timeout=10).json()["status"] == "processing"
    served = [e for e in read_log(stack.log) if e["instance"] == new[0]["id"]]
    assert served and served[0]["cold_start"] is True and served[0]["pid"] == new[0]["pid"]
    assert stack.server.promise_ids("doc/after-kill-*") == {f"doc/after-kill-{i}" for i in range(6)}
    assert requests.post(f"{stack.url}/_gateway/instances/nope/kill", timeout=5).status_code == 404


# ----- (e) no leftovers -----


def test_stopping_the_gateway_leaves_no_instances(tmp_path: Path) -> None:
    gw = reference_gateway(instances=2, log_path=tmp_path / "gw.jsonl", stderr_path=tmp_path / "gw.err")
    gw.start()
    try:
        assert gw.pid is not None
        pids = {i["pid"] for i in gw.instances()}
        victim = gw.kill_instance(gw.instances()[0]["id"])

        def replaced() -> bool:
            now = gw.instances()
            return victim["id"] not in {i["id"] for i in now} and sum(i["state"] == "idle" for i in now) == 2

        wait_for(replaced, 20, "a replacement instance")
        pids |= {i["pid"] for i in gw.instances()}
        assert len(pids) == 3
        assert sorted(processes_spawned_by(gw.pid)) == sorted(i["pid"] for i in gw.instances())
    finally:
        code = gw.stop()
    assert code == 0
    assert all(pid_gone(pid) for pid in pids)
    assert processes_spawned_by(gw.pid) == []


def test_killing_the_gateway_takes_its_instances_down(tmp_path: Path) -> None:
    gw = reference_gateway(instances=2, stderr_path=tmp_path / "gw.err")
    gw.start()
    try:
        assert gw.proc is not None
        pids = [i["pid"] for i in gw.instances()]
        gw.proc.send_signal(signal.SIGKILL)
        gw.proc.wait(5)
        wait_for(lambda: all(pid_gone(p) for p in pids), 5, "orphaned instances to die")
    finally:
        gw.stop()


# ----- Lambda semantics with a throwaway handler (no server needed) -----

FAULT_MODULE = """
import json, os, time

def handler(event, context):
    path = event["path"]
    if path == "/echo" or path.startswith("/status/"):
        return {"statusCode": 200, "headers": {"Content-Type": "application/json"},
                "body": json.dumps({"event": event, "remaining": context.get_remaining_time_in_millis()})}
    if path == "/sleep":
        time.sleep(float(event["queryStringParameters"]["s"]))
    elif path == "/boom":
        raise RuntimeError("boom")
    elif path == "/exit":
        os._exit(3)
    elif path == "/print":
        print("noise on stdout that must not break the protocol")
    elif path == "/malformed":
        return {"body": "no status code"}
    return {"statusCode": 200, "body": json.dumps({"pid": os.getpid()})}
"""


@pytest.fixture
def fault_gateway(tmp_path: Path) -> Iterator[GatewayProcess]:
    (tmp_path / "fault_lambda.py").write_text(textwrap.dedent(FAULT_MODULE))
    gw = GatewayProcess(
        "fault_lambda:handler",
        resources=["/status/{jobId}"],
        cwd=tmp_path,
        instances=1,
        log_path=tmp_path / "gw.jsonl",
        stderr_path=tmp_path / "gw.err",
        timeout=2,
        throttle_wait=0.5,
        env={PATH_ENV: str(tmp_path)},
    )
    gw.start()
    try:
        yield gw
    finally:
        gw.stop()


def test_lambda_semantics_errors_timeouts_throttling(fault_gateway: GatewayProcess) -> None:
    url = fault_gateway.url

    def try_pid() -> int | None:
        res = requests.get(f"{url}/pid", timeout=10)
        return int(res.json()["pid"]) if res.status_code == 200 else None

    def pid() -> int:
        value = try_pid()
        assert value is not None
        return value

    def next_pid(old: int) -> int:
        return wait_for(lambda: (p := try_pid()) not in (None, old) and p, 20, "a replacement instance")

    res = requests.post(f"{url}/echo?a=1&a=2&b=", data=b'{"k": 1}', headers={"X-Test": "yes"}, timeout=10)
    event = res.json()["event"]
    assert event["httpMethod"] == "POST" and event["path"] == "/echo" and event["resource"] == "/{proxy+}"
    assert event["pathParameters"] == {"proxy": "echo"}
    assert event["queryStringParameters"] == {"a": "2", "b": ""}
    assert event["multiValueQueryStringParameters"] == {"a": ["1", "2"], "b": [""]}
    assert (
        event["headers"]["X-Test"] == "yes"
        and event["body"] == '{"k": 1}'
        and event["isBase64Encoded"] is False
    )
    assert event["requestContext"]["requestId"] == res.headers["x-amzn-RequestId"]
    assert event["requestContext"]["stage"] == "local"
    assert 0 < res.json()["remaining"] <= 2000
    binary = requests.post(f"{url}/echo", data=b"\xff\x00", timeout=10).json()["event"]
    assert binary["isBase64Encoded"] is True and binary["body"] == "/wA="
    status_event = requests.get(f"{url}/status/a%2Fb", timeout=10).json()["event"]
    assert status_event["resource"] == "/status/{jobId}" and status_event["pathParameters"] == {
        "jobId": "a/b"
    }

    first = pid()
    assert requests.get(f"{url}/print", timeout=10).status_code == 200
    assert requests.get(f"{url}/boom", timeout=10).status_code == 502
    assert requests.get(f"{url}/malformed", timeout=10).status_code == 502
    assert pid() == first  # handler errors keep the instance warm

    slow: list[int] = []
    t = threading.Thread(
        target=lambda: slow.append(requests.get(f"{url}/sleep?s=1.5", timeout=10).status_code)
    )
    t.start()
    time.sleep(0.3)
    throttled = requests.get(f"{url}/pid", timeout=10)
    t.join()
    assert throttled.status_code == 429 and slow == [200]

    started = time.monotonic()
    assert requests.get(f"{url}/sleep?s=30", timeout=20).status_code == 504
    assert time.monotonic() - started < 5
    second = next_pid(first)

    assert requests.get(f"{url}/exit", timeout=10).status_code == 502
    third = next_pid(second)

    busy: list[int] = []
    t = threading.Thread(
        target=lambda: busy.append(requests.get(f"{url}/sleep?s=1.5", timeout=10).status_code)
    )
    t.start()
    inst = wait_for(lambda: [i for i in fault_gateway.instances() if i["busy"]], 5, "a busy instance")[0]
    fault_gateway.kill_instance(inst["id"])
    t.join()
    assert busy == [502]
    next_pid(third)

    assert fault_gateway.log_path is not None
    outcomes = [e["outcome"] for e in read_log(fault_gateway.log_path)]
    for kind in ("ok", "handler_error", "malformed_response", "throttled", "timeout", "crashed"):
        assert kind in outcomes
