"""dedup-verify: J jobs x K submissions each: concurrent, after a 202, after completion, after a Lambda died."""

from __future__ import annotations

from harness import dedup
from harness.runner import RunContext, scenario


@scenario(
    "dedup-verify",
    verdicts=["exactly_once", "dedup", "liveness", "no_loss"],
    workers=3,
    gateway_instances=8,
    params={"jobs": dedup.DEFAULT_JOBS, "copies": dedup.DEFAULT_COPIES},
    extras=dedup.extras,
)
def dedup_verify(ctx: RunContext) -> None:
    """J x K duplicates (default 20 x 10): concurrent, after 202, after done, after an instance death."""
    dedup.drive(ctx, ctx.settings.params["jobs"], ctx.settings.params["copies"])
