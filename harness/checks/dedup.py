"""dedup: K submissions of one job -> one root promise, one workflow execution (its first step ran
once unless a fault hit it), consistent answers; a late duplicate runs nothing again."""

from __future__ import annotations

from collections import Counter
from typing import Any

from harness.checks.views import Verdict, first_step, hits, step_label, verdict
from harness.history import History


def _is_done(e: dict[str, Any]) -> bool:
    """Whether a status poll saw the job done: its `done` flag (the app's done rule, applied when the
    poll was logged); a history logged without the flag (before the app was a plug-in: always the
    reference app) has only the answer's status, "done" when done."""
    return bool(e["done"]) if "done" in e else e.get("status") == "done"


def _status_regressions(h: History, job: str) -> list[str]:
    """Logged status polls (`status` events) of an accepted job never answer 'unknown job', nor go
    back from done."""
    missing = h.meta.get("app", {}).get("missing_status", 404)
    accepted = min((e["t"] for e in h.of_kind("response") if e["job_id"] == job and 200 <= e["status"] < 300),
                   default=None)  # fmt: skip
    done_at = None
    for e in (e for e in h.of_kind("status") if e["job_id"] == job):
        if e["http"] == missing and accepted is not None and e["t"] > accepted:
            return [
                f"job {job}: status answered {missing} {e['t'] - accepted:.2f}s after the job was accepted"
            ]
        if _is_done(e):
            done_at = done_at or e["t"]
        elif done_at is not None and e["http"] == 200:
            return [f"job {job}: status went from done back to {e.get('status')}"]
    return []


def answer_shape(r: dict[str, Any]) -> str:
    body = r.get("body") if isinstance(r.get("body"), dict) else {}
    return repr((r["status"], sorted((k, str(v)) for k, v in body.items() if k not in ("message",))))


def dedup(h: History) -> Verdict:
    subs, responses = h.by_job("submit"), h.by_job("response")
    first_hits = Counter(x.job for x in hits(h) if x.site != "before" and x.pos == first_step(h, x.job))
    completed = {j: [e.get("result") for e in evs] for j, evs in h.by_job("completed").items()}
    problems: list[str] = []
    dup_jobs = sorted(j for j, s in subs.items() if len(s) > 1 and j in h.jobs())
    absorbed = lost = 0
    for job in dup_jobs:
        k = len(subs[job])
        roots = h.roots_of(job)
        if len(roots) != 1:
            problems.append(f"job {job}: {k} submissions made {len(roots)} root promises {roots[:4]}")
        first = first_step(h, job)
        runs = [x for x in h.executions(job) if x.pos == first] if first else []
        if len(runs) > 1 + first_hits[job]:
            problems.append(f"job {job} {step_label(h, job, first)}: {len(runs)} workflow executions for {k} "
                            f"submissions (by {', '.join(sorted({x.worker for x in runs}))}), expected one")  # fmt: skip
        ok_resp = [r for r in responses[job] if 200 <= r["status"] < 300]
        lost += sum(1 for r in responses[job] if r["status"] == 0 or r["status"] >= 500)
        bad = [r for r in responses[job] if 400 <= r["status"] < 500]
        if bad:
            problems.append(f"job {job}: {len(bad)} of {k} submissions answered {bad[0]['status']}")
        shapes = {answer_shape(r) for r in ok_resp}
        if len(shapes) > 1:
            problems.append(f"job {job}: inconsistent answers to duplicates: {sorted(shapes)[:3]}")
        absorbed += max(0, len(ok_resp) - 1)
        results = completed.get(job, [])
        if any(r != results[0] for r in results):
            problems.append(f"job {job}: status polls returned different results")
        for late in (e for e in subs[job] if e.get("mode") == "late-dup"):
            rerun = [x for x in h.executions(job) if x.start > late["t"]]
            if rerun:
                problems.append(f"job {job} {rerun[0].step}: ran again after a late duplicate")
        lost_resp = [r for r in responses[job] if r["status"] == 0 or r["status"] >= 500]
        retries = [r for r in responses[job] if r.get("mode") == "retry"]
        if lost_resp and retries and not any(200 <= r["status"] < 300 for r in retries):
            problems.append(f"job {job}: an answer was lost ({lost_resp[0]['status']}) and none of its "
                            f"{len(retries)} retries was accepted")  # fmt: skip
        problems += _status_regressions(h, job)
    if not dup_jobs:
        problems.append("no job was submitted more than once: dedup was not exercised")
    total = sum(len(subs[j]) for j in dup_jobs)
    return verdict(problems, f"{len(dup_jobs)} jobs submitted {total} times: one root promise and one "
                             f"execution each; {absorbed} duplicate submissions absorbed, {lost} lost "
                             f"responses (5xx or no answer)")  # fmt: skip
