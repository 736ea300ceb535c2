"""An app shaped like the seed example (lambda_handler, module-scope clients, @resonate.register at
import, nondeterministic steps), written for this test: crash-recovery passes, and the step that
returns another value for the same inputs is reported as a finding, not a failure."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.runner import run
from reports import render

pytestmark = pytest.mark.server
APP = Path(__file__).resolve().parent / "apps" / "seedlike"


def test_crash_recovery_passes_and_reports_the_nondeterministic_step(
    tmp_path: Path, server_ready: None
) -> None:
    res = run("crash-recovery", app=APP, out=tmp_path / "run")
    assert res.ok, res.results["verdicts"]
    assert res.results["app"]["handler"] == "lambda_function:lambda_handler"
    assert res.results["app"]["promise_id_scheme"] == "doc/{job}"
    found = [f for f in res.results["findings"] if f["kind"] == "nondeterministic-step"]
    # the crash right after step 1 ended (before its checkpoint) makes another worker run it again:
    # hash() of a string differs between the two processes
    assert [(f["step"], f["fn"]) for f in found] == [("1", "download_document")], res.results["findings"]
    assert "no effects declared" in res.results["verdicts"]["exactly_once"]["detail"]
    render(res.run_dir)
    assert "nondeterministic-step" in (res.run_dir / "report.md").read_text()
    assert "nondeterministic-step" in (res.run_dir / "report.html").read_text()
