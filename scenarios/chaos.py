"""chaos: a stream of jobs while workers are killed at random (drawn from the seed) and restarted."""

from __future__ import annotations

import threading
import time

from harness.errors import HarnessError
from harness.runner import RunContext, scenario

JOBS, DUPLICATED, KILLS = 50, 10, 6


@scenario(
    "chaos",
    verdicts=["exactly_once", "dedup", "replay", "liveness", "no_loss"],
    workers=4,
    ttl=2,
    # A task the server has just sent to a worker that is then killed, before it claimed the task,
    # waits for the server's claim timeout (--aio-poll-ttc, 1 min by default) before it is resent:
    # the deadline covers that, with the server's defaults.
    liveness_deadline_s=75,
)
def chaos(ctx: RunContext) -> None:
    """50 jobs (10 of them sent twice) in waves; 6 random worker kills, each restarted 1 s later.
    A victim is drawn among the workers running a step at that moment (any live one if none is), so
    the kills land in steps even when the app's jobs are short."""
    jobs = ctx.jobs(JOBS, "chaos")
    stop = threading.Event()

    def nemesis() -> None:
        for _ in range(KILLS):
            if stop.wait(ctx.rng.uniform(0.5, 1.5)):
                return
            victim = ctx.rng.choice(ctx.nemesis.busy_workers() or sorted(ctx.cluster.live_workers()))
            try:
                ctx.nemesis.kill_worker(victim)
                time.sleep(1.0)
                ctx.nemesis.restart_worker(victim)
            except HarnessError:
                if stop.is_set():  # the run was interrupted and the cluster is going down
                    return
                raise

    ctx.phase("load")
    chaos_thread = threading.Thread(target=nemesis, name="chaos", daemon=True)
    chaos_thread.start()
    try:
        for wave in range(0, JOBS, 10):
            batch = jobs[wave : wave + 10]
            ctx.client.burst(batch, copies=2 if wave < DUPLICATED else 1)
            time.sleep(1.5)
        chaos_thread.join(timeout=60)
    finally:
        stop.set()
    ctx.wait_done([j["jobId"] for j in jobs])
