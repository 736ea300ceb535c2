"""liveness: every accepted job completes within the stated deadline after the last fault heals."""

from __future__ import annotations

from harness.checks.views import Verdict, completion_times, count, verdict
from harness.history import History


def liveness(h: History) -> Verdict:
    deadline = float(h.meta.get("settings", {}).get("liveness_deadline_s", 60))
    marks = [e["t"] for e in h.events if e["kind"] in ("fault", "heal")]
    start = [e["t"] for e in h.of_kind("phase") if e.get("name") == "load"]
    since = max(marks or start or [h.events[0]["t"] if h.events else 0.0])
    done = completion_times(h)
    problems = []
    for job in sorted(h.accepted()):
        if job not in done:
            problems.append(f"job {job}: not done (deadline {deadline:g}s after the last fault healed)")
        elif done[job] - since > deadline:
            problems.append(
                f"job {job}: done {done[job] - since:.1f}s after the last heal, deadline {deadline:g}s"
            )
    late = max((done[j] - since for j in h.accepted() if j in done), default=0.0)
    anchor = "the last fault healed" if marks else "the load started"
    when = f"{late:.1f}s after {anchor}" if late >= 0 else f"{-late:.1f}s before {anchor}"
    return verdict(
        problems, f"{count(len(h.accepted()), 'accepted job')} done, the last {when} (deadline {deadline:g}s)"
    )
