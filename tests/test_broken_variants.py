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


def test_random_promise_id_gateway_is_caught_by_dedup(tmp_path: Path, server_ready: None) -> None:
    rc, res = run_cli(tmp_path, "dedup-burst", HARNESS_LAMBDA_MODULE="tests.broken.random_id_lambda")
    assert rc == 1
    dedup, once = res["verdicts"]["dedup"], res["verdicts"]["exactly_once"]
    assert not dedup["ok"] and not once["ok"]
    assert re.search(r"job dedup-\S+ step 1 \(download_document\): \d+ workflow executions", dedup["detail"])
    assert re.search(r"job dedup-\S+: no root promise doc/dedup-", once["detail"])


def test_step_outside_ctx_run_is_caught_by_replay(tmp_path: Path, server_ready: None) -> None:
    rc, res = run_cli(tmp_path, "crash-recovery", HARNESS_WORKFLOW_MODULE="tests.broken.direct_step")
    assert rc == 1
    replay = res["verdicts"]["replay"]
    assert not replay["ok"]
    assert re.search(r"job crash-\S+ step 3 \(analyze_document\): executed \d+ times", replay["detail"])


def test_non_idempotent_sink_is_caught_by_exactly_once(tmp_path: Path, server_ready: None) -> None:
    """The crash right after step 4's sink write makes the re-run write the effect again."""
    rc, res = run_cli(tmp_path, "crash-recovery", HARNESS_WORKFLOW_MODULE="tests.broken.unsafe_sink")
    assert rc == 1
    once = res["verdicts"]["exactly_once"]
    assert not once["ok"]
    assert re.search(r"job crash-006-\S+ step 4 \(store_results\): 2 'stored' effects", once["detail"])
