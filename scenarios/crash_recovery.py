"""crash-recovery: a worker killed during each step of the app's workflow, between two steps, after a
step ended but before its checkpoint, and right after an effect."""

from __future__ import annotations

from harness.runner import RunContext, scenario


@scenario(
    "crash-recovery",
    verdicts=["exactly_once", "replay", "liveness", "no_loss"],
    workers=3,
    ttl=2,
    liveness_deadline_s=30,
)
def crash_recovery(ctx: RunContext) -> None:
    """SIGKILL the worker running step k of a job, for every step k the app's workflow runs; then
    in-worker crashes before the middle step (between two steps), after the first step ended but
    before its checkpoint was stored, and right after the first effect (when the app declares one)."""
    steps = ctx.steps()
    cases = [(steps[len(steps) // 2], "before"), (steps[0], "after")]
    effects = ctx.learned.effect_steps() if ctx.cluster.config.app.effects else []
    if effects and ctx.cluster.config.app.effects.function:
        cases.append((effects[0], "after_effect"))
    jobs = ctx.jobs(len(steps) + len(cases), "crash")
    ctx.phase("load", steps=steps, cases=[f"{site}@{step}" for step, site in cases])
    for step, job in zip(steps, jobs, strict=False):
        ctx.nemesis.strike(job["jobId"], step)
        ctx.client.submit(job)
        fault = ctx.nemesis.kill(job["jobId"], step)
        ctx.wait_done([job["jobId"]])
        ctx.nemesis.restart_worker(fault["target"])
    for job, (step, site) in zip(jobs[len(steps) :], cases, strict=True):
        ctx.nemesis.failpoint(job["jobId"], step, at=site, action="crash")
        ctx.client.submit(job)
        ctx.wait_done([job["jobId"]])
        for worker in sorted(set(ctx.cluster.workers) - set(ctx.cluster.live_workers())):
            ctx.nemesis.restart_worker(worker, after="failpoint-crash")  # the worker the failpoint crashed
