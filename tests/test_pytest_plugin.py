"""The pytest plugin, used the way a team uses it in its own repo: a test file of their own, run in a
pytest subprocess (pytester) with --app naming the app (here the reference app)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness import paths
from harness.app.spec import REFERENCE_APP

pytest_plugins = ["pytester"]

A_USERS_SCENARIO = """
def test_a_killed_worker_resumes(harness_run):
    job = harness_run.jobs(1)[0]
    step = harness_run.steps()[1]
    harness_run.nemesis.strike(job["jobId"], step)
    harness_run.client.submit(job)
    fault = harness_run.nemesis.kill(job["jobId"], step)
    harness_run.wait_done([job["jobId"]])
    assert harness_run.verdicts(["exactly_once", "replay"]).ok
"""

A_WRONG_EXPECTATION = """
import pytest


@pytest.mark.harness(workers=1, ttl=3)
def test_a_wrong_expectation_fails(harness_run, harness_client):
    jobs = harness_run.jobs(2)
    harness_client.burst(jobs)
    harness_run.wait_done([j["jobId"] for j in jobs])
    assert harness_run.settings.workers == 1 and harness_run.settings.ttl == 3
    assert harness_run.steps() == ["1"], "deliberately wrong: the reference app has five steps"
"""

A_BUILT_IN_SCENARIO = """
def test_the_smoke_scenario(harness_scenario):
    result = harness_scenario("smoke")
    assert result.ok, result.failed
    assert set(result.results["verdicts"]) == {"exactly_once", "liveness", "no_loss"}
"""


# pytester gives the inner pytest a temporary HOME, which would move the per-user cache: the cache
# as this process found it (before any test changed HOME) is handed over explicitly
CACHE = paths.cache_dir()


@pytest.fixture
def user_env(server_ready: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the inner pytest needs from us: the per-user cache with the server, and no xdist worker ids."""
    monkeypatch.setenv(paths.CACHE_ENV, str(CACHE))
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(name, raising=False)


def _leftovers(root: Path) -> list[str]:
    """Processes still running with `root` on their command line or in their environment."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            seen = (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes()
        except OSError:
            continue
        if str(root).encode() in seen:
            found.append(
                f"{entry.name}: {(entry / 'cmdline').read_bytes().replace(b'\0', b' ').decode()[:120]}"
            )
    return found


def test_backends_parametrize_the_tests_that_use_a_cluster(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_collect='''
        import pytest

        def test_any(backend):
            pass

        @pytest.mark.harness(backends=["process"])
        def test_process_only(backend):
            pass

        def test_no_cluster():
            pass
    ''')  # fmt: skip
    res = pytester.runpytest_subprocess(
        "--co", "-q", "--backend", "process", "--backend", "docker", timeout=120
    )
    res.stdout.fnmatch_lines(["*test_any[[]process[]]", "*test_any[[]docker[]]", "*test_process_only[[]process[]]",
                              "*test_no_cluster", "4 tests collected*"])  # fmt: skip
    assert "test_process_only[docker]" not in res.stdout.str()  # left out, not skipped
    res = pytester.runpytest_subprocess("-q", "--backend", "docker", "-k", "process_only", timeout=120)
    res.assert_outcomes(skipped=1)
    res = pytester.runpytest_subprocess("--workers", "0", timeout=120)
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    res.stderr.fnmatch_lines(["*--workers N with N >= 1*"])


def test_the_app_comes_from_the_ini_relative_to_it(pytester: pytest.Pytester) -> None:
    pytester.makeini(f"[pytest]\nharness_app = {os.path.relpath(REFERENCE_APP, pytester.path)}\n")
    pytester.makepyfile(test_app=f'''
        def test_app(harness_app):
            assert str(harness_app.root) == {str(REFERENCE_APP)!r}
            assert harness_app.handler == "lambda_function:handler"
    ''')  # fmt: skip
    pytester.runpytest_subprocess("-q", timeout=120).assert_outcomes(passed=1)
    bad = pytester.runpytest_subprocess("-q", f"--app={pytester.path}", timeout=120)
    bad.assert_outcomes(errors=1)
    bad.stdout.fnmatch_lines(["*the app under test:*"])


@pytest.mark.slow
def test_a_users_scenario_passes_and_a_wrong_assertion_fails(
    pytester: pytest.Pytester, user_env: None
) -> None:
    pytester.makepyfile(test_user=A_USERS_SCENARIO, test_wrong=A_WRONG_EXPECTATION)
    res = pytester.runpytest_subprocess("-p", "no:xdist", f"--app={REFERENCE_APP}", timeout=600)
    res.assert_outcomes(passed=1, failed=1)
    res.stdout.fnmatch_lines(
        ["*deliberately wrong*", "FAILED test_wrong.py::test_a_wrong_expectation_fails*"]
    )
    runs = sorted(p.parent for p in pytester.path.rglob("run.json"))
    assert len(runs) == 2, runs
    for run_dir in runs:  # both sessions ended: history completed, cluster torn down
        assert (run_dir / "promises.json").is_file(), run_dir
        assert '"name": "done"' in (run_dir / "events.jsonl").read_text(), run_dir
    assert (next(r for r in runs if "killed" in str(r)) / "results.json").is_file()
    assert not _leftovers(pytester.path), _leftovers(pytester.path)


@pytest.mark.slow
def test_two_users_tests_run_side_by_side_under_xdist(pytester: pytest.Pytester, user_env: None) -> None:
    pytester.makepyfile(test_user=A_USERS_SCENARIO, test_builtin=A_BUILT_IN_SCENARIO)
    res = pytester.runpytest_subprocess("-p", "xdist", "-n", "2", f"--app={REFERENCE_APP}", timeout=600)
    res.assert_outcomes(passed=2)
    results = sorted(p.parent for p in pytester.path.rglob("results.json"))
    assert len(results) == 2 and results[0] != results[1], results
    assert not _leftovers(pytester.path), _leftovers(pytester.path)
