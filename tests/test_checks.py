"""Every verdict holds on a healthy history and fails, naming job and step, on a doctored one."""

from __future__ import annotations

from harness import checks
from tests.histories import FakeRun


def healthy(kill_step: int | None = 3) -> tuple[FakeRun, list[dict]]:
    """Three jobs, one submitted twice, one whose worker is killed during `kill_step`."""
    run = FakeRun()
    jobs = [run.new_job() for _ in range(3)]
    run.submit(jobs[0])
    run.submit(jobs[0], mode="dup")
    run.run_job(jobs[0])
    run.submit(jobs[1])
    run.run_job(jobs[1], worker="worker-2", pid=22)
    run.submit(jobs[2])
    if kill_step:
        for step in range(1, kill_step):
            run.execute(jobs[2], step, "worker-3", 33)
        attempt = run.execute(jobs[2], kill_step, "worker-3", 33, end=False)
        run.fault("kill", "worker-3", job=jobs[2]["jobId"], step=kill_step, pid=33, attempt=attempt)
        for step in range(kill_step, 6):
            run.execute(jobs[2], step, "worker-1", 11)
        run.finish(jobs[2])
    else:
        run.run_job(jobs[2])
    return run, jobs


def verdict(run: FakeRun, name: str) -> dict:
    return checks.VERDICTS[name](run.history())


def test_healthy_history_passes_every_verdict() -> None:
    run, _ = healthy()
    for name in checks.VERDICTS:
        v = verdict(run, name)
        assert v["ok"], (name, v["detail"])


# --- exactly_once ---------------------------------------------------------------------------
def test_exactly_once_fails_on_a_wrong_final_value() -> None:
    run, _jobs = healthy()
    job = run.new_job()
    run.submit(job)
    for step in range(1, 6):
        run.execute(job, step)
    wrong = {**run.value(job, 3), "jobId": job["jobId"]}
    run.finish(job, value=wrong)
    v = verdict(run, "exactly_once")
    assert not v["ok"] and job["jobId"] in v["detail"] and "differs" in v["detail"]


def test_exactly_once_fails_on_a_duplicate_sink_effect() -> None:
    run, jobs = healthy()
    run.sink.append({**run.sink[0]})  # the first effect is store_results of jobs[0]
    v = verdict(run, "exactly_once")
    assert not v["ok"]
    assert jobs[0]["jobId"] in v["detail"] and "step 4 (store_results)" in v["detail"]


def test_exactly_once_fails_when_the_root_has_another_id() -> None:
    run = FakeRun()
    job = run.new_job()
    run.submit(job, root_id="doc/0f3e2a")
    v = verdict(run, "exactly_once")
    assert (
        not v["ok"] and f"no root promise doc/{job['jobId']}" in v["detail"] and "doc/0f3e2a" in v["detail"]
    )


def test_exactly_once_fails_on_a_missing_effect() -> None:
    run, jobs = healthy()
    run.sink = [r for r in run.sink if not (r["job_id"] == jobs[1]["jobId"] and r["kind"] == "notified")]
    v = verdict(run, "exactly_once")
    assert not v["ok"] and jobs[1]["jobId"] in v["detail"] and "step 5 (notify_requester)" in v["detail"]


# --- dedup ----------------------------------------------------------------------------------
def test_dedup_fails_when_duplicates_make_two_roots_and_two_executions() -> None:
    run = FakeRun()
    job = run.new_job()
    run.submit(job, root_id="doc/aaa")
    run.submit(job, mode="dup", root_id="doc/bbb")
    run.execute(job, 1, root_id="doc/aaa")
    run.execute(job, 1, "worker-2", 22, root_id="doc/bbb")
    v = verdict(run, "dedup")
    assert not v["ok"]
    assert (
        "2 root promises" in v["detail"]
        and "step 1 (download_document): 2 workflow executions" in v["detail"]
    )


def test_dedup_fails_on_inconsistent_answers() -> None:
    run, jobs = healthy()
    run.submit(jobs[0], mode="dup", status=400)
    v = verdict(run, "dedup")
    assert not v["ok"] and jobs[0]["jobId"] in v["detail"] and "400" in v["detail"]


def test_dedup_fails_when_a_late_duplicate_runs_a_step_again() -> None:
    run, jobs = healthy()
    run.submit(jobs[1], mode="late-dup")
    run.execute(jobs[1], 1, "worker-2", 22)
    v = verdict(run, "dedup")
    assert not v["ok"] and jobs[1]["jobId"] in v["detail"] and "late duplicate" in v["detail"]


def test_dedup_is_not_ok_when_nothing_was_duplicated() -> None:
    run = FakeRun()
    job = run.new_job()
    run.submit(job)
    run.run_job(job)
    assert not verdict(run, "dedup")["ok"]


# --- replay ---------------------------------------------------------------------------------
def test_replay_fails_when_an_earlier_step_runs_again() -> None:
    """A step called directly (not through ctx.run) re-runs when the workflow is replayed."""
    run, _jobs = healthy(kill_step=None)
    job = run.new_job()
    run.submit(job)
    for step in range(1, 5):
        run.execute(job, step, "worker-3", 33, end=step < 4)
    run.fault("kill", "worker-3", job=job["jobId"], step=4, pid=33)
    run.execute(job, 3, "worker-1", 11)  # not checkpointed: runs again
    run.execute(job, 4, "worker-1", 11)
    run.execute(job, 5, "worker-1", 11)
    run.finish(job)
    v = verdict(run, "replay")
    assert not v["ok"]
    assert job["jobId"] in v["detail"] and "step 3 (analyze_document)" in v["detail"]


def test_replay_fails_when_the_killed_step_never_runs_again() -> None:
    run, jobs = healthy()
    run.ledger = [r for r in run.ledger if not (r["job"] == jobs[2]["jobId"] and r["worker"] == "worker-1"
                                                and r["step"] == 3)]  # fmt: skip
    v = verdict(run, "replay")
    assert not v["ok"] and jobs[2]["jobId"] in v["detail"] and "step 3 (analyze_document)" in v["detail"]


def test_replay_fails_when_a_checkpoint_disagrees_with_the_ledger() -> None:
    run, jobs = healthy()
    from tests.histories import encode

    run.promises[f"doc/{jobs[1]['jobId']}.2"]["value"] = encode("something else")
    v = verdict(run, "replay")
    assert not v["ok"] and jobs[1]["jobId"] in v["detail"] and "step 2 (extract_text)" in v["detail"]


def test_replay_fails_on_a_missing_checkpoint() -> None:
    run, jobs = healthy()
    del run.promises[f"doc/{jobs[0]['jobId']}.5"]
    v = verdict(run, "replay")
    assert not v["ok"] and "no checkpoint" in v["detail"] and "step 5" in v["detail"]


def test_replay_is_not_ok_without_any_fault() -> None:
    run, _ = healthy(kill_step=None)
    assert not verdict(run, "replay")["ok"]


def test_a_second_kill_of_the_same_worker_name_does_not_hit_the_first_incarnations_step() -> None:
    run, jobs = healthy()
    run.fault("kill", "worker-3")  # the restarted worker-3 was idle this time
    hits = checks.hits(run.history())
    assert [(h.job, h.step) for h in hits] == [(jobs[2]["jobId"], 3)]
    assert verdict(run, "replay")["ok"]


# --- liveness and no_loss -------------------------------------------------------------------
def test_liveness_fails_when_an_accepted_job_never_completes() -> None:
    run, _ = healthy()
    job = run.new_job()
    run.submit(job)
    v = verdict(run, "liveness")
    assert not v["ok"] and job["jobId"] in v["detail"]


def test_liveness_fails_when_a_job_completes_after_the_deadline() -> None:
    run, _ = healthy()
    job = run.new_job()
    run.submit(job)
    run.tick(100)
    run.run_job(job)
    v = verdict(run, "liveness")
    assert not v["ok"] and job["jobId"] in v["detail"] and "deadline" in v["detail"]


def test_no_loss_fails_when_the_server_forgot_an_accepted_job() -> None:
    run, jobs = healthy()
    run.promises = {k: p for k, p in run.promises.items() if jobs[1]["jobId"] not in k}
    v = verdict(run, "no_loss")
    assert not v["ok"] and jobs[1]["jobId"] in v["detail"]


def test_a_kill_between_end_record_and_checkpoint_allows_a_rerun_without_demanding_one() -> None:
    """The SDK checkpoints a step after the step function returned: a kill in that window leaves
    an ended execution whose value is not stored yet; the re-run it causes is justified."""
    run = FakeRun()
    job = run.new_job()
    run.submit(job)
    run.execute(job, 1, "worker-1", 11)
    ended = run.execute(job, 2, "worker-1", 11)
    child = run.promises[f"doc/{job['jobId']}.2"]
    run.fault("kill", "worker-1", pid=11)  # after the end record, before the checkpoint below
    child["completedOn"] = int(run.tick() * 1000) + 500  # stored by the re-run
    run.execute(job, 2, "worker-2", 22)
    for step in (3, 4, 5):
        run.execute(job, step, "worker-2", 22)
    run.finish(job)
    hits = checks.hits(run.history())
    assert [(h.step, h.site, h.attempt) for h in hits] == [(2, "unsettled", ended)]
    v = verdict(run, "replay")
    assert v["ok"], v["detail"]
