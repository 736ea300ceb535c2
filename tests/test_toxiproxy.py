"""Link faults through Toxiproxy: the proxies really cut and slow traffic, the process backend gives
each worker its own link, the `partition` fault is classified right, and the scenario passes.

Tests that need the toxiproxy-server binary (`harness setup` installs it) or the Resonate server
skip with the reason on a dev machine without them and fail in CI (CI=true).
"""

from __future__ import annotations

import http.server
import json
import os
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from harness.app.spec import AppSpec
from harness.checks import check, hits
from harness.cluster.base import ClusterConfig
from harness.cluster.process import OWNER_ENV, ProcessCluster
from harness.errors import HarnessError
from harness.faults import FAULTS, Nemesis
from harness.history import EventLog, read_jsonl
from harness.runner import run
from harness.stack import get_stack
from harness.toxiproxy import Toxiproxy, ToxiproxyServer, listen_port, server_bin
from harness.waiting import wait_until
from tests.histories import STEPS, FakeRun, digest, encode, step_value


# --- fixtures -----------------------------------------------------------------------------
@pytest.fixture
def toxiproxy(tmp_path: Path, toxiproxy_bin: Path) -> Iterator[Toxiproxy]:
    with ToxiproxyServer(tmp_path / "toxiproxy.log", binary=toxiproxy_bin) as client:
        yield client


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def upstream() -> Iterator[int]:
    """A tiny HTTP server on loopback: the thing behind the proxy."""
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


def get(port: int, path: str = "/") -> requests.Response:
    return requests.get(f"http://127.0.0.1:{port}{path}", timeout=3)


def median_s(port: int, path: str = "/", n: int = 5) -> float:
    samples = []
    for _ in range(n):
        t = time.monotonic()
        get(port, path).raise_for_status()
        samples.append(time.monotonic() - t)
    return statistics.median(samples)


def toxiproxies_of_mine() -> list[int]:
    """toxiproxy-server processes started by this test process (they carry HARNESS_OWNER=<our pid>)."""
    mine = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            exe = os.readlink(entry / "exe")
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if "toxiproxy" in Path(exe).name and f"{OWNER_ENV}={os.getpid()}".encode() in environ:
            mine.append(int(entry.name))
    return mine


# --- the client and the server process ----------------------------------------------------
def test_missing_binary_is_an_environment_error(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match=r"harness setup"):
        server_bin(tmp_path / "no-such-toxiproxy")


def test_a_disabled_proxy_cuts_traffic_and_an_enabled_one_carries_it(
    toxiproxy: Toxiproxy, upstream: int
) -> None:
    port = listen_port(toxiproxy.create_proxy("link", f"127.0.0.1:{upstream}"))
    assert get(port).text == "ok"
    held = socket.create_connection(("127.0.0.1", port), timeout=3)  # an open connection, like an SSE stream
    wait_until(lambda: toxiproxy.proxy("link")["enabled"], timeout=5, expected="the proxy enabled")

    toxiproxy.set_enabled("link", False)
    with pytest.raises(requests.ConnectionError):
        get(port)
    try:  # the open connection is closed too: EOF or a reset, not silence
        assert held.recv(1) == b""
    except ConnectionResetError:
        pass
    finally:
        held.close()

    toxiproxy.set_enabled("link", True)
    assert listen_port(toxiproxy.proxy("link")) == port, "a healed proxy listens on the same port again"
    assert get(port).text == "ok"


def test_a_latency_toxic_adds_delay(toxiproxy: Toxiproxy, upstream: int) -> None:
    port = listen_port(toxiproxy.create_proxy("slow", f"127.0.0.1:{upstream}"))
    get(port)  # warm up
    plain = median_s(port)
    toxiproxy.latency("slow", ms=150)
    slowed = median_s(port)
    toxiproxy.remove_toxic("slow", "latency_downstream")
    print(
        f"\nmedian request through the proxy: {plain * 1000:.1f} ms plain, {slowed * 1000:.1f} ms with 150 ms latency"
    )
    assert slowed > plain
    assert toxiproxy.toxics("slow") == []


def test_the_client_reports_bad_requests(toxiproxy: Toxiproxy, upstream: int) -> None:
    toxiproxy.create_proxy("p", f"127.0.0.1:{upstream}")
    with pytest.raises(HarnessError, match="409"):
        toxiproxy.create_proxy("p", f"127.0.0.1:{upstream}")
    with pytest.raises(HarnessError, match="a toxic type"):
        toxiproxy.add_toxic("p", "gremlins")
    with pytest.raises(HarnessError, match="attributes of a latency toxic"):
        toxiproxy.add_toxic("p", "latency", {"rate": 1})
    toxiproxy.bandwidth("p", 10)
    with pytest.raises(HarnessError, match="409"):
        toxiproxy.bandwidth("p", 10)
    with pytest.raises(HarnessError, match="404"):
        toxiproxy.set_enabled("nope", False)


def test_the_server_process_stops(tmp_path: Path, toxiproxy_bin: Path) -> None:
    srv = ToxiproxyServer(tmp_path / "t.log", binary=toxiproxy_bin)
    client = srv.start()
    pid = srv.pid
    assert client.version()
    srv.stop()
    srv.stop()  # twice is fine
    assert pid is not None and not Path(f"/proc/{pid}").exists()
    assert (tmp_path / "t.log").exists()


# --- the checks: a partition hit allows a re-execution and does not demand one -------------
def _cut_off(kind: str, takeover: bool) -> FakeRun:
    """Steps 1-3 on worker-1; `kind` hits worker-1 in step 4; with `takeover` worker-2 re-runs step 4
    and finishes the job; the cut-off execution ends later either way (after the heal)."""
    run = FakeRun(["replay", "exactly_once", "liveness"])
    job = run.new_job()
    run.submit(job)
    for step in (1, 2, 3):
        run.execute(job, step)
    attempt = run.execute(job, 4, end=False)
    run.fault(kind, "worker-1", job=job["jobId"], step="4", pid=11, attempt=attempt)
    if takeover:
        run.execute(job, 4, worker="worker-2", pid=22)
    root = run.root(job)
    value = step_value(job["jobId"], "4")
    run.record("end", "worker-1", 11, root=root, id=f"{root}.4", pos="4", fn=STEPS["4"], exec=attempt,
               value=value, vd=digest(value))  # fmt: skip
    if not takeover:  # the cut-off worker checkpoints its step itself and carries on
        run.promises[f"{root}.4"] = {"id": f"{root}.4", "state": "RESOLVED", "param": {}, "value": encode(value),
                                     "tags": {"resonate:scope": "local", "resonate:root": root}}  # fmt: skip
    run.event("heal", fault=kind, target="worker-1")
    run.execute(job, 5, worker="worker-2" if takeover else "worker-1", pid=22 if takeover else 11)
    run.finish(job)
    return run


def test_a_partition_hit_is_classified_cut_off() -> None:
    h = _cut_off("partition", takeover=True).history()
    (hit,) = hits(h)
    assert (hit.fault, hit.pos, hit.site) == ("partition", "4", "cut-off")


def test_a_partition_hit_allows_a_takeover_and_names_it() -> None:
    v = check(_cut_off("partition", takeover=True).history(), ["replay", "exactly_once", "liveness"])
    assert all(x["ok"] for x in v.values()), v
    assert "partition of worker-1 -> worker-2" in v["replay"]["detail"]
    assert "the cut-off attempt of worker-1 also finished" in v["replay"]["detail"]


def test_a_partition_hit_does_not_demand_a_re_execution() -> None:
    v = check(_cut_off("partition", takeover=False).history(), ["replay"])
    assert v["replay"]["ok"], v["replay"]
    # the same history with a kill owes a re-execution: the classification is what makes the difference
    killed = check(_cut_off("kill", takeover=False).history(), ["replay"])
    assert not killed["replay"]["ok"] and "never executed again" in killed["replay"]["detail"]


@pytest.mark.parametrize("kind", ["latency", "bandwidth", "reset"])
def test_a_degraded_link_allows_a_re_execution(kind: str) -> None:
    h = _cut_off(kind, takeover=True).history()
    assert [x.site for x in hits(h)] == ["degraded"]
    assert check(h, ["replay"])["replay"]["ok"]
    assert check(_cut_off(kind, takeover=False).history(), ["replay"])["replay"]["ok"]


def test_the_link_faults_are_registered() -> None:
    assert {"partition", "latency", "bandwidth", "reset"} <= set(FAULTS)


def test_an_unproxied_process_cluster_refuses_link_faults(tmp_path: Path) -> None:
    cluster = ProcessCluster(ClusterConfig(run_dir=tmp_path, stack=get_stack(), app=AppSpec.load(None)))
    with pytest.raises(HarnessError, match="proxied"):
        cluster.partition_worker("worker-1")
    with pytest.raises(HarnessError, match="proxied"):
        cluster.add_link_toxic("worker-1", "latency", {"latency": 10})


# --- the process backend with one link per worker (real server) ----------------------------
def proxied_config(run_dir: Path, workers: int) -> ClusterConfig:
    """The reference app, every worker behind its own Toxiproxy link."""
    return ClusterConfig(run_dir=run_dir, stack=get_stack(), app=AppSpec.load(None), workers=workers,
                         gateway_instances=1, proxied=True)  # fmt: skip


@pytest.fixture
def proxied(tmp_path: Path, server_ready: None, toxiproxy_bin: Path) -> Iterator[ProcessCluster]:
    with ProcessCluster(proxied_config(tmp_path, workers=2)) as cluster:
        yield cluster


def _via(cluster: ProcessCluster, worker: str) -> int:
    return cluster.link(worker).ports["api"]


PROBE = "/promises?id=__probe__&limit=1"


@pytest.mark.server
def test_each_worker_gets_its_own_link_and_one_can_be_cut(proxied: ProcessCluster) -> None:
    c = proxied
    for w in ("worker-1", "worker-2"):  # the worker dials its proxies, not the server
        env = Path(f"/proc/{c.worker_pid(w)}/environ").read_bytes().split(b"\0")
        assert f"RESONATE_STORE_PORT={c.link(w).ports['api']}".encode() in env
        assert f"RESONATE_MSG_PORT={c.link(w).ports['poll']}".encode() in env
        assert c.link_connections(w)["poll"] == 1
    before = c.poll_connections()

    c.partition_worker("worker-1")
    assert c.link_connections("worker-1") == {"api": 0, "poll": 0}
    wait_until(
        lambda: c.poll_connections() == before - 1, timeout=5, expected="the server dropped worker-1's SSE"
    )
    with pytest.raises(requests.ConnectionError):
        get(_via(c, "worker-1"), PROBE)
    assert get(_via(c, "worker-2"), PROBE).ok  # the other worker's link is untouched
    assert requests.get(f"{c.server_api}{PROBE}", timeout=3).ok  # the harness reads the server directly
    assert "worker-1" in c.live_workers()  # the process runs on

    c.heal_worker("worker-1")
    assert get(_via(c, "worker-1"), PROBE).ok
    wait_until(lambda: c.link_connections("worker-1")["poll"] == 1, timeout=20,
               expected="worker-1's SDK reconnected its SSE stream")  # fmt: skip
    assert c.unexpected_exits() == {}


@pytest.mark.server
def test_link_toxics_through_the_nemesis(proxied: ProcessCluster, tmp_path: Path) -> None:
    c = proxied
    events = EventLog(tmp_path)
    nemesis = Nemesis(c, events)
    port = _via(c, "worker-2")
    plain = median_s(port, PROBE)
    nemesis.latency(worker="worker-2", ms=200)
    slowed = median_s(port, PROBE)
    fast_other = median_s(_via(c, "worker-1"), PROBE)
    nemesis.clear_link("worker-2", fault="latency")
    print(f"\nworker-2 link: {plain * 1000:.1f} ms plain, {slowed * 1000:.1f} ms with a 200 ms latency toxic; "
          f"worker-1 link meanwhile {fast_other * 1000:.1f} ms")  # fmt: skip
    assert slowed > plain and slowed > fast_other

    nemesis.reset(worker="worker-2", hold=0.5)  # every connection reset: requests fail until it heals
    with pytest.raises(requests.ConnectionError):
        get(port, PROBE)
    nemesis.wait_healed(timeout=10)
    assert get(port, PROBE).ok
    events.close()
    kinds = [(e["kind"], e.get("fault")) for e in read_jsonl(tmp_path / "events.jsonl")]
    assert kinds == [("fault", "latency"), ("heal", "latency"), ("fault", "reset"), ("heal", "reset")]


@pytest.mark.server
def test_stopping_the_cluster_stops_toxiproxy(
    tmp_path: Path, server_ready: None, toxiproxy_bin: Path
) -> None:
    config = proxied_config(tmp_path, workers=1)
    with ProcessCluster(config) as c:
        assert c.toxiproxy is not None
        pid = c.toxiproxy.pid
        assert pid in toxiproxies_of_mine()
    assert pid is not None and not Path(f"/proc/{pid}").exists()
    assert toxiproxies_of_mine() == []
    assert (tmp_path / "logs" / "toxiproxy.log").stat().st_size > 0


# --- the scenario -------------------------------------------------------------------------
@pytest.mark.server
def test_the_partition_scenario_passes(tmp_path: Path, server_ready: None, toxiproxy_bin: Path) -> None:
    res = run("partition", seed=7, out=tmp_path / "run")
    r = res.results
    print(f"\npartition: {json.dumps(r['verdicts']['replay'])}\nfigures: {json.dumps(r['figures'])}")
    assert set(r["verdicts"]) == {"exactly_once", "replay", "liveness", "no_loss"}
    assert res.ok, r["verdicts"]
    assert [f["kind"] for f in r["faults"]] == ["partition"] and r["faults"][0]["step"] == 4
    replay = r["verdicts"]["replay"]["detail"]
    assert f"partition of {r['faults'][0]['target']} -> worker-" in replay  # the takeover, named
    assert "the cut-off attempt of" in replay
    assert r["incidents"] == []  # the cut-off worker did not crash
    assert toxiproxies_of_mine() == []
