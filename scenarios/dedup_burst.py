"""dedup-burst: many jobs, each submitted 10 times at once, then again after completion."""

from __future__ import annotations

from harness.runner import RunContext, scenario

UNIQUE, COPIES = 20, 10


@scenario(
    "dedup-burst",
    verdicts=["exactly_once", "dedup", "liveness", "no_loss"],
    workers=3,
    gateway_instances=8,
)
def dedup_burst(ctx: RunContext) -> None:
    """20 unique jobs x 10 concurrent duplicates, plus one late duplicate each after completion."""
    jobs = ctx.jobs(UNIQUE, "dedup")
    ctx.phase("load")
    ctx.client.burst(jobs, copies=COPIES, concurrency=2 * ctx.settings.gateway_instances)
    ctx.wait_done([j["jobId"] for j in jobs])
    ctx.phase("late-duplicates")
    ctx.client.burst(jobs, mode="late-dup")
    ctx.wait_done([j["jobId"] for j in jobs])
