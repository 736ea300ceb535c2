"""zombie: a worker paused past its lease mid-step, the job taken over, then the worker resumed."""

from __future__ import annotations

import time

from harness.runner import RunContext, scenario

# A frozen worker keeps its SSE connection open, and the server picks an any-cast recipient at
# random among the group's connections: a redelivered task can land on the frozen worker and
# wait there until the claim timeout (--aio-poll-ttc, 1 min by default) resends it. The scenario
# shortens that timeout so the takeover happens within seconds.
TAKEOVER_TIMEOUT_S = 40


@scenario(
    "zombie",
    verdicts=["exactly_once", "replay", "liveness", "no_loss"],
    workers=3,
    ttl=2,
    liveness_deadline_s=30,
    server_args=["--aio-poll-ttc=2s"],
)
def zombie(ctx: RunContext) -> None:
    """SIGSTOP the worker in the middle step (the first with an effect, if any) until another worker
    has taken the job over; then SIGCONT: the zombie finishes its step too."""
    job = ctx.jobs(1, "zombie")[0]
    step = ctx.middle_step()
    ctx.nemesis.strike(job["jobId"], step)
    ctx.phase("load", step=step)
    ctx.client.submit(job)
    paused = ctx.nemesis.pause(job["jobId"], step)
    try:
        ctx.nemesis.wait_rerun(paused, timeout=TAKEOVER_TIMEOUT_S)
    finally:
        ctx.nemesis.resume(paused["target"])
    ctx.wait_done([job["jobId"]])
    ctx.phase("settle")  # let the zombie finish what it was doing before the history is read
    time.sleep(ctx.settings.ttl + 2)
