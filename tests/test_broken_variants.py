"""The harness must be able to fail: broken SUT variants are caught by the right verdict.

Each runs the real CLI (`harness run`) against the real server with one module swapped, and
expects exit status 1 and `ok: false` naming the job and the step.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.server


def run_cli(tmp_path: Path, scenario: str, **env: str) -> tuple[int, dict]:
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", scenario, "--out", str(out)],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    print(proc.stdout, proc.stderr)
    return proc.returncode, json.loads((out / "results.json").read_text())


CASES = {
    # variant: (scenario, env, verdicts that must fail, the detail that names job and step)
    "random promise id gateway": (
        "dedup-burst", {"HARNESS_LAMBDA_MODULE": "tests.broken.random_id_lambda"}, ("dedup", "exactly_once"),
        r"job dedup-\S+ step 1 \(download_document\): \d+ workflow executions",
    ),
    "step outside ctx.run": (
        "crash-recovery", {"HARNESS_WORKFLOW_MODULE": "tests.broken.direct_step"}, ("replay",),
        r"job crash-\S+ step 3 \(analyze_document\): executed \d+ times",
    ),
    # the crash right after step 4's sink write makes the re-run write the effect again
    "non-idempotent sink": (
        "crash-recovery", {"HARNESS_WORKFLOW_MODULE": "tests.broken.unsafe_sink"}, ("exactly_once",),
        r"job crash-006-\S+ step 4 \(store_results\): 2 'stored' effects",
    ),
}  # fmt: skip


@pytest.mark.parametrize("variant", sorted(CASES))
def test_broken_variant_is_caught(variant: str, tmp_path: Path, server_ready: None) -> None:
    scenario, env, failing, detail = CASES[variant]
    rc, res = run_cli(tmp_path, scenario, **env)
    assert rc == 1
    for name in failing:
        assert not res["verdicts"][name]["ok"], (name, res["verdicts"][name])
    assert re.search(detail, res["verdicts"][failing[0]]["detail"]), res["verdicts"][failing[0]]["detail"]


def test_random_id_is_also_an_exactly_once_failure_naming_the_job(tmp_path: Path, server_ready: None) -> None:
    rc, res = run_cli(tmp_path, "smoke", HARNESS_LAMBDA_MODULE="tests.broken.random_id_lambda")
    assert rc == 1
    assert re.search(r"job smoke-\S+: no root promise doc/smoke-", res["verdicts"]["exactly_once"]["detail"])
