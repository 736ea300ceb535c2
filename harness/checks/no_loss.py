"""no_loss: no accepted job is missing from the server, whatever was killed."""

from __future__ import annotations

from harness.checks.views import Verdict, count, verdict
from harness.history import History


def no_loss(h: History) -> Verdict:
    problems = []
    missing = h.meta.get("app", {}).get("missing_status", 404)
    lost = sorted({j for e in h.of_kind("lost") for j in e.get("job_ids", [])})
    for job in lost:
        problems.append(f"job {job}: accepted, but its status route answers {missing} (no such job): the handler "
                        f"polls another promise than it dispatched ({', '.join(h.roots_of(job)[:2]) or 'none'})")  # fmt: skip
    for job in sorted(h.accepted() - set(lost)):
        roots = h.roots_of(job)
        if not roots:
            problems.append(
                f"job {job}: accepted, but no dispatch reached the server from any Lambda instance"
            )
        elif not any(r in h.promise for r in roots):
            problems.append(
                f"job {job}: accepted, but the server has no promise for it (dispatched {roots[:3]})"
            )
    return verdict(
        problems,
        (
            "the 1 accepted job is"
            if len(h.accepted()) == 1
            else f"all {count(len(h.accepted()), 'accepted job')} are"
        )
        + " on the server",
    )
