"""The harness must be able to fail: broken apps are caught by the right verdict.

Each broken app (tests/apps/broken_*) is loaded like any user's app and run through the real CLI
(`harness run SCENARIO --app DIR`) against the real server; the run must exit 1 with `ok: false`
naming the job and the step (or the function).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.server
APPS = Path(__file__).resolve().parent / "apps"
REFERENCE = Path(__file__).resolve().parent.parent / "workflow"


def run_cli(tmp_path: Path, scenario: str, app: Path) -> tuple[int, dict, str]:
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "run", scenario, "--app", str(app), "--out", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)  # fmt: skip
    print(proc.stdout, proc.stderr)
    results = json.loads((out / "results.json").read_text()) if (out / "results.json").exists() else {}
    return proc.returncode, results, proc.stderr


CASES = {
    # app: (scenario, verdicts that must fail, the detail that names job and step)
    "broken_random_id": (
        "dedup-burst", ("dedup",),
        r"job dedup-\S+: (\d+) submissions made \1 root promises.*step 1 \(download_document\): \d+ workflow executions",
    ),
    "broken_direct_step": (
        "crash-recovery", ("replay",),
        r"job crash-\S+: analyze_document is called directly in the workflow body, not through ctx\.run, and "
        r"re-ran on replay",
    ),
    # the crash right after step 4's sink write makes the re-run write the effect again
    "broken_unsafe_sink": (
        "crash-recovery", ("exactly_once",), r"job crash-\S+ step 4 \(store_results\): 2 'stored' effects",
    ),
    # 20 jobs: a replay branches elsewhere for about half of them
    "broken_nondeterministic_body": (
        "dedup-burst", ("exactly_once",),
        r"job dedup-\S+ step 2: on replay the workflow asks for extract_text\S* where extract_text\S* was checkpointed",
    ),
}  # fmt: skip


@pytest.mark.parametrize("app", sorted(CASES))
def test_broken_app_is_caught(app: str, tmp_path: Path, server_ready: None) -> None:
    scenario, failing, detail = CASES[app]
    rc, res, _ = run_cli(tmp_path, scenario, APPS / app)
    assert rc == 1
    for name in failing:
        assert not res["verdicts"][name]["ok"], (name, res["verdicts"][name])
    assert re.search(detail, res["verdicts"][failing[0]]["detail"]), res["verdicts"][failing[0]]["detail"]


def test_random_ids_lose_the_job_to_the_status_route(tmp_path: Path, server_ready: None) -> None:
    """The handler polls doc/<jobId> but dispatched another id: accepted jobs are lost to the client."""
    rc, res, _ = run_cli(tmp_path, "smoke", APPS / "broken_random_id")
    assert rc == 1
    assert re.search(
        r"job smoke-\S+: accepted, but its status route answers 404", res["verdicts"]["no_loss"]["detail"]
    )
    assert res["app"]["promise_id_scheme"] is None  # learned from the canary: the ids do not carry the job id


def test_an_unsupported_sdk_is_refused_with_one_line(tmp_path: Path, server_ready: None) -> None:
    """The hooks refuse an SDK outside their range: exit 2 and one line, never an empty ledger and a green run."""
    app = tmp_path / "app"
    meta = app / "resonate_sdk-0.5.0.dist-info"
    meta.mkdir(parents=True)
    (meta / "METADATA").write_text("Metadata-Version: 2.1\nName: resonate-sdk\nVersion: 0.5.0\n")
    toml = (APPS / "broken_direct_step" / "harness.toml").read_text()
    toml = toml.replace('worker = "worker.py"', f'worker = "{REFERENCE / "worker.py"}"')
    (app / "harness.toml").write_text(toml.replace('"../../../workflow"', f'"{REFERENCE}"'))
    rc, _, err = run_cli(tmp_path, "smoke", app)
    assert rc == 2
    lines = [line for line in err.splitlines() if not line.startswith("harness: +")]
    assert "Traceback" not in err
    assert re.search(r"resonate-sdk 0\.5\.0 is not supported \(resonate-sdk >=0\.6\.5,<0\.7\)", lines[-1]), (
        lines
    )


def _reference_copy(tmp_path: Path, worker: str | None = None, effect_function: str | None = None) -> Path:
    """The reference app's config in a directory of its own, its files found through `path`."""
    app = tmp_path / "app"
    app.mkdir()
    toml = (
        (REFERENCE / "harness.toml")
        .read_text()
        .replace("[app]\n", f'[app]\npath = [".", "{REFERENCE}"]\n', 1)
    )
    toml = toml.replace('worker = "worker.py"', f'worker = "{worker or REFERENCE / "worker.py"}"')
    if effect_function:
        toml = re.sub(r'function = "[^"]*"', f'function = "{effect_function}"', toml)
    (app / "harness.toml").write_text(toml)
    return app


def test_a_worker_that_dies_at_start_up_is_named_with_its_error(tmp_path: Path, server_ready: None) -> None:
    worker = tmp_path / "dying_worker.py"
    worker.write_text('raise RuntimeError("the app cannot start: no config")\n')
    rc, _, err = run_cli(tmp_path, "smoke", _reference_copy(tmp_path, worker=str(worker)))
    assert rc == 2 and "Traceback" not in err.split("harness: error")[-1]
    last = err.strip().splitlines()[-1]
    assert "worker script to keep running" in last and "the app cannot start: no config" in last, last


def test_an_effect_function_the_workers_never_import_is_refused(tmp_path: Path, server_ready: None) -> None:
    """A declared effect function in the worker script (it runs as __main__) would never be hooked."""
    rc, _, err = run_cli(tmp_path, "smoke", _reference_copy(tmp_path, effect_function="worker:sink_write"))
    assert rc == 2
    last = err.strip().splitlines()[-1]
    assert "[effects] function = 'worker:sink_write'" in last and "no worker process imported" in last, last
