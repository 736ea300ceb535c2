"""Every verdict holds on a healthy history and fails, naming job and step, on a doctored one."""

from __future__ import annotations

from harness import checks
from tests.histories import FakeRun, encode, final_value


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
        ex = run.execute(jobs[2], kill_step, "worker-3", 33, end=False)
        run.fault("kill", "worker-3", job=jobs[2]["jobId"], step=str(kill_step), pid=33, attempt=ex)
        run.enter(jobs[2], "worker-1", 11)  # the takeover replays the body from the top
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
    assert checks.findings(run.history()) == []


# --- exactly_once ---------------------------------------------------------------------------
def test_exactly_once_fails_when_the_root_value_differs_from_the_offline_replay() -> None:
    run, _jobs = healthy()
    job = run.new_job()
    run.submit(job)
    for step in range(1, 6):
        run.execute(job, step)
    run.finish(job, value={**final_value(job["jobId"]), "steps": []})
    v = verdict(run, "exactly_once")
    assert not v["ok"] and job["jobId"] in v["detail"] and "offline replay" in v["detail"]


def test_exactly_once_fails_when_replay_asks_for_another_step_than_was_checkpointed() -> None:
    """A nondeterministic workflow body: on replay it branches elsewhere at position 3."""
    run, jobs = healthy()
    asked = run.replay["roots"][run.root(jobs[1])]["asked"]
    asked[2] = {**asked[2], "fn": "score_differently"}
    v = verdict(run, "exactly_once")
    assert not v["ok"]
    assert (
        f"job {jobs[1]['jobId']} step 3: on replay the workflow asks for score_differently where score"
        in v["detail"]
    )


def test_exactly_once_fails_when_the_app_oracle_disagrees() -> None:
    run, jobs = healthy()
    run.replay["expected"] = {jobs[0]["jobId"]: {"vd": "0" * 16, "value": {"job": "x"}, "error": None}}
    v = verdict(run, "exactly_once")
    assert not v["ok"] and jobs[0]["jobId"] in v["detail"] and "oracle" in v["detail"]


def test_exactly_once_fails_on_a_checkpoint_no_execution_returned() -> None:
    run, jobs = healthy()
    run.promises[f"{run.root(jobs[1])}.2"]["value"] = encode("something else")
    v = verdict(run, "exactly_once")
    assert not v["ok"] and jobs[1]["jobId"] in v["detail"] and "step 2 (parse)" in v["detail"]


def test_exactly_once_fails_on_a_duplicate_effect() -> None:
    run, jobs = healthy()
    run.effects.append(dict(run.effects[0]))  # the first effect is jobs[0]'s
    run.record(
        "effect",
        "worker-2",
        22,
        root=run.root(jobs[0]),
        id="x",
        pos="4",
        fn="save",
        exec="e2",
        effect="write",
    )
    v = verdict(run, "exactly_once")
    assert not v["ok"]
    assert f"job {jobs[0]['jobId']} step 4 (save): 2 'saved' effects" in v["detail"]


def test_exactly_once_fails_on_a_missing_declared_effect() -> None:
    run, jobs = healthy()
    run.effects = [r for r in run.effects if r["job"] != jobs[1]["jobId"]]
    v = verdict(run, "exactly_once")
    assert not v["ok"] and jobs[1]["jobId"] in v["detail"] and "no 'saved' effect" in v["detail"]


def test_exactly_once_without_declared_effects_says_so_and_checks_none() -> None:
    run, _jobs = healthy()
    run.meta["app"]["effects"] = None
    run.effects.append(dict(run.effects[0]))
    v = verdict(run, "exactly_once")
    assert v["ok"] and "no effects declared" in v["detail"]


def test_exactly_once_fails_when_a_job_has_two_roots() -> None:
    run = FakeRun()
    job = run.new_job()
    run.submit(job, root_id="wf/0f3e2a")
    run.submit(job, mode="dup", root_id="wf/77aa01")
    v = verdict(run, "exactly_once")
    assert not v["ok"] and "2 root promises" in v["detail"] and "wf/0f3e2a" in v["detail"]


def test_exactly_once_fails_when_the_handler_accepted_without_dispatching() -> None:
    run = FakeRun()
    job = run.new_job()
    run.submit(job)
    run.ledger = [r for r in run.ledger if r["ev"] != "dispatch"]
    v = verdict(run, "exactly_once")
    assert not v["ok"] and "no Lambda instance dispatched" in v["detail"]
    assert not verdict(run, "no_loss")["ok"]


# --- dedup ----------------------------------------------------------------------------------
def test_dedup_fails_when_duplicates_make_two_roots_and_two_executions() -> None:
    run = FakeRun()
    job = run.new_job()
    run.submit(job, root_id="wf/aaa")
    run.submit(job, mode="dup", root_id="wf/bbb")
    run.execute(job, 1, root_id="wf/aaa")
    run.execute(job, 1, "worker-2", 22, root_id="wf/bbb")
    v = verdict(run, "dedup")
    assert not v["ok"]
    assert "2 root promises" in v["detail"] and "step 1 (fetch): 2 workflow executions" in v["detail"]


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
    """A step that was not checkpointed re-runs when the workflow is replayed."""
    run, _jobs = healthy(kill_step=None)
    job = run.new_job()
    run.submit(job)
    for step in range(1, 5):
        run.execute(job, step, "worker-3", 33, end=step < 4)
    run.fault("kill", "worker-3", job=job["jobId"], step="4", pid=33)
    run.execute(job, 3, "worker-1", 11)  # runs again
    run.execute(job, 4, "worker-1", 11)
    run.execute(job, 5, "worker-1", 11)
    run.finish(job)
    v = verdict(run, "replay")
    assert not v["ok"]
    assert job["jobId"] in v["detail"] and "step 3 (score): executed 2 times" in v["detail"]


def test_replay_fails_on_a_step_called_directly_in_the_workflow_body() -> None:
    """A step function called in the body (with the Context, not through ctx.run) re-runs on replay."""
    run, _jobs = healthy(kill_step=None)
    job = run.new_job()
    run.submit(job)
    run.execute(job, 1, "worker-3", 33)
    run.call(job, "analyze", after="1", worker="worker-3", pid=33)
    ex = run.execute(job, 2, "worker-3", 33, end=False)
    run.fault("kill", "worker-3", job=job["jobId"], step="2", pid=33, attempt=ex)
    run.enter(job, "worker-1", 11)
    run.call(job, "analyze", after="1")
    for step in range(2, 6):
        run.execute(job, step, "worker-1", 11)
    run.finish(job)
    v = verdict(run, "replay")
    assert not v["ok"]
    assert f"job {job['jobId']}: analyze is called directly in the workflow body, not through ctx.run, and " \
           "re-ran on replay (2 times" in v["detail"]  # fmt: skip


def zombie_run(carrier: tuple[str, int], carrier_first: bool = False) -> tuple[FakeRun, dict]:
    """worker-3 paused in step 3, worker-1 takes over; after the heal `carrier` runs step 5 again
    (with `carrier_first`, before the takeover gets to step 5)."""
    run, _jobs = healthy(kill_step=None)
    job = run.new_job()
    run.submit(job)
    for step in (1, 2):
        run.execute(job, step, "worker-3", 33)
    ex = run.execute(job, 3, "worker-3", 33, end=False)
    run.fault("pause", "worker-3", job=job["jobId"], step="3", pid=33, attempt=ex)
    run.enter(job, "worker-1", 11)
    for step in (3, 4) if carrier_first else (3, 4, 5):
        run.execute(job, step, "worker-1", 11)
    run.event("heal", fault="pause", target="worker-3")
    root = run.root(job)
    run.record("end", "worker-3", 33, root=root, id=f"{root}.3", pos="3", fn="score", exec=ex, value="late")
    run.execute(job, 5, *carrier)
    if carrier_first:
        run.execute(job, 5, "worker-1", 11)
    run.finish(job)
    return run, job


def test_a_paused_worker_carrying_on_with_later_steps_is_named_not_failed() -> None:
    run, _job = zombie_run(("worker-3", 33))
    v = verdict(run, "replay")
    assert v["ok"], v["detail"]
    assert "then worker-3 carried on and ran step 5 again" in v["detail"]


def test_a_paused_worker_reaching_a_later_step_before_the_takeover_is_named_not_failed() -> None:
    run, _job = zombie_run(("worker-3", 33), carrier_first=True)
    v = verdict(run, "replay")
    assert v["ok"], v["detail"]
    assert "then worker-3 carried on and ran step 5 again" in v["detail"]


def test_replay_fails_when_another_worker_re_runs_a_later_step_of_a_paused_job() -> None:
    run, job = zombie_run(("worker-2", 22))
    v = verdict(run, "replay")
    assert not v["ok"]
    assert f"job {job['jobId']} step 5 (tell): executed 2 times (by worker-1, worker-2)" in v["detail"]


def test_a_pure_helper_called_in_the_body_is_fine() -> None:
    run, jobs = healthy()
    run.call(jobs[2], "format_result", after="5", ctx_arg=False)
    run.enter(jobs[2], "worker-1", 11)
    run.call(jobs[2], "format_result", after="5", ctx_arg=False)
    assert verdict(run, "replay")["ok"]


def test_replay_fails_when_the_killed_step_never_runs_again() -> None:
    run, jobs = healthy()
    run.ledger = [r for r in run.ledger if not (r.get("root") == run.root(jobs[2]) and r["worker"] == "worker-1"
                                                and r.get("pos") == "3")]  # fmt: skip
    v = verdict(run, "replay")
    assert not v["ok"] and jobs[2]["jobId"] in v["detail"] and "step 3 (score)" in v["detail"]


def test_replay_fails_when_a_checkpoint_disagrees_with_the_ledger() -> None:
    run, jobs = healthy()
    run.promises[f"{run.root(jobs[1])}.2"]["value"] = encode("something else")
    v = verdict(run, "replay")
    assert not v["ok"] and jobs[1]["jobId"] in v["detail"] and "step 2 (parse)" in v["detail"]


def test_replay_fails_on_a_missing_checkpoint() -> None:
    run, jobs = healthy()
    del run.promises[f"{run.root(jobs[0])}.5"]
    v = verdict(run, "replay")
    assert not v["ok"] and "no checkpoint" in v["detail"] and "step 5" in v["detail"]


def test_replay_is_not_ok_without_any_fault() -> None:
    run, _ = healthy(kill_step=None)
    assert not verdict(run, "replay")["ok"]


def test_a_second_kill_of_the_same_worker_name_does_not_hit_the_first_incarnations_step() -> None:
    run, jobs = healthy()
    run.fault("kill", "worker-3")  # the restarted worker-3 was idle this time
    hits = checks.hits(run.history())
    assert [(h.job, h.pos) for h in hits] == [(jobs[2]["jobId"], "3")]
    assert verdict(run, "replay")["ok"]


def test_a_kill_between_end_record_and_checkpoint_allows_a_rerun_without_demanding_one() -> None:
    """The SDK checkpoints a step after the step function returned: a kill in that window leaves
    an ended execution whose value is not stored yet; the re-run it causes is justified."""
    run = FakeRun()
    job = run.new_job()
    run.submit(job)
    run.execute(job, 1, "worker-1", 11)
    ended = run.execute(job, 2, "worker-1", 11)
    child = run.promises[f"{run.root(job)}.2"]
    run.fault("kill", "worker-1", pid=11)  # after the end record, before the checkpoint below
    child["completedOn"] = int(run.tick() * 1000) + 500  # stored by the re-run
    run.enter(job, "worker-2", 22)
    for step in (2, 3, 4, 5):
        run.execute(job, step, "worker-2", 22)
    run.finish(job)
    hits = checks.hits(run.history())
    assert [(h.pos, h.site, h.exec) for h in hits] == [("2", "unsettled", ended)]
    v = verdict(run, "replay")
    assert v["ok"], v["detail"]


def test_a_hit_sub_step_allows_its_generator_to_re_enter() -> None:
    run, _jobs = healthy(kill_step=None)
    job = run.new_job()
    run.submit(job)
    rid = run.root(job)
    run.record("body", "worker-1", 11, root=rid, id=f"{rid}.2", pos="2", fn="pack", entry="g1")
    ex = run.execute(job, "2.1", "worker-1", 11, end=False)
    run.fault("kill", "worker-1", job=job["jobId"], step="2.1", pid=11, attempt=ex)
    run.record("body", "worker-2", 22, root=rid, id=f"{rid}.2", pos="2", fn="pack", entry="g2")
    run.execute(job, "2.1", "worker-2", 22)
    h = run.history()
    assert [x.kind for x in h.executions(job["jobId"]) if x.pos == "2"] == ["gen", "gen"]
    detail = checks.VERDICTS["replay"](h)["detail"]
    assert "step 2 (pack): executed 2 times" not in detail, detail


# --- findings -------------------------------------------------------------------------------
def test_a_step_that_returns_another_value_for_the_same_inputs_is_a_finding_not_a_failure() -> None:
    run = FakeRun()
    job = run.new_job()
    run.submit(job)
    run.execute(job, 1, "worker-1", 11, value="hash=123")
    run.fault("kill", "worker-1", pid=11)  # after step 1 ended, before its checkpoint
    run.promises[f"{run.root(job)}.1"]["value"] = encode("hash=456")
    run.enter(job, "worker-2", 22)
    run.execute(job, 1, "worker-2", 22, value="hash=456")
    for step in range(2, 6):
        run.execute(job, step, "worker-2", 22)
    run.finish(job)
    found = checks.findings(run.history())
    assert [(f["kind"], f["job"], f["step"], f["fn"]) for f in found] == [
        ("nondeterministic-step", job["jobId"], "1", "fetch")
    ]
    assert verdict(run, "exactly_once")["ok"]


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


def test_a_check_that_raises_is_unknown_and_the_others_still_run(monkeypatch) -> None:
    run, _ = healthy()

    def broken(h: object) -> dict:
        raise RuntimeError("boom")

    monkeypatch.setitem(checks.VERDICTS, "liveness", broken)
    out = checks.check(run.history(), ["liveness", "no_loss"])
    assert out["liveness"]["unknown"] and not out["liveness"]["ok"] and "boom" in out["liveness"]["detail"]
    assert out["no_loss"]["ok"]
