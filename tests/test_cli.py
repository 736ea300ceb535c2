"""The CLI contract: exit 2 with a one-line reason on bad usage or environment; no leftovers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.cluster.process import _owner_of

HARNESS = [sys.executable, "-m", "harness.cli"]


def harness(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*HARNESS, *args], capture_output=True, text=True, timeout=120, env={**os.environ, **env}
    )


def one_line_usage_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_unknown_scenario() -> None:
    one_line_usage_error(harness("run", "no-such-scenario"), "no-such-scenario", "crash-recovery")


@pytest.mark.parametrize("n", ["0", "-3", "many"])
def test_workers_must_be_at_least_one(n: str) -> None:
    one_line_usage_error(harness("run", "smoke", "--workers", n), "workers")


def test_unknown_backend() -> None:
    one_line_usage_error(harness("run", "smoke", "--backend", "k8s"), "backend")


def test_missing_server_binary(tmp_path: Path) -> None:
    one_line_usage_error(
        harness("run", "smoke", "--server-bin", str(tmp_path / "nope")), "no Resonate server binary"
    )


def test_server_whose_protocol_does_not_match_the_sdk_is_refused(tmp_path: Path) -> None:
    """A v0.7.0-like server (no --aio-poll-addr, no subscriptions) must not be used with SDK 0.6.x."""
    old = tmp_path / "resonate"
    old.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = "--version" ]; then echo "resonate version 0.7.0"; exit 0; fi\n'
        'echo "      --aio-sender-plugin-poll-addr string   http server address"\n'
        'echo "      --api-http-addr string   http server address"\n'
        'echo "      --aio-store-sqlite-path string   sqlite database path"\n'
    )
    old.chmod(0o755)
    one_line_usage_error(harness("run", "smoke", "--server-bin", str(old)), "0.7.0", "--aio-poll-addr")


def test_env_var_names_the_server_binary_too(tmp_path: Path) -> None:
    one_line_usage_error(harness("run", "smoke", RESONATE_SERVER_BIN=str(tmp_path / "missing")), "missing")


def test_check_of_a_directory_that_is_no_run(tmp_path: Path) -> None:
    one_line_usage_error(harness("check", str(tmp_path)), "run.json")


def test_a_run_directory_is_never_reused(tmp_path: Path) -> None:
    (tmp_path / "run.json").write_text("{}")
    one_line_usage_error(harness("run", "smoke", "--out", str(tmp_path)), "already holds a run")


def leftovers(owner: int) -> list[int]:
    return [
        int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _owner_of(int(p.name)) == owner
    ]


@pytest.mark.server
def test_ctrl_c_leaves_no_process_behind(tmp_path: Path, server_ready: None) -> None:
    proc = subprocess.Popen(
        [*HARNESS, "run", "chaos", "--out", str(tmp_path / "run")], stderr=subprocess.PIPE, text=True
    )
    ledger = tmp_path / "run" / "ledger"
    deadline = time.monotonic() + 60
    while not (ledger.exists() and any(ledger.iterdir())) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert leftovers(proc.pid), "the run should have started processes"
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130, proc.stderr.read() if proc.stderr else ""
    assert leftovers(proc.pid) == []


@pytest.mark.server
def test_harness_down_removes_what_a_killed_run_left(tmp_path: Path, server_ready: None) -> None:
    proc = subprocess.Popen(
        [*HARNESS, "run", "chaos", "--out", str(tmp_path / "run")], stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 60
    while len(leftovers(proc.pid)) < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert leftovers(proc.pid)
    proc.kill()  # no chance to clean up
    proc.wait(timeout=10)
    assert leftovers(proc.pid), "kill -9 of the harness leaves its children running"
    down = harness("down")
    assert down.returncode == 0, down.stderr
    assert leftovers(proc.pid) == []


def test_unknown_scenario_parameter() -> None:
    one_line_usage_error(harness("run", "dedup-verify", "--param", "colour=3"), "colour", "copies")


def test_malformed_scenario_parameter() -> None:
    one_line_usage_error(harness("run", "dedup-verify", "--param", "jobs"), "NAME=N")
