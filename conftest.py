"""Shared pytest set-up: the real server is required in CI and skipped (with a reason) elsewhere."""

from __future__ import annotations

import os

import pytest

from harness.errors import HarnessError
from harness.stack import get_stack

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
    try:
        return get_stack().check_compatible()
    except HarnessError as e:
        need("the Resonate server", e.oneline())
        raise


@pytest.fixture
def server_ready(server_versions: dict[str, str]) -> None:
    """Depend on this in tests that start the real server."""


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Scenario tests take a `backend` parameter: every backend given with --backend."""
    if "backend" in metafunc.fixturenames:
        metafunc.parametrize("backend", metafunc.config.getoption("backend") or ["process"])
