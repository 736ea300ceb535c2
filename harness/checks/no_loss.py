"""no_loss: no accepted job is missing from the server, whatever was killed."""

from __future__ import annotations

from harness.checks.views import Verdict, verdict
from harness.history import History


def no_loss(h: History) -> Verdict:
    problems = []
    for job in sorted(h.accepted()):
        roots = h.roots_of(job)
        if not roots:
            problems.append(f"job {job}: accepted, but no dispatch reached the server from any Lambda instance")
        elif not any(r in h.promise for r in roots):
            problems.append(f"job {job}: accepted, but the server has no promise for it (dispatched {roots[:3]})")
    return verdict(problems, f"all {len(h.accepted())} accepted jobs are on the server")
