"""crash-recovery: a worker killed during each step k = 1..5, between two steps, and after an effect."""

from __future__ import annotations

from harness.runner import RunContext, scenario

BETWEEN_STEP = 3  # the between-steps kill lands after step 2 is checkpointed, before step 3 starts
EFFECT_STEP = 4  # a crash right after store_results wrote to the sink, before its checkpoint


@scenario(
    "crash-recovery",
    verdicts=["exactly_once", "replay", "liveness", "no_loss"],
    workers=3,
    ttl=2,
    step_seconds="0.6",
    liveness_deadline_s=30,
)
def crash_recovery(ctx: RunContext) -> None:
    """SIGKILL the worker running step k of a job (k = 1..5); then in-worker crashes between steps
    2 and 3, and right after step 4's sink write (its re-run must not duplicate the effect)."""
    jobs = ctx.jobs(7, "crash")
    ctx.phase("load")
    for step, job in enumerate(jobs[:5], start=1):
        ctx.client.submit(job)
        fault = ctx.nemesis.kill(job["jobId"], step)
        ctx.wait_done([job["jobId"]])
        ctx.nemesis.restart_worker(fault["target"])
    for job, step, site in ((jobs[5], BETWEEN_STEP, "before"), (jobs[6], EFFECT_STEP, "after_effect")):
        ctx.nemesis.failpoint(job["jobId"], step, at=site, action="crash")
        ctx.client.submit(job)
        ctx.wait_done([job["jobId"]])
    for worker in set(ctx.cluster.workers) - set(ctx.cluster.live_workers()):
        ctx.nemesis.restart_worker(worker)
