"""The process backend does what the faults ask of it, on the real server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from harness.app.spec import AppSpec
from harness.cluster.base import ClusterConfig
from harness.cluster.process import ProcessCluster
from harness.errors import HarnessError
from harness.history import read_ledger
from harness.stack import get_stack
from harness.waiting import wait_until

pytestmark = pytest.mark.server


def state(pid: int) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("State:"):
            return line.split()[1]
    return "?"


@pytest.fixture
def cluster(tmp_path: Path, server_ready: None) -> Iterator[ProcessCluster]:
    with ProcessCluster(
        ClusterConfig(
            run_dir=tmp_path, stack=get_stack(), app=AppSpec.load(None), workers=2, gateway_instances=1
        )
    ) as c:
        yield c


def test_workers_come_and_go_at_runtime(cluster: ProcessCluster) -> None:
    assert cluster.live_workers() == ["worker-1", "worker-2"]
    assert cluster.poll_connections() >= 2
    added = cluster.add_worker()
    assert added == "worker-3" and "worker-3" in cluster.live_workers()
    cluster.stop_worker("worker-1")
    cluster.kill_worker("worker-2")
    assert cluster.live_workers() == ["worker-3"]
    assert cluster.unexpected_exits() == {}
    cluster.restart_worker("worker-2")
    assert sorted(cluster.live_workers()) == ["worker-2", "worker-3"]
    with pytest.raises(HarnessError):
        cluster.restart_worker("worker-2")  # still running


def test_pause_and_resume(cluster: ProcessCluster) -> None:
    pid = cluster.worker_pid("worker-1")
    cluster.pause_worker("worker-1")
    wait_until(lambda: state(pid) == "T", timeout=5, expected="worker-1 stopped", seen=lambda: state(pid))
    cluster.resume_worker("worker-1")
    wait_until(
        lambda: state(pid) in ("S", "R"), timeout=5, expected="worker-1 running", seen=lambda: state(pid)
    )


def test_server_crash_and_restart_keeps_the_store(cluster: ProcessCluster) -> None:
    r = requests.post(f"{cluster.server_api}/promises", json={"id": "probe/1", "timeout": 2**62, "param": {}})
    assert r.status_code == 201
    cluster.kill_server()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{cluster.server_api}/promises/probe/1", timeout=1)
    cluster.start_server()
    assert requests.get(f"{cluster.server_api}/promises/probe/1", timeout=5).json()["id"] == "probe/1"


def test_an_unknown_worker_name_is_a_clear_error(cluster: ProcessCluster) -> None:
    with pytest.raises(HarnessError, match="worker-9"):
        cluster.kill_worker("worker-9")


def test_a_dispatch_is_recorded_as_new_then_existing(cluster: ProcessCluster) -> None:
    """The Lambda-side hook tells a new promise (201) from an existing one (200) and names the
    submission (the gateway's marks) that made it."""
    app = cluster.config.app
    _, path, _, body = app.request("dup-1", 1)
    for sub in (1, 2):
        res = requests.post(f"{cluster.gateway_url}{path}", json=body, timeout=10,
                            headers={"X-Harness-Sub": str(sub), "X-Harness-Job": "dup-1"})  # fmt: skip
        assert res.status_code == 202
    dispatches = [r for r in read_ledger(cluster.config.ledger_dir) if r["ev"] == "dispatch"]
    assert [(d["id"], d["sub"], d["job"], d["created"]) for d in dispatches] == [
        ("doc/dup-1", 1, "dup-1", True), ("doc/dup-1", 2, "dup-1", False)]  # fmt: skip
    assert {d["fn"] for d in dispatches} == {"process_document"}
    assert {d["target"] for d in dispatches} == {"poll://any@worker"}
