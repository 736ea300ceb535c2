"""The ledger survives kill -9 of its writer; a failpoint fires once per run, at its site."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from harness.history import read_ledger
from harness.stack import PROJECT_ROOT

JOB = {"jobId": "j1", "documentUrl": "u", "requesterId": "r", "type": "invoice"}


def run_step(tmp_path: Path, worker: str, step: int = 2) -> subprocess.CompletedProcess[str]:
    code = (
        "from harness import probe\n"
        f"print(probe.execute({JOB!r}, {step}, 'extract_text', lambda: 'value', lambda v, a: None))\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(PROJECT_ROOT),
        "HARNESS_LEDGER_DIR": str(tmp_path / "ledger"),
        "HARNESS_FAILPOINTS": str(tmp_path / "fp" / "armed.json"),
        "HARNESS_WORKER_ID": worker,
        "WORKFLOW_STEP_SECONDS": "0.01",
    }
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30)


def arm(tmp_path: Path, at: str, action: str = "crash", step: int = 2) -> None:
    (tmp_path / "fp").mkdir(exist_ok=True)
    fp = [{"id": "fp1", "job": "j1", "step": step, "at": at, "action": action}]
    (tmp_path / "fp" / "armed.json").write_text(json.dumps(fp))


def test_a_clean_execution_writes_start_and_end(tmp_path: Path) -> None:
    res = run_step(tmp_path, "worker-1")
    assert res.returncode == 0 and res.stdout.strip() == "value"
    assert [r["ev"] for r in read_ledger(tmp_path / "ledger")] == ["start", "end"]


def test_start_record_survives_sigkill_during_the_step(tmp_path: Path) -> None:
    arm(tmp_path, "during")
    res = run_step(tmp_path, "worker-1")
    assert res.returncode == -9
    records = read_ledger(tmp_path / "ledger")
    assert [r["ev"] for r in records] == ["start", "failpoint"]
    assert records[0]["job"] == "j1" and records[0]["step"] == 2 and records[0]["worker"] == "worker-1"


def test_failpoint_fires_once_then_the_retry_completes(tmp_path: Path) -> None:
    arm(tmp_path, "after_effect")
    assert run_step(tmp_path, "worker-1").returncode == -9
    assert run_step(tmp_path, "worker-2").returncode == 0
    evs = [(r["ev"], r["worker"]) for r in read_ledger(tmp_path / "ledger")]
    assert evs == [
        ("start", "worker-1"),
        ("failpoint", "worker-1"),
        ("start", "worker-2"),
        ("end", "worker-2"),
    ]


def test_before_site_fires_before_the_start_record(tmp_path: Path) -> None:
    arm(tmp_path, "before")
    assert run_step(tmp_path, "worker-1").returncode == -9
    assert [r["ev"] for r in read_ledger(tmp_path / "ledger")] == ["failpoint"]


def test_failpoint_for_another_step_does_not_fire(tmp_path: Path) -> None:
    arm(tmp_path, "during", step=3)
    assert run_step(tmp_path, "worker-1").returncode == 0


def test_a_torn_last_line_is_skipped(tmp_path: Path) -> None:
    (tmp_path / "ledger").mkdir()
    (tmp_path / "ledger" / "w.1.jsonl").write_text('{"ev": "start", "t": 1}\n{"ev": "end", "t"')
    assert [r["ev"] for r in read_ledger(tmp_path / "ledger")] == ["start"]


def test_ledger_tail_reads_only_complete_new_lines(tmp_path: Path) -> None:
    from harness.history import LedgerTail

    (tmp_path / "ledger").mkdir()
    f = tmp_path / "ledger" / "w.1.jsonl"
    f.write_text('{"ev": "start", "t": 2}\n{"ev": "end", "t"')
    tail = LedgerTail(tmp_path / "ledger")
    assert [r["ev"] for r in tail.read()] == ["start"]
    with f.open("a") as out:
        out.write(": 3}\n")
    (tmp_path / "ledger" / "w.2.jsonl").write_text('{"ev": "start", "t": 1}\n')
    assert [(r["ev"], r["t"]) for r in tail.read()] == [("start", 1), ("start", 2), ("end", 3)]
