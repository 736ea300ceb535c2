"""`harness fuzz`: the corpus (no server), the analysis of a run directory (no server), and the real CLI
against the real server: the reference app passes, an app that puts unvalidated job ids into its
promise ids (tests/apps/unvalidated_ids) fails, naming the cases and what went wrong.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.app.spec import REFERENCE_APP, AppSpec
from harness.fuzz.analyze import analyze
from harness.fuzz.corpus import ACCEPT, CATEGORIES, EITHER, STATUS, VALID_ID, build_corpus

ROOT = Path(__file__).resolve().parent.parent
BROKEN_APP = ROOT / "tests" / "apps" / "unvalidated_ids"
PROBLEMS = {"lost", "never-done", "5xx", "hang"}


def fuzz_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "fuzz", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "COLUMNS": "220"})  # fmt: skip
    print(proc.stdout[-6000:], proc.stderr[-3000:])
    return proc


# --- the corpus -------------------------------------------------------------------------------
def test_corpus_is_seeded_and_derived_from_the_templates() -> None:
    spec = AppSpec.load(REFERENCE_APP)
    cases = build_corpus(spec, 7)
    assert len(cases) >= 300 and len({c.id for c in cases}) == len(cases)
    assert [(c.id, c.body, c.path) for c in build_corpus(spec, 7)] == [(c.id, c.body, c.path) for c in cases]
    assert [c.body for c in build_corpus(spec, 8)] != [c.body for c in cases]
    assert {c.category for c in cases} == set(CATEGORIES)
    by_desc = {c.description: c for c in cases}
    assert (
        by_desc["jobId 'a?b'"].expect == EITHER and json.loads(by_desc["jobId 'a?b'"].body)["jobId"] == "a?b"
    )
    sixty_four, sixty_five = (
        by_desc["jobId 'aaaaaaaaaaaa'… (64 chars)"],
        by_desc["jobId 'aaaaaaaaaaaa'… (65 chars)"],
    )
    assert sixty_four.expect == ACCEPT and sixty_five.expect == EITHER
    assert by_desc["status of 'a?b'"].path == "/status/a%3Fb" and by_desc["status of 'a?b'"].kind == STATUS
    assert {"missing requesterId", "type=[]", "documentUrl of 5000 characters"} <= set(by_desc)
    assert sum(c.category == "valid" for c in cases) == 12
    assert all(VALID_ID.fullmatch(c.job or "") for c in cases if c.expect == ACCEPT)
    # a small corpus still has some of every kind
    small = build_corpus(spec, 7, 24)
    assert len(small) == 24 and {c.category for c in small} == set(CATEGORIES)
    assert len(build_corpus(spec, 7, 400)) == 400


def test_corpus_follows_another_apps_templates() -> None:
    spec = AppSpec.load(BROKEN_APP)
    fields = {c.description.split("=")[0] for c in build_corpus(spec, 1) if c.category == "wrong-type"}
    assert fields == {"jobId", "documentUrl"}
    in_path = dataclasses.replace(spec, submit_method="PUT", submit_path="/jobs/{job}", submit_body={"kind": "x"},
                                  status_path="/jobs/{job}/state")  # fmt: skip
    cases = build_corpus(in_path, 1)
    odd = {c.description: c for c in cases if c.category == "odd-id"}
    assert odd["path id 'a?b'"].path == "/jobs/a%3Fb" and odd["path id 'a?b'"].method == "PUT"
    assert {c.path for c in cases if c.category == "valid"} >= {"/jobs/fz1-001"}
    assert any(c.path == "/jobs/a%23b/state" for c in cases if c.kind == STATUS)


# --- the analysis, from a run directory alone ----------------------------------------------------
def _row(cid: str, status: int | None, job: str, sub: int, **kw: Any) -> dict[str, Any]:
    return {"id": cid, "category": "odd-id", "description": f"jobId {job!r}", "method": "POST",
            "path": "/process-document", "kind": "submit", "expect": EITHER, "job": job, "sub": sub,
            "body_preview": "{}", "status": status, "latency": 0.01, "answer": "", "hang": False, "error": None,
            "poll": None, **kw}  # fmt: skip


def test_analysis_finds_promises_for_rejected_requests_and_lost_jobs(tmp_path: Path) -> None:
    (tmp_path / "run.json").write_text(json.dumps({"scenario": "fuzz", "stack": "legacy", "verdicts": [],
                                                   "app": {"learned": {"scheme": "doc/{job}"}}}))  # fmt: skip
    poll = {"path": "/status/c", "polls": 3, "missing": 3, "failed": 0, "done": False, "lost": True,
            "gave_up": False, "last": {"http": 404, "answer": "{}", "error": None}}  # fmt: skip
    cases = [_row("odd-id-001", 400, "a", 1), _row("odd-id-002", 400, "b", 2), _row("odd-id-003", 202, "c", 3, poll=poll),
             _row("odd-id-004", 202, "d", 4), _row("odd-id-005", None, "e", 5, hang=True, error="no answer within 20s"),
             _row("odd-id-006", 504, "f", 6), _row("odd-id-007", 400, "g", 7)]  # fmt: skip
    (tmp_path / "fuzz.json").write_text(json.dumps({"cases": cases, "baseline": ["doc/canary"], "missing_status": 404,
                                                    "gateway_timeout_s": 5, "deadline_s": 30}))  # fmt: skip
    ledger = [{"ev": "dispatch", "id": "doc/a", "job": "odd-id-001", "sub": 1, "created": True, "t": 1.0},
              {"ev": "dispatch", "id": "doc/c", "job": "odd-id-003", "sub": 3, "created": True, "t": 2.0}]  # fmt: skip
    (tmp_path / "ledger").mkdir()
    (tmp_path / "ledger" / "lambda-1.1.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ledger))
    promises = [{"id": i, "state": "PENDING", "tags": {"resonate:root": i}} for i in ("doc/canary", "doc/a", "doc/b", "doc/c",
                                                                                    "doc/zzz")]  # fmt: skip
    (tmp_path / "promises.json").write_text(json.dumps(promises))
    report = analyze(tmp_path)
    rows = {r["id"]: r for r in report["rows"]}
    assert (
        rows["odd-id-001"]["problems"] == ["promise-for-rejected"] and "doc/a" in rows["odd-id-001"]["detail"]
    )
    assert (
        rows["odd-id-002"]["problems"] == ["unexplained-promise"] and "doc/b" in rows["odd-id-002"]["detail"]
    )
    assert rows["odd-id-003"]["problems"] == ["lost"] and "404 3 times" in rows["odd-id-003"]["detail"]
    assert rows["odd-id-004"]["problems"] == ["lost"] and "dispatched nothing" in rows["odd-id-004"]["detail"]
    assert rows["odd-id-005"]["problems"] == ["hang"] and rows["odd-id-006"]["problems"] == ["hang"]
    assert rows["odd-id-007"]["problems"] == []
    assert report["unexplained"] == ["doc/zzz"]
    verdict = report["verdict"]
    assert not verdict["ok"] and verdict["detail"].startswith("6 of 7 cases show problems: lost in 2")
    assert "'doc/zzz'" in verdict["detail"]


def test_analysis_doubts_a_done_status_whose_promise_is_still_pending(tmp_path: Path) -> None:
    """An id the app mangles ('a%2Fb' read back as 'a/b'): its status answers done from another job's
    promise while its own never completes on the server."""
    (tmp_path / "run.json").write_text(json.dumps({"scenario": "fuzz", "stack": "legacy", "verdicts": []}))

    def poll(path: str) -> dict[str, Any]:
        return {"path": path, "polls": 2, "missing": 0, "failed": 0, "done": True, "lost": False, "gave_up": False,
                "last": {"http": 200, "answer": '{"status": "done"}', "error": None}}  # fmt: skip

    cases = [_row("odd-id-001", 202, "a%2Fb", 1, poll=poll("/status/a%252Fb")),
             _row("odd-id-002", 202, "a/b", 2, poll=poll("/status/a%2Fb"))]  # fmt: skip
    (tmp_path / "fuzz.json").write_text(json.dumps({"cases": cases, "baseline": [], "missing_status": 404}))
    (tmp_path / "ledger").mkdir()
    ledger = [{"ev": "dispatch", "id": f"doc/{job}", "job": f"odd-id-00{sub}", "sub": sub, "created": True, "t": 1.0}
              for sub, job in ((1, "a%2Fb"), (2, "a/b"))]  # fmt: skip
    (tmp_path / "ledger" / "lambda-1.1.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ledger))
    promises = [
        {"id": "doc/a%2Fb", "state": "PENDING", "tags": {}},
        {"id": "doc/a/b", "state": "RESOLVED", "tags": {}},
    ]
    (tmp_path / "promises.json").write_text(json.dumps(promises))
    rows = {r["id"]: r for r in analyze(tmp_path)["rows"]}
    assert rows["odd-id-001"]["problems"] == ["never-done"]
    assert (
        "answered done" in rows["odd-id-001"]["detail"]
        and "doc/a%2Fb is still PENDING" in rows["odd-id-001"]["detail"]
    )
    assert rows["odd-id-002"]["problems"] == []


# --- the real CLI against the real server ---------------------------------------------------------
def test_bad_usage_exits_2_with_one_line(tmp_path: Path) -> None:
    for args in (["--app", str(tmp_path / "nope")], ["--cases", "0"]):
        proc = fuzz_cli(*args, "--out", str(tmp_path / "run"), timeout=60)
        assert proc.returncode == 2, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


@pytest.mark.server
def test_reference_app_passes(server_ready: None, tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = fuzz_cli("--out", str(out), "--seed", "11")
    assert proc.returncode == 0, proc.stdout[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["scenario"] == "fuzz" and results["backend"] == "process" and results["seed"] == 11
    assert set(results["verdicts"]) == {"fuzz"} and results["verdicts"]["fuzz"]["ok"]
    assert results["versions"]["server"] and results["app"]["handler"] == "lambda_function:handler"
    rows = results["fuzz"]
    assert len(rows) >= 300 and not [r for r in rows if r["problems"]]
    assert {"id", "description", "method", "path", "body", "status", "latency", "problems"} <= set(rows[0])
    for r in rows:
        if r["expect"] == ACCEPT:
            assert r["status"] == 202, r
        elif not (r["category"] == "status-id" and "(64 chars)" in r["description"]):  # well-formed ids
            assert 400 <= r["status"] < 500, r  # every malformed case is a client error
    assert results["figures"]["fuzz_promise_for_rejected"] == 0 and results["fuzz_unexplained_promises"] == []
    accepted = {r["id"] for r in rows if r["expect"] == ACCEPT}
    assert results["jobs"]["completed"] == len(accepted)
    assert "PASS  fuzz" in proc.stdout and f"fuzz: {len(rows)} cases" in proc.stdout


@pytest.mark.server
def test_app_with_unvalidated_ids_fails(server_ready: None, tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = fuzz_cli("--app", str(BROKEN_APP), "--out", str(out), "--deadline", "20")
    assert proc.returncode == 1, proc.stdout[-3000:]
    results = json.loads((out / "results.json").read_text())
    verdict = results["verdicts"]["fuzz"]
    assert not verdict["ok"]
    rows = {r["description"]: r for r in results["fuzz"] if r["category"] == "odd-id"}
    for desc in ("jobId 'a?b'", "jobId 'a#b'", "jobId 'a%2Fb'", "jobId 'job\\n'"):
        assert PROBLEMS & set(rows[desc]["problems"]), rows[desc]
        assert rows[desc]["id"] in proc.stdout and rows[desc]["detail"]
    assert "lost" in rows["jobId 'a?b'"]["problems"] and "404" in rows["jobId 'a?b'"]["detail"]
    assert "lost in" in verdict["detail"] and "jobId 'a?b'" in verdict["detail"]
    assert "FAIL  fuzz" in proc.stdout
