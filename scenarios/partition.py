"""partition: a worker cut off from the server mid-step, the job taken over, then the link healed.

Proxied process backend: every worker reaches the server through its own pair of Toxiproxy proxies
(REST API, SSE poll port); the `partition` fault disables both, which closes the worker's
connections and refuses new ones while its process runs on.

What resonate-sdk 0.6.7 with server v0.8.2 was seen to do (see the report of the runs):
- The cut-off worker does not crash. Its step body runs to its end locally (the reference app's sink
  write included: the idempotent sink keeps whichever write came first, often the cut-off worker's),
  then the SDK retries the checkpoint write every second, and the SSE stream every 5 s, for ever.
- `partition`: healed after the takeover worker finished the job. The cut-off worker's retried
  writes are answered 200 (promise completions are idempotent on the promise id, strict=false, and
  not fenced by the task lease), it finds step 5 and the root already resolved, and its complete-task
  is answered 200 because the task is already completed. No step runs a third time.
- `partition-early-heal`: healed while both are inside the step. The cut-off worker, its lease long
  gone, finishes first: it resolves the step's checkpoint, runs the later steps and resolves the
  root; the worker holding the lease then finds every checkpoint resolved. The job completes once,
  but by the worker that had lost its lease: correctness rests on deterministic steps and an
  idempotent sink.

Both strike the middle step (the first with an effect, if the app has one), held at its start by a
failpoint so the cut lands inside it whatever the app's step durations.
"""

from __future__ import annotations

import time

from harness.runner import RunContext, scenario
from harness.waiting import wait_until

# Unlike a paused worker (zombie), a cut-off worker's SSE connection is closed by the proxy, so the
# server drops it from the group at once and re-dispatches the task to a connected worker as soon
# as the lease expires: no claim timeout is involved.
TAKEOVER_TIMEOUT_S = 40
SSE_RETRY_S = 5  # resonate-sdk 0.6.x retries a lost SSE stream every 5 s (REST calls every 1 s)
RECONNECT_TIMEOUT_S = 30


SETTINGS = {
    "verdicts": ["exactly_once", "replay", "liveness", "no_loss"],
    "workers": 3,
    "ttl": 2,
    "liveness_deadline_s": 30,
    "proxied": True,
}


@scenario("partition", **SETTINGS)
def partition(ctx: RunContext) -> None:
    """Cut the worker in the middle step off from the server (its proxies disabled) until another
    worker has taken the job over and finished it; heal the link; let the cut-off worker reconnect."""
    job = ctx.jobs(1, "partition")[0]
    step = ctx.middle_step()
    ctx.nemesis.strike(job["jobId"], step)
    ctx.phase("load", step=step)
    ctx.client.submit(job)
    cut = ctx.nemesis.partition(job["jobId"], step)
    worker = cut["target"]
    try:
        ctx.nemesis.wait_rerun(cut, timeout=TAKEOVER_TIMEOUT_S)
        ctx.wait_done([job["jobId"]])
    finally:
        healed = ctx.nemesis.heal(worker)
    # The healed worker reconnects on its own schedule; the history must include what it does then.
    links = getattr(ctx.cluster, "link_connections", None)  # the proxied process backend can tell
    if links is not None:
        wait_until(
            lambda: links(worker)["poll"] >= 1,
            timeout=RECONNECT_TIMEOUT_S,
            expected=f"{worker} reconnected to the server's poll port after the heal",
            seen=lambda: f"connections through its proxies: {links(worker)}",
            hint=f"look at {worker}.log in the run directory",
        )
        ctx.phase("reconnected", target=worker, after_s=round(time.time() - healed["t"], 3))
    else:
        time.sleep(SSE_RETRY_S)
    ctx.phase("settle")  # let the cut-off worker finish what it was doing before the history is read
    time.sleep(ctx.settings.ttl + 3)


@scenario("partition-early-heal", **SETTINGS)
def partition_early_heal(ctx: RunContext) -> None:
    """Cut the worker in the middle step off; heal its link as soon as another worker has taken the
    job over, while both are inside the step. The cut-off worker, whose lease is gone, finishes its
    step first: its checkpoint and the rest of the job are accepted (promise completions are not
    fenced by the task lease), and the worker that holds the lease finds the checkpoints resolved."""
    job = ctx.jobs(1, "early-heal")[0]
    step = ctx.middle_step()
    first = ctx.nemesis.strike(job["jobId"], step)
    ctx.phase("load", step=step)
    ctx.client.submit(job)
    cut = ctx.nemesis.partition(job["jobId"], step, release=False)  # the cut-off worker stays in the step
    ctx.nemesis.strike(job["jobId"], step)  # ... and so will the worker that takes the job over
    try:
        takeover = ctx.nemesis.held(job["jobId"], step, timeout=TAKEOVER_TIMEOUT_S)
    finally:
        ctx.nemesis.heal(cut["target"])
        ctx.nemesis.release(first)
    time.sleep(1.0)  # the cut-off worker, healed, finishes first
    ctx.nemesis.release(takeover["fp_spec"])
    ctx.wait_done([job["jobId"]])
    ctx.phase("settle")  # the history must hold the end of both executions of the step

    def ended(attempt: str) -> bool:
        ledger = ctx.nemesis.ledger.read()
        return any(r["ev"] == "end" and r["exec"] == attempt for r in ledger)

    for attempt in (cut["attempt"], takeover["exec"]):
        wait_until(lambda a=attempt: ended(a), timeout=TAKEOVER_TIMEOUT_S, expected=f"execution {attempt} of step "
                   f"{step} to end", hint="both executions run to their end once released")  # fmt: skip
    time.sleep(ctx.settings.ttl + 1)
