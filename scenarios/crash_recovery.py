"""crash-recovery: a worker killed during each step k = 1..5, and one killed between two steps."""

from __future__ import annotations

from harness.runner import RunContext, scenario

BETWEEN_STEP = 3  # the between-steps kill lands after step 2 is checkpointed, before step 3 starts


@scenario(
    "crash-recovery",
    verdicts=["exactly_once", "replay", "liveness", "no_loss"],
    workers=3,
    ttl=2,
    step_seconds="0.6",
    liveness_deadline_s=30,
)
def crash_recovery(ctx: RunContext) -> None:
    """SIGKILL the worker running step k of a job (k = 1..5), then a kill between steps 2 and 3."""
    jobs = ctx.jobs(6, "crash")
    ctx.phase("load")
    for step, job in enumerate(jobs[:5], start=1):
        ctx.client.submit(job)
        fault = ctx.nemesis.kill(job["jobId"], step)
        ctx.wait_done([job["jobId"]])
        ctx.nemesis.restart_worker(fault["target"])
    last = jobs[5]
    ctx.nemesis.failpoint(last["jobId"], BETWEEN_STEP, at="before", action="crash")
    ctx.client.submit(last)
    ctx.wait_done([last["jobId"]])
    for worker in set(ctx.cluster.workers) - set(ctx.cluster.live_workers()):
        ctx.nemesis.restart_worker(worker)
