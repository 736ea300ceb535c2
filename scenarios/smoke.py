"""smoke: a few jobs through the gateway, no faults; every verdict that applies holds."""

from __future__ import annotations

from harness.runner import RunContext, scenario


@scenario("smoke", verdicts=["exactly_once", "liveness", "no_loss"], workers=2)
def smoke(ctx: RunContext) -> None:
    """Five jobs through the gateway, no faults."""
    jobs = ctx.jobs(5, "smoke")
    ctx.phase("load")
    ctx.client.burst(jobs)
    ctx.wait_done([j["jobId"] for j in jobs])
