"""Checks: pure functions from a History to verdicts. They read nothing but the history.

Each verdict is {"ok": bool, "detail": str}; a failing detail names the job and the step. A check
that raises gives an unknown verdict ({"ok": false, "unknown": true}) with the error, and the other
verdicts are still computed.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable

from harness.checks.dedup import dedup
from harness.checks.exactly_once import exactly_once
from harness.checks.findings import findings
from harness.checks.liveness import liveness
from harness.checks.no_loss import no_loss
from harness.checks.replay import replay
from harness.checks.views import Hit, Verdict, completion_times, hits
from harness.history import History

VERDICTS: dict[str, Callable[[History], Verdict]] = {
    "exactly_once": exactly_once,
    "dedup": dedup,
    "replay": replay,
    "liveness": liveness,
    "no_loss": no_loss,
}


def check(h: History, names: list[str]) -> dict[str, Verdict]:
    """The named verdicts (those the scenario exercises; the others stay absent)."""
    out: dict[str, Verdict] = {}
    for name in names:
        try:
            out[name] = VERDICTS[name](h)
        except Exception as e:
            out[name] = {"ok": False, "unknown": True, "detail": f"the check raised {e!r}",
                         "trace": traceback.format_exc(limit=5)}  # fmt: skip
    return out


__all__ = ["VERDICTS", "Hit", "check", "completion_times", "findings", "hits"]
