"""server-restart: kill -9 the Resonate server mid-run and restart it on the same store."""

from __future__ import annotations

from harness.runner import RunContext, scenario


@scenario(
    "server-restart",
    verdicts=["exactly_once", "replay", "liveness", "no_loss"],
    workers=3,
    liveness_deadline_s=60,
)
def server_restart(ctx: RunContext) -> None:
    """Twelve jobs in flight; the server is SIGKILLed while a worker runs the second step of one of
    them (the first, if the workflow has one step), down 2 s."""
    jobs = ctx.jobs(12, "srv")
    steps = ctx.steps()
    step = steps[min(1, len(steps) - 1)]
    first = jobs[0]["jobId"]
    ctx.nemesis.strike(first, step)
    ctx.phase("load")
    ctx.client.burst(jobs)
    held = ctx.nemesis.held(first, step)
    ctx.nemesis.crash_server(down=2.0)
    ctx.nemesis.release(held["fp_spec"])
    ctx.wait_done([j["jobId"] for j in jobs])
