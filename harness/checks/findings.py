"""Findings: facts about the app that are not verdict failures (results.json "findings")."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from harness.checks.replay import direct_calls
from harness.history import Execution, History


def findings(h: History) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for job in sorted(h.jobs()):
        same_inputs: dict[tuple[str, str | None], list[Execution]] = defaultdict(list)
        for x in h.executions(job):
            if x.vd is not None and x.kind == "fn":
                same_inputs[(x.pos, x.args)].append(x)
        for (pos, _), runs in sorted(same_inputs.items()):
            values = {x.vd for x in runs}
            if len(values) > 1:
                out.append({"kind": "nondeterministic-step", "job": job, "step": pos, "fn": runs[0].fn,
                            "detail": f"{runs[0].fn} ran {len(runs)} times with the same inputs and returned "
                                      f"{len(values)} different values (by {', '.join(x.worker for x in runs)}): "
                                      f"it depends on something besides its inputs (hash(), time, randomness); "
                                      f"the workflow keeps whichever value was checkpointed first"})  # fmt: skip
        for call in direct_calls(h, job):
            if call["entries"] == 1 and call["ctx_arg"]:
                out.append({"kind": "step-outside-ctx-run", "job": job, "fn": call["fn"],
                            "detail": f"{call['fn']} takes the workflow's Context but is called directly in the "
                                      f"workflow body, not through ctx.run: it has no checkpoint and will re-run "
                                      f"on every replay"})  # fmt: skip
    return out
