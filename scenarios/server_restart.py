"""server-restart: kill -9 the Resonate server mid-run and restart it on the same store."""

from __future__ import annotations

from harness.runner import RunContext, scenario


@scenario(
    "server-restart",
    verdicts=["exactly_once", "replay", "liveness", "no_loss"],
    workers=3,
    step_seconds="0.5",
    liveness_deadline_s=60,
)
def server_restart(ctx: RunContext) -> None:
    """Twelve jobs in flight; the server is SIGKILLed during step 2 of one of them, down 2 s."""
    jobs = ctx.jobs(12, "srv")
    ctx.phase("load")
    ctx.client.burst(jobs)
    ctx.nemesis.wait_in_flight(jobs[0]["jobId"], 2)
    ctx.nemesis.crash_server(down=2.0)
    ctx.wait_done([j["jobId"] for j in jobs])
