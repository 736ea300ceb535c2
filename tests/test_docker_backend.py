"""The Docker backend: clusters of any app start and leave nothing behind, and its faults really happen.

Needs a Docker daemon and the server binary (the conftest fixtures `docker_daemon`, `server_ready`):
without them these tests skip with the reason on a developer machine and fail in CI (CI=true).
Only resources labelled with a run this test made (or whose owner process this test killed) are
ever touched, so the tests can run next to other runs.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import requests

from harness.app.spec import AppSpec
from harness.cluster.base import ClusterConfig
from harness.cluster.docker import (
    HARNESS_MOUNT,
    HARNESS_PACKAGE,
    L_OWNER,
    L_ROLE,
    L_RUN,
    DockerCluster,
    owner_labels,
    remove_leftovers,
)
from harness.cluster.images import docker_client
from harness.errors import HarnessError
from harness.stack import get_stack
from harness.toxiproxy import server_version
from harness.waiting import wait_until

pytestmark = [pytest.mark.docker, pytest.mark.server]


@pytest.fixture(scope="module")
def client(docker_daemon: None) -> Iterator[docker.DockerClient]:
    c = docker_client(timeout=60)
    yield c
    c.close()


@pytest.fixture
def make_cluster(
    server_ready: None, client: docker.DockerClient, tmp_path: Path
) -> Iterator[Callable[..., DockerCluster]]:
    """Start DockerClusters (stopped at the end of the test whatever happens)."""
    made: list[DockerCluster] = []

    def make(**kwargs: Any) -> DockerCluster:
        config = ClusterConfig(
            **{"run_dir": tmp_path / f"run{len(made)}", "stack": get_stack(), "app": AppSpec.load(None), "workers": 1,
               "gateway_instances": 1, **kwargs}
        )  # fmt: skip
        cluster = DockerCluster(config)
        made.append(cluster)
        cluster.start()
        return cluster

    yield make
    for cluster in made:
        cluster.stop()


def resources(client: docker.DockerClient, label: str) -> dict[str, list[str]]:
    """Names of the containers, networks and volumes carrying a label (key=value)."""
    flt = {"label": label}
    return {
        "containers": sorted(c.name for c in client.containers.list(all=True, filters=flt)),
        "networks": sorted(n.name for n in client.networks.list(filters=flt)),
        "volumes": sorted(v.name for v in client.volumes.list(filters=flt)),
    }


def nothing(found: dict[str, list[str]]) -> bool:
    return not any(found.values())


def exec_connect(container: Any, host: str, port: int) -> tuple[int, str]:
    """Try a TCP connection from inside a container: (exit code, output)."""
    code = (
        f"import socket; socket.create_connection(({host!r}, {port}), timeout=2).close(); print('connected')"
    )
    res = container.exec_run(["python", "-c", code])
    return res.exit_code, res.output.decode(errors="replace").strip()


PROBE_PATH = "/promises?id=__probe__&limit=1"
TIMED_GETS = textwrap.dedent(
    """
    import statistics, sys, time, urllib.request
    url, n = sys.argv[1], int(sys.argv[2])
    took = []
    for _ in range(n):
        t = time.monotonic()
        urllib.request.urlopen(url, timeout=10).read()
        took.append(time.monotonic() - t)
    print(statistics.median(took))
    """
)


def median_get_s(container: Any, host: str, port: int, n: int = 5) -> float:
    """Median seconds of n GETs (a new connection each) from inside a container to host:port."""
    res = container.exec_run(["python", "-c", TIMED_GETS, f"http://{host}:{port}{PROBE_PATH}", str(n)])
    out = res.output.decode(errors="replace").strip()
    assert res.exit_code == 0, out
    return float(out.splitlines()[-1])


def container_env(container: Any) -> dict[str, str]:
    return dict(e.split("=", 1) for e in container.attrs["Config"]["Env"])


def worker_pids(cluster: DockerCluster, worker: str) -> list[int]:
    """The pids a worker's incarnations reported in its log (the apps here print "worker pid N started")."""
    log = cluster.worker_container(worker).logs().decode()
    return [int(m) for m in re.findall(r"worker pid (\d+) started", log)]


TINY_WORKER = textwrap.dedent(
    """
    import os, threading
    from resonate import Resonate

    resonate = Resonate.remote(group="worker", host=os.environ["TINY_HOST"], store_port=os.environ["TINY_STORE"],
                               message_source_port=os.environ["TINY_POLL"])

    @resonate.register
    def hello(ctx, name):
        return f"hello {name}"

    if __name__ == "__main__":
        resonate.start()
        print(f"worker pid {os.getpid()} started in {os.getcwd()}", flush=True)
        threading.Event().wait()
    """
)
TINY_CONFIG = textwrap.dedent(
    """
    [app]
    handler = "api.handler:handler"
    worker = "bin/serve.py"
    [app.env]
    TINY_HOST = "http://{host}"
    TINY_STORE = "{store_port}"
    TINY_POLL = "{poll_port}"
    [submit]
    path = "/hello"
    body = { name = "{job}" }
    """
)


def make_tiny_app(root: Path) -> AppSpec:
    """An app that is not the reference app: its own names for the server's address, its own layout."""
    (root / "bin").mkdir(parents=True)
    (root / "api").mkdir()
    (root / "harness.toml").write_text(TINY_CONFIG)
    (root / "requirements.txt").write_text("resonate-sdk==0.6.7\n")
    (root / "bin" / "serve.py").write_text(TINY_WORKER)
    (root / "api" / "__init__.py").write_text("")
    (root / "api" / "handler.py").write_text(
        "import json, os\n\ndef handler(event, context):\n"
        "    return {'statusCode': 200, 'body': json.dumps({'path': event['path'], 'cwd': os.getcwd()})}\n"
    )
    return AppSpec.load(root)


# --- lifecycle --------------------------------------------------------------------------------------
def test_any_app_starts_and_stop_leaves_nothing_behind(
    make_cluster: Callable[..., DockerCluster], client: docker.DockerClient, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """An app made here (its own env names and layout), a relative run dir, a cwd that is not this
    repo; the harness mounted read-only, the app's files in its image; everything labelled and removed."""
    app = make_tiny_app(tmp_path / "tiny app")
    monkeypatch.chdir(tmp_path)
    c = make_cluster(run_dir=Path("rel-run"), app=app)
    run_dir = (tmp_path / "rel-run").absolute()
    label = f"{L_RUN}={c.run_id}"
    up = resources(client, label)
    assert up == {
        "containers": sorted(f"{c.prefix}-{m}" for m in ("server", "worker-1", "gateway")),
        "networks": [c.network_name],
        "volumes": [c.volume_name],
    }
    for name in up["containers"]:
        attrs = client.containers.get(name).attrs
        assert attrs["State"]["Status"] == "running", name
        assert attrs["HostConfig"]["Init"] is True, name
        assert attrs["Config"]["Labels"][L_OWNER] == str(os.getpid())
        for bindings in (attrs["HostConfig"]["PortBindings"] or {}).values():
            assert all(b["HostIp"] == "127.0.0.1" for b in bindings), (name, bindings)
        if name.endswith("-server"):
            continue
        mounts = {m["Destination"]: (m["Source"], m["RW"]) for m in attrs["Mounts"]}
        assert mounts == {
            str(run_dir): (str(run_dir), True),
            f"{HARNESS_MOUNT}/harness": (str(HARNESS_PACKAGE), False),
        }
        assert attrs["Config"]["WorkingDir"] == str(app.root) and attrs["Config"]["Image"] == c.app_image
        env = container_env(client.containers.get(name))
        assert env["PYTHONPATH"] == HARNESS_MOUNT and env["HOME"] == "/tmp"
        assert (env["TINY_HOST"], env["TINY_STORE"], env["TINY_POLL"]) == (
            f"http://{c.server_name}",
            "8001",
            "8002",
        )
        assert env["HARNESS_RUN_DIR"] == str(run_dir) and env["HARNESS_APP_ROOT"] == str(app.root)
        assert not [k for k in env if k.startswith("WORKFLOW_") or k == "RESONATE_STORE_PORT"], env
    worker_env = container_env(c.worker_container("worker-1"))
    assert worker_env["HARNESS_WORKER_ID"] == "worker-1"
    assert c.worker_container("worker-1").attrs["Config"]["Cmd"] == ["python", "-m", "harness.agent.worker",
                                                                      str(app.root / "bin" / "serve.py")]  # fmt: skip
    assert c.live_workers() == ["worker-1"] and c.unexpected_exits() == {}
    assert c.poll_connections() >= 1  # the worker
    got = requests.post(f"{c.gateway_url}/hello", json={"name": "x"}, timeout=10)
    assert got.status_code == 200 and got.json() == {"path": "/hello", "cwd": str(app.root)}, got.text

    # the app's tools: a one-off container of the app's image, on the run network, then removed
    code, err = c.run_app_tool(
        ["-c", "import os, sys, socket; socket.create_connection((os.environ['TINY_HOST'][7:], 8001), timeout=5); "
               "print(os.getcwd(), os.environ['HARNESS_WORKER_ID'], 'HARNESS_LEDGER_DIR' in os.environ, "
               "os.environ['EXTRA'], sep='|', file=sys.stderr); sys.exit(3)"],
        extra={"EXTRA": "given"},
    )  # fmt: skip
    assert (code, err.strip().split("|")) == (3, [str(app.root), "tool", "False", "given"]), err
    code, err = c.run_app_tool(["-c", "import time; time.sleep(30)"], timeout=2)
    assert code == 124 and "timed out" in err
    assert len(resources(client, label)["containers"]) == 3  # no tool container left
    host_env = c.tool_env()
    assert host_env["TINY_HOST"] == "http://127.0.0.1" and host_env["PATH"] == os.environ["PATH"]
    assert requests.get(f"{c.server_api}/promises?id=x&limit=1", timeout=5).ok
    assert int(host_env["TINY_STORE"]) == c.api_port and int(host_env["TINY_POLL"]) == c.poll_port

    c.stop()
    c.stop()  # twice is fine
    assert nothing(resources(client, label)), resources(client, label)
    logs = {p.name for p in (run_dir / "logs").iterdir()}
    assert {"server.log", "worker-1.log", "gateway.log", "containers.json"} <= logs
    assert f"started in {app.root}" in (run_dir / "logs" / "worker-1.log").read_text()
    assert (run_dir / "server" / "resonate.db").exists()
    with pytest.raises(HarnessError, match="stopped"):
        c.run_app_tool(["-c", "pass"])


def test_eight_workers_on_two_cores(
    make_cluster: Callable[..., DockerCluster], client: docker.DockerClient
) -> None:
    c = make_cluster(workers=8)
    print(f"\n8 workers: start-up {c.timings}")
    assert sorted(c.live_workers()) == sorted(f"worker-{i}" for i in range(1, 9))
    running = client.containers.list(filters={"label": [f"{L_RUN}={c.run_id}", "harness.role=worker"]})
    assert len(running) == 8
    assert c.poll_connections() >= 8
    pids = {w: worker_pids(c, w) for w in c.live_workers()}
    assert len({p[0] for p in pids.values()}) == 8, pids  # host pids: distinct SDK process names


# --- worker faults ----------------------------------------------------------------------------------
def test_kill_restart_and_unexpected_exit(make_cluster: Callable[..., DockerCluster]) -> None:
    c = make_cluster(workers=2)
    connected = c.poll_connections()
    first = c.worker_container("worker-1")
    c.kill_worker("worker-1")
    killed = c.worker_container("worker-1")
    assert killed.status == "exited" and killed.attrs["State"]["ExitCode"] == 137
    assert c.live_workers() == ["worker-2"]
    assert c.unexpected_exits() == {}  # the harness killed it
    wait_until(lambda: c.poll_connections() == connected - 1, timeout=10, expected="the server to drop worker-1",
               seen=lambda: f"{c.poll_connections()} connections")  # fmt: skip
    with pytest.raises(HarnessError, match="to be down before it is restarted"):
        c.restart_worker("worker-2")
    c.restart_worker("worker-1")
    again = c.worker_container("worker-1")
    assert again.status == "running" and again.id == first.id  # the same container, started again
    assert sorted(c.live_workers()) == ["worker-1", "worker-2"]
    pids = worker_pids(c, "worker-1")
    assert len(pids) == 2 and pids[0] != pids[1], pids  # a new SDK process name: no inherited leases
    assert c.poll_connections() == connected
    # a worker that dies without the harness: reported with the process backend's convention
    c.client.containers.get(c.worker_container("worker-2").id).kill("SIGKILL")
    wait_until(lambda: "worker-2" not in c.live_workers(), timeout=10, expected="worker-2 gone")
    assert c.unexpected_exits() == {"worker-2": -9}
    c.restart_worker("worker-2")
    assert c.unexpected_exits() == {}
    c.stop_worker("worker-2")
    assert c.worker_container("worker-2").status == "exited" and c.unexpected_exits() == {}


def test_pause_freezes_the_worker(make_cluster: Callable[..., DockerCluster]) -> None:
    c = make_cluster()
    pid = worker_pids(c, "worker-1")[-1]
    c.pause_worker("worker-1")
    w = c.worker_container("worker-1")
    assert w.status == "paused" and w.attrs["State"]["Paused"] is True
    assert c.live_workers() == ["worker-1"]  # paused is alive, as a SIGSTOPped process is
    # cgroup freezer: the worker's process (a host pid) sleeps uninterruptibly in the refrigerator
    state = re.search(r"^State:\s+(\S)", Path(f"/proc/{pid}/status").read_text(), re.M)
    assert state and state.group(1) == "D"
    c.resume_worker("worker-1")
    assert c.worker_container("worker-1").status == "running"
    state = re.search(r"^State:\s+(\S)", Path(f"/proc/{pid}/status").read_text(), re.M)
    assert state and state.group(1) in "SR"
    c.pause_worker("worker-1")
    c.kill_worker("worker-1")  # killing a paused worker works (and thaws it)
    assert c.worker_container("worker-1").status == "exited"
    assert not Path(f"/proc/{pid}").exists()


def test_partition_cuts_the_worker_off_and_heal_reconnects(
    make_cluster: Callable[..., DockerCluster],
) -> None:
    c = make_cluster(workers=2)
    host, api, _poll = c.worker_server()
    w = c.worker_container("worker-1")
    assert exec_connect(w, host, api) == (0, "connected")
    c.partition_worker("worker-1")
    w = c.worker_container("worker-1")
    assert c.network_name not in w.attrs["NetworkSettings"]["Networks"]
    code, out = exec_connect(w, host, api)
    assert code != 0, out  # the server's name no longer resolves, nor is any route there
    assert w.status == "running" and "worker-1" in c.live_workers()  # the process runs on, cut off
    assert exec_connect(c.worker_container("worker-2"), host, api) == (0, "connected")
    c.heal_worker("worker-1")
    assert exec_connect(c.worker_container("worker-1"), host, api) == (0, "connected")
    with pytest.raises(HarnessError, match="partitioned before it is healed"):
        c.heal_worker("worker-1")


# --- proxied clusters: one Toxiproxy link per worker ------------------------------------------------
def test_proxied_partition_closes_the_workers_connections_and_heal_restores_them(
    make_cluster: Callable[..., DockerCluster], client: docker.DockerClient, toxiproxy_bin: Path
) -> None:
    c = make_cluster(workers=2, proxied=True)
    label = f"{L_RUN}={c.run_id}"
    assert c.toxiproxy_name in resources(client, label)["containers"]
    proxy = client.containers.get(c.toxiproxy_name).attrs
    labels = proxy["Config"]["Labels"]
    assert labels[L_ROLE] == "toxiproxy" and labels[L_OWNER] == str(os.getpid())
    assert proxy["Config"]["Image"].startswith("harness-toxiproxy:")
    assert [b["HostIp"] for bs in proxy["HostConfig"]["PortBindings"].values() for b in bs] == ["127.0.0.1"]
    assert c.versions() == {"toxiproxy": server_version(toxiproxy_bin)}
    assert c.worker_server() == (f"{c.prefix}-server", 8001, 8002)  # the gateway reaches the server directly
    for w in ("worker-1", "worker-2"):  # each worker dials its own proxies
        host, api, poll = c.worker_server(w)
        assert host == c.toxiproxy_name and {api, poll} == set(c.link(w).ports.values())
        env = container_env(c.worker_container(w))  # the reference app's own names ([app.env]) and the SDK's
        assert (env["RESONATE_HOST"], env["RESONATE_STORE_PORT"], env["RESONATE_MSG_PORT"]) == (
            f"http://{host}", str(api), str(poll))  # fmt: skip
        assert (env["RESONATE_PORT_STORE"], env["RESONATE_PORT_MESSAGE_SOURCE"]) == (str(api), str(poll))
        wait_until(lambda w=w: c.link_connections(w)["poll"] == 1, timeout=10,
                   expected=f"{w}'s SSE stream through its poll proxy", seen=lambda w=w: str(c.link_connections(w)))  # fmt: skip
    connected = c.poll_connections()
    host, api1, _ = c.worker_server("worker-1")
    _, api2, _ = c.worker_server("worker-2")

    c.partition_worker("worker-1")
    wait_until(lambda: c.link_connections("worker-1") == {"api": 0, "poll": 0}, timeout=5,
               expected="worker-1's connections closed", seen=lambda: str(c.link_connections("worker-1")))  # fmt: skip
    wait_until(lambda: c.poll_connections() == connected - 1, timeout=5,
               expected="the server dropped worker-1 at once", seen=lambda: f"{c.poll_connections()} connections")  # fmt: skip
    w1 = c.worker_container("worker-1")
    code, out = exec_connect(w1, host, api1)
    assert code != 0 and "refused" in out.lower(), out  # the proxy no longer listens
    assert w1.status == "running" and "worker-1" in c.live_workers()  # the process runs on, cut off
    assert c.link_connections("worker-2")["poll"] == 1  # the other worker's link is untouched
    assert exec_connect(c.worker_container("worker-2"), host, api2) == (0, "connected")
    assert requests.get(f"{c.server_api}{PROBE_PATH}", timeout=3).ok  # the harness reads the server directly
    with pytest.raises(HarnessError, match="connected before it is partitioned"):
        c.partition_worker("worker-1")

    c.heal_worker("worker-1")
    assert exec_connect(c.worker_container("worker-1"), host, api1) == (0, "connected")
    wait_until(lambda: c.link_connections("worker-1")["poll"] == 1, timeout=30,
               expected="worker-1's SDK reconnected its SSE stream", seen=lambda: str(c.link_connections("worker-1")))  # fmt: skip
    wait_until(lambda: c.poll_connections() == connected, timeout=5, expected="the server has worker-1 again",
               seen=lambda: f"{c.poll_connections()} connections")  # fmt: skip
    with pytest.raises(HarnessError, match="partitioned before it is healed"):
        c.heal_worker("worker-1")
    assert c.unexpected_exits() == {}
    c.stop()
    assert nothing(resources(client, label)), resources(client, label)  # the toxiproxy container included
    assert "Started proxy" in (c.logs_dir / "toxiproxy.log").read_text()
    assert (c.logs_dir / "containers.json").read_text().count(c.toxiproxy_name) == 1


def test_a_latency_toxic_slows_one_workers_link(
    make_cluster: Callable[..., DockerCluster], toxiproxy_bin: Path
) -> None:
    c = make_cluster(workers=2, proxied=True)
    w1, w2 = c.worker_container("worker-1"), c.worker_container("worker-2")
    host, api1, _ = c.worker_server("worker-1")
    _, api2, _ = c.worker_server("worker-2")
    plain = median_get_s(w1, host, api1)
    name = c.add_link_toxic("worker-1", "latency", {"latency": 200, "jitter": 0})
    assert name == "latency-downstream" and c.link("worker-1").toxics == {name}
    slowed = median_get_s(w1, host, api1)
    other = median_get_s(w2, host, api2)  # worker-2's link meanwhile
    c.remove_link_toxic("worker-1", name)
    again = median_get_s(w1, host, api1)
    print(f"\nworker-1 link: {plain * 1000:.1f} ms plain, {slowed * 1000:.1f} ms with a 200 ms latency toxic, "
          f"{again * 1000:.1f} ms after removing it; worker-2 link meanwhile {other * 1000:.1f} ms")  # fmt: skip
    assert slowed > plain and slowed > other and slowed > again
    assert c.link("worker-1").toxics == set()
    assert all(not p["toxics"] for p in c._toxiproxy().proxies().values())


def test_an_unproxied_docker_cluster_refuses_link_faults(docker_daemon: None, tmp_path: Path) -> None:
    c = DockerCluster(
        ClusterConfig(run_dir=tmp_path, stack=get_stack(), app=AppSpec.load(None))
    )  # not started
    try:
        for call in (lambda: c.add_link_toxic("worker-1", "latency", {"latency": 10}),
                     lambda: c.link_connections("worker-1"), lambda: c.remove_link_toxic("worker-1")):  # fmt: skip
            with pytest.raises(HarnessError, match="proxied"):
                call()
        assert c.versions() == {}
    finally:
        c.stop()


# --- server -----------------------------------------------------------------------------------------
def test_server_kill_and_restart_keep_promises(make_cluster: Callable[..., DockerCluster]) -> None:
    c = make_cluster()
    timeout = int(time.time() * 1000) + 3_600_000
    created = requests.post(f"{c.server_api}/promises", timeout=5,
                            json={"id": "test/volume", "timeout": timeout, "param": {"headers": {}, "data": ""}})  # fmt: skip
    assert created.status_code == 201, created.text
    api = c.server_api
    c.kill_server()
    assert c.server is not None
    c.server.reload()
    assert c.server.status == "exited" and c.server.attrs["State"]["ExitCode"] == 137
    with pytest.raises(requests.RequestException):
        requests.get(f"{api}/promises/test/volume", timeout=2).raise_for_status()
    assert "server.log" in {p.name for p in c.config.logs_dir.iterdir()}  # dumped at the kill
    c.start_server()
    assert c.server_api == api  # same published port
    got = requests.get(f"{api}/promises/test/volume", timeout=5)
    assert got.ok and got.json()["state"] == "PENDING", got.text
    with pytest.raises(HarnessError, match="down before it is started"):
        c.start_server()
    c.kill_server()
    c.start_server()  # and once more
    assert requests.get(f"{api}/promises/test/volume", timeout=5).ok
    # the worker reconnects to the restarted server by name
    wait_until(lambda: c.poll_connections() >= 1, timeout=30, expected="the worker reconnected",
               seen=lambda: f"{c.poll_connections()} connections")  # fmt: skip


def test_a_backend_without_partitions_says_so(tmp_path: Path) -> None:
    """partition_worker/heal_worker are optional in the Cluster ABC: the default refuses clearly."""
    from harness.cluster.base import Cluster

    class Minimal(Cluster):
        backend = "minimal"

    for name in sorted(Minimal.__abstractmethods__):
        setattr(Minimal, name, lambda *a, **k: None)
    Minimal.__abstractmethods__ = frozenset()
    m = Minimal(ClusterConfig(run_dir=tmp_path, stack=get_stack(), app=AppSpec.load(None)))
    with pytest.raises(HarnessError, match="not supported by this backend"):
        m.partition_worker("worker-1")
    with pytest.raises(HarnessError, match="not supported by this backend"):
        m.heal_worker("worker-1")


# --- leftovers --------------------------------------------------------------------------------------
CRASHING_RUN = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from harness.app.spec import AppSpec
    from harness.cluster.base import ClusterConfig
    from harness.cluster.docker import DockerCluster
    from harness.stack import get_stack
    c = DockerCluster(ClusterConfig(run_dir=Path(sys.argv[1]), stack=get_stack(), app=AppSpec.load(None), workers=1,
                                    gateway_instances=1, proxied=sys.argv[2] == "proxied"))
    c.start()
    print("UP", c.run_id, flush=True)
    time.sleep(600)
    """
)


@pytest.mark.parametrize("mode", ["direct", "proxied"])
def test_leftovers_of_a_dead_owner_are_removed(
    client: docker.DockerClient, server_ready: None, tmp_path: Path, mode: str, request: pytest.FixtureRequest
) -> None:
    """A run whose harness died (SIGKILL: no teardown) is removed; resources of live owners are not."""
    if mode == "proxied":
        request.getfixturevalue("toxiproxy_bin")
    proc = subprocess.Popen([sys.executable, "-c", CRASHING_RUN, str(tmp_path / "crashed"), mode],
                            stdout=subprocess.PIPE, text=True, cwd=tmp_path)  # fmt: skip
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line.startswith("UP "), line
        run_id = line.split()[1]
    finally:
        proc.kill()
        proc.wait(timeout=10)
    dead = f"{L_RUN}={run_id}"
    left = resources(client, dead)
    members = 4 if mode == "proxied" else 3  # + the toxiproxy container
    assert len(left["containers"]) == members and left["networks"] and left["volumes"], left
    # a resource of a live owner (this test process), as a parallel run would have
    mine = client.networks.create(
        f"harness-test-{os.getpid()}", labels={L_RUN: f"test-{os.getpid()}", **owner_labels()}
    )
    try:
        removed = remove_leftovers()
        # Under pytest-xdist another worker's cluster start may remove some of them first (it removes
        # dead owners' leftovers too): what matters is that none is left, and only those went.
        assert all(r.split()[1].startswith("harness-") for r in removed), removed
        assert nothing(resources(client, dead)), resources(client, dead)
        assert client.networks.get(mine.id).name == mine.name  # kept: its owner is alive
        assert "started" in (tmp_path / "crashed" / "logs" / "worker-1.log").read_text()  # logs saved
    finally:
        mine.remove()


def test_sigint_tears_the_cluster_down(
    client: docker.DockerClient, server_ready: None, tmp_path: Path
) -> None:
    """Ctrl-C in the middle of a scenario: exit 130 and nothing of the run is left."""
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "run", "crash-recovery", "--backend", "docker", "--out", str(run_dir)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    owner = f"{L_OWNER}={proc.pid}"
    events = run_dir / "events.jsonl"
    try:
        wait_until(lambda: events.exists() and '"fault"' in events.read_text(), timeout=180,
                   expected="the scenario's first fault")  # fmt: skip
        assert len(client.containers.list(filters={"label": owner})) >= 4  # server, workers, gateway
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out
    assert "interrupted" in out
    assert nothing(resources(client, owner)), resources(client, owner)
