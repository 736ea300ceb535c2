"""Shared pytest set-up: the real server is required in CI and skipped (with a reason) elsewhere."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.stack import DEFAULT_SERVER_BIN, PROJECT_ROOT, get_stack

IN_CI = os.environ.get("CI", "").lower() == "true"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--backend", action="append", choices=["process", "docker"],
                     help="cluster backend(s) for the scenario suite (default: process)")  # fmt: skip


def need(what: str, problem: str) -> None:
    """Fail in CI (where everything must run), skip with the reason elsewhere."""
    if IN_CI:
        pytest.fail(f"{what} is required in CI: {problem}", pytrace=False)
    pytest.skip(f"{what} unavailable: {problem}")


@pytest.fixture(scope="session")
def server_versions() -> dict[str, str]:
    stack = get_stack()
    if not stack.server_bin.exists() and stack.server_bin == DEFAULT_SERVER_BIN and shutil.which("go"):
        # one-time set-up; the script holds a file lock, so parallel xdist workers build it once
        subprocess.run([str(PROJECT_ROOT / "scripts" / "install-server.sh")], check=False, timeout=900)
    try:
        return stack.check_compatible()
    except HarnessError as e:
        need("the Resonate server", e.oneline())
        raise


@pytest.fixture
def server_ready(server_versions: dict[str, str]) -> None:
    """Depend on this in tests that start the real server."""


@pytest.fixture(scope="session")
def toxiproxy_bin() -> Path:
    """The toxiproxy-server binary (link faults): required in CI, skipped with the reason elsewhere."""
    from harness.toxiproxy import server_bin

    try:
        return server_bin()
    except HarnessError as e:
        need("toxiproxy-server", e.oneline())
        raise


def _docker_problem() -> str | None:
    """Why no Docker daemon can be used (None: one answers)."""
    from harness.cluster.images import DockerUnavailable, docker_client

    try:
        docker_client(timeout=30).close()
    except DockerUnavailable as e:
        return e.oneline()
    return None


def pytest_report_header(config: pytest.Config) -> str | None:
    if "docker" not in (config.getoption("backend") or []):
        return None
    problem = _docker_problem()
    return f"docker backend: {'a Docker daemon answers' if problem is None else f'UNAVAILABLE: {problem}'}"


@pytest.fixture(scope="session")
def docker_daemon() -> None:
    """Depend on this in tests that need a Docker daemon (skipped with the reason, or failed in CI)."""
    problem = _docker_problem()
    if problem is not None:
        need("a Docker daemon", problem)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """The cluster backend a scenario test runs on (parametrized by --backend); docker needs a daemon."""
    if request.param == "docker":
        request.getfixturevalue("docker_daemon")
    return str(request.param)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Scenario tests take a `backend` parameter: every backend given with --backend."""
    if "backend" in metafunc.fixturenames:
        chosen = dict.fromkeys(metafunc.config.getoption("backend") or ["process"])
        params = [pytest.param(b, marks=pytest.mark.docker) if b == "docker" else b for b in chosen]
        metafunc.parametrize("backend", params, indirect=True)
