"""Dedup verification: the gateway's die-after-handler hook, the extended dedup verdict, the per-job
table, and a small real `harness dedup` run (J=3, K=4, one Lambda instance death)."""

from __future__ import annotations

import json
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from harness import checks, dedup
from harness.agent.worker import PATH_ENV
from harness.cli import main
from harness.gateway import GatewayProcess
from harness.history import read_jsonl
from tests.histories import FakeRun

# ----- the gateway hook, with a throwaway handler (no server needed) -----

MARKER_MODULE = """
import json, os

def handler(event, context):
    body = json.loads(event["body"] or "{}")
    with open(os.environ["MARKER_FILE"], "a") as f:  # the handler's side effect (begin_rpc in the SUT)
        f.write(json.dumps({"jobId": body.get("jobId"), "pid": os.getpid()}) + "\\n")
    return {"statusCode": 202, "body": json.dumps({"jobId": body.get("jobId"), "pid": os.getpid()})}
"""


@pytest.fixture
def marker_gateway(tmp_path: Path) -> Iterator[tuple[GatewayProcess, Path]]:
    (tmp_path / "marker_lambda.py").write_text(textwrap.dedent(MARKER_MODULE))
    marker = tmp_path / "marker.jsonl"
    gw = GatewayProcess("marker_lambda:handler", cwd=tmp_path, instances=2, log_path=tmp_path / "gw.jsonl",
                        stderr_path=tmp_path / "gw.err",
                        env={PATH_ENV: str(tmp_path), "MARKER_FILE": str(marker)})  # fmt: skip
    gw.start()
    try:
        yield gw, marker
    finally:
        gw.stop()


def submit(url: str, job_id: str) -> requests.Response:
    """A submission as the harness sends it: marked with its job (X-Harness-Job), which the
    die-after-handler fault matches (the body's schema is the app's business)."""
    return requests.post(f"{url}/process-document", json={"jobId": job_id}, headers={"X-Harness-Job": job_id},
                         timeout=10)  # fmt: skip


def test_armed_instance_dies_after_its_handler_ran(marker_gateway: tuple[GatewayProcess, Path]) -> None:
    gw, marker = marker_gateway
    url = gw.url
    armed = gw.arm_death("job-x")
    assert armed["jobId"] == "job-x" and armed["status"] == 502
    assert submit(url, "other").status_code == 202

    res = submit(url, "job-x")
    assert res.status_code == 502
    ran = [json.loads(line) for line in marker.read_text().splitlines()]
    assert [r["jobId"] for r in ran] == ["other", "job-x"]  # the handler did its work before the death
    fired = gw.faults()["fired"]
    assert len(fired) == 1 and fired[0]["jobId"] == "job-x" and fired[0]["handler_status"] == 202
    assert fired[0]["pid"] == ran[-1]["pid"] and fired[0]["instance"] == res.headers["x-harness-instance"]
    assert gw.faults()["armed"] == []
    dead = requests.get(f"{url}/_gateway/instances", timeout=5).json()["dead"]
    assert any(d["pid"] == fired[0]["pid"] and d["kill_reason"].startswith("fault:") for d in dead)

    # the fault fired once: the retry is answered, by a live instance
    retry = submit(url, "job-x")
    assert retry.status_code == 202 and retry.json()["pid"] != fired[0]["pid"]

    gw.arm_death("job-y", status=504)
    assert submit(url, "job-y").status_code == 504
    deadline = time.monotonic() + 20  # the pool is refilled with fresh instances
    while len(gw.instances()) < 2 or any(i["state"] == "starting" for i in gw.instances()):
        assert time.monotonic() < deadline, gw.instances()
        time.sleep(0.1)
    outcomes = Counter(
        json.loads(line)["outcome"] for line in Path(gw.log_path or "").read_text().splitlines()
    )
    assert outcomes["fault_crash"] == 1 and outcomes["fault_timeout"] == 1


def test_arming_rejects_bad_requests(marker_gateway: tuple[GatewayProcess, Path]) -> None:
    gw, _ = marker_gateway
    route = f"{gw.url}/_gateway/faults/die-after-handler"
    assert requests.post(route, json={"status": 502}, timeout=5).status_code == 400
    assert requests.post(route, json={"jobId": "a", "status": 500}, timeout=5).status_code == 400
    assert requests.post(route, data=b"not json", timeout=5).status_code == 400
    assert requests.get(route, timeout=5).status_code == 405
    gw.arm_death("a", count=2)
    assert requests.delete(f"{gw.url}/_gateway/faults", timeout=5).json() == {"disarmed": 1}
    assert submit(gw.url, "a").status_code == 202


# ----- the extended dedup verdict and the per-job table, on doctored histories -----


def _answer(run: FakeRun, job: dict, status: int, mode: str, case: str, **fields: object) -> None:
    jid = job["jobId"]
    run.event("submit", job_id=jid, sub=len(run.events), mode=mode, case=case, **fields)
    body = {"status": "accepted", "jobId": jid, "statusUrl": f"/status/{jid}"} if status == 202 else {}
    run.event("response", job_id=jid, sub=len(run.events), mode=mode, status=status, body=body, latency=0.02,
              case=case, instance=f"lambda-{len(run.events) % 3}")  # fmt: skip


def death_history(
    retry_status: int = 202, regress: str | None = None, done_flag: bool = True
) -> tuple[FakeRun, dict]:
    """One job: its first submission dies (502), a retry, two concurrent copies, one after done.
    Status polls are logged as the client logs them (`done`: the app's done rule), or, with
    `done_flag=False`, as histories from before the app was a plug-in (the status string only)."""

    def poll(http: int, status: str | None) -> None:
        flag = {"done": http == 200 and status == "done"} if done_flag else {}
        run.event("status", job_id=job["jobId"], http=http, status=status, **flag)

    run = FakeRun(verdicts=["dedup"])
    job = run.new_job()
    run.submit(job, mode="dup")  # creates the root promise: the dying instance called begin_rpc
    run.events[-1].update(status=502, body={"message": "Internal server error"}, case="death")
    run.events[-2]["case"] = "death"
    run.fault("lambda-death", "lambda-1", job=job["jobId"], instance_pid=999, status=502)
    _answer(run, job, retry_status, "retry", "retry-after-death")
    for _ in range(2):
        _answer(run, job, 202, "dup", "concurrent")
    poll(200, "processing")
    run.run_job(job)
    poll(200, "done")
    if regress == "processing":
        poll(200, "processing")
    elif regress == "404":
        poll(404, None)
    _answer(run, job, 202, "late-dup", "after-done")
    return run, job


def test_dedup_holds_when_a_lost_answer_is_followed_by_an_accepted_retry() -> None:
    run, _job = death_history()
    v = checks.dedup(run.history())
    assert v["ok"], v["detail"]
    assert "1 lost responses" in v["detail"]


def test_dedup_fails_when_no_retry_after_a_lost_answer_is_accepted() -> None:
    run, job = death_history(retry_status=503)
    v = checks.dedup(run.history())
    assert not v["ok"] and job["jobId"] in v["detail"] and "none of its 1 retries was accepted" in v["detail"]


@pytest.mark.parametrize("done_flag", [True, False], ids=["done-flag", "status-only"])
@pytest.mark.parametrize("regress", ["processing", "404"])
def test_dedup_fails_when_the_status_goes_backwards(regress: str, done_flag: bool) -> None:
    run, job = death_history(regress=regress, done_flag=done_flag)
    v = checks.dedup(run.history())
    assert not v["ok"] and job["jobId"] in v["detail"]
    assert ("back to processing" if regress == "processing" else "404") in v["detail"]
    assert checks.dedup(death_history(done_flag=done_flag)[0].history())["ok"]  # the same run, no regression


def test_table_counts_submissions_by_case() -> None:
    run, _job = death_history()
    h = run.history()
    (row,) = dedup.table(h)
    assert row["submissions"] == {"concurrent": 2, "after-done": 1, "death": 1, "retry-after-death": 1}
    assert row["total"] == 5 and row["answers"] == {"202": 4, "502": 1} and row["lost"] == 1
    assert row["root_promises"] == 1 and row["executions"] == 1 and row["instance_deaths"] == 1
    assert row["statuses_seen"] == ["processing", "done"] and row["ok"] and row["absorbed"] == 3
    figs = dedup.dedup_figures(h, [row])
    assert figs["most_executions_of_any_job"] == 1 and figs["submissions_absorbed"] == 3
    assert figs["dup_latency_ms_concurrent_p50"] == 20.0 and figs["dup_latency_ms_late_max"] == 20.0


def test_table_flags_a_second_execution() -> None:
    run, job = death_history()
    run.execute(job, 1, worker="worker-2", pid=22)
    (row,) = dedup.table(run.history())
    assert row["executions"] == 2 and not row["ok"]


def test_split_adds_up_and_needs_two_copies() -> None:
    for k in range(2, 15):
        for death in (False, True) if k >= 3 else (False,):
            s = dedup.split(k, death)
            assert s.total == k and s.concurrent >= min(2, k - 2 * s.death)
    from harness.errors import HarnessError

    with pytest.raises(HarnessError):
        dedup.split(1, False)


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as e:
        main(["dedup", "--copies", "1", "--out", str(tmp_path / "x")])
    assert e.value.code == 2


# ----- a small real run -----


@pytest.mark.server
def test_small_dedup_run_with_an_instance_death(tmp_path: Path, server_ready: None) -> None:
    out = tmp_path / "run"
    rc = main(["dedup", "--jobs", "3", "--copies", "4", "--seed", "7", "--out", str(out)])
    results = json.loads((out / "results.json").read_text())
    assert rc == 0, results["verdicts"]
    assert set(results["verdicts"]) == {"exactly_once", "dedup", "liveness", "no_loss"}
    assert all(v["ok"] for v in results["verdicts"].values())

    rows = results["dedup_jobs"]
    events = read_jsonl(out / "events.jsonl")
    subs = Counter(e["job_id"] for e in events if e["kind"] == "submit")
    assert len(rows) == 3 and sum(r["total"] for r in rows) == results["jobs"]["submitted"] == 12
    for r in rows:  # the table's counts are the history's
        assert r["total"] == sum(r["submissions"].values()) == subs[r["job"]] == 4
        assert r["root_promises"] == 1 and r["executions"] == 1 and r["ok"]
        assert r["statuses_seen"][-1] == "done"
    died = [r for r in rows if r["instance_deaths"]]
    assert len(died) == 1 and died[0]["submissions"]["death"] == 1 and died[0]["answers"].get("502") == 1
    assert died[0]["submissions"]["retry-after-death"] >= 1
    kinds = Counter(k for r in rows for k in r["submissions"])
    assert {"concurrent", "after-202", "after-done", "death", "retry-after-death"} <= set(kinds)
    figs = results["figures"]
    assert figs["instance_deaths"] == 1 and figs["most_executions_of_any_job"] == 1
    assert figs["submissions_absorbed"] == 12 - 3 - 1  # every 2xx after each job's first one
    assert figs["dup_latency_ms_concurrent_p50"] is not None and figs["dup_latency_ms_late_max"] is not None
    assert any(f["kind"] == "lambda-death" for f in results["faults"])
    assert (
        results["command"].startswith("harness run dedup-verify")
        and "--param copies=4 --param jobs=3" in results["command"]
    )
