"""replay: after a fault in step k, steps before k are not executed again, step k is executed again,
later steps once; the final value equals the fault-free one (the offline replay); the server's
checkpoints agree with the ledger; no step is called directly from the workflow body (it would
re-run on every replay)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from harness.checks.exactly_once import checkpoint_problems
from harness.checks.views import OWE_NO_RERUN, Verdict, completion_times, count, hits, verdict
from harness.history import History


def direct_calls(h: History, job: str) -> list[dict[str, Any]]:
    """App functions the workflow body called directly (not through ctx.run) at the same point in
    more than one entry of the body: work that re-runs on every replay. A call counts when it
    passes the workflow's Context (a step's signature) or names a function the app runs as a step."""
    step_fns = {x.fn for j in h.jobs() for x in h.executions(j)}
    by_site: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in h.ledger_of(job):
        if r["ev"] == "call" and (r.get("ctx_arg") or r["fn"] in step_fns):
            by_site[(r["id"], r.get("after", ""), r["fn"])].append(r)
    out = []
    for (_body, after, fn), calls in sorted(by_site.items()):
        entries = {c["entry"] for c in calls}
        out.append({"fn": fn, "after": after, "entries": len(entries), "workers": sorted({c["worker"] for c in calls}),
                    "ctx_arg": any(c.get("ctx_arg") for c in calls)})  # fmt: skip
    return out


def zombie_continuations(h: History, job: str, job_hits: list[Any]) -> dict[str, set[str]]:
    """Executions by a paused or cut-off worker after its hit step: a zombie still holds the
    workflow in memory and, once it runs again, goes on with the next steps whose checkpoints the
    takeover has not stored yet. They are a consequence of the fault (their effects are judged by
    exactly_once), keyed by the hit execution."""
    out: dict[str, set[str]] = {}
    runs = h.executions(job)
    for hit in job_hits:
        if hit.site not in ("paused", "cut-off"):
            continue
        zombie = next((x for x in runs if x.exec == hit.exec), None)
        if zombie is None:
            continue
        out[hit.exec] = {x.exec for x in runs if x.worker == zombie.worker and x.pid == zombie.pid
                         and x.start > zombie.start and x.pos != zombie.pos}  # fmt: skip
    return out


def replay(h: History) -> Verdict:
    all_hits = hits(h)
    done = completion_times(h)
    rerun_problems: list[str] = []  # the most telling problems first
    missing_reruns: list[str] = []
    other: list[str] = []
    reruns: list[str] = []
    if not all_hits:
        rerun_problems.append("no fault hit a step: replay was not exercised")
    for job in sorted(set(done) | {x.job for x in all_hits}):
        runs_of: dict[str, list[Any]] = defaultdict(list)
        for x in h.executions(job):
            runs_of[x.pos].append(x)
        job_hits = [x for x in all_hits if x.job == job]
        for call in direct_calls(h, job):
            if call["entries"] > 1:
                rerun_problems.append(
                    f"job {job}: {call['fn']} is called directly in the workflow body, not through ctx.run, "
                    f"and re-ran on replay ({call['entries']} times, by {', '.join(call['workers'])})")  # fmt: skip
        carried_on = zombie_continuations(h, job, job_hits)
        zombies = set().union(*carried_on.values())
        for runs in runs_of.values():
            # every execution after the first must follow a fault that hit this step; the paused /
            # cut-off worker carrying on with its own copy of the workflow (before or after the
            # takeover reached that step) is not counted
            for x in [r for r in runs if r.exec not in zombies][1:]:
                if not any(hit.t <= x.start and hit.covers(x) for hit in job_hits):
                    rerun_problems.append(f"job {job} {x.step}: executed {len(runs)} times (by "
                                          f"{', '.join(r.worker for r in runs)}) though no fault interrupted it")  # fmt: skip
                    break
        for hit in job_hits:
            runs = runs_of.get(hit.pos, [])
            again = [x for x in runs if x.start > hit.t and x.exec != hit.exec and x.end is not None]
            label = runs[0].step if runs else f"step {hit.pos}"
            if again:
                reruns.append(f"{job} step {hit.pos} ({hit.fault} of {hit.target} -> {again[0].worker})")
                if hit.site in ("paused", "cut-off"):
                    zombie = next((x for x in runs if x.exec == hit.exec), None)
                    reruns.append(
                        f"the {hit.site} attempt of {hit.target} also finished, {zombie.end - hit.t:.1f}s after the fault"
                        if zombie is not None and zombie.end is not None
                        else f"the {hit.site} attempt of {hit.target} never finished"
                    )
                    later = sorted(
                        {x.pos for x in h.executions(job) if x.exec in carried_on.get(hit.exec, ())}
                    )
                    if later:
                        reruns.append(f"then {hit.target} carried on and ran step {', '.join(later)} again, "
                                      f"concurrently with the takeover")  # fmt: skip
            elif hit.site not in OWE_NO_RERUN:
                missing_reruns.append(f"job {job} {label}: hit by {hit.fault} of {hit.target} but never "
                                      f"executed again to completion")  # fmt: skip
        roots = h.roots_of(job)
        root = h.promise.get(roots[0]) if roots else None
        if job in done and root is not None:
            disagree = checkpoint_problems(h, job, root)
            missing = sorted(pos for pos, runs in runs_of.items()
                             if any(x.end is not None and x.error is None for x in runs)
                             and not any(c["id"] == runs[0].id for c in h.children(root["id"])))  # fmt: skip
            disagree += [
                f"job {job} {runs_of[p][0].step}: executed to its end but has no checkpoint" for p in missing
            ]
            other += disagree
        rep = (h.replay.get("roots") or {}).get(root["id"]) if root else None
        if job_hits and root and root["state"] == "RESOLVED" and rep and rep.get("vd") is not None \
                and rep["vd"] != h.stack.digest(root.get("value")):  # fmt: skip
            other.append(f"job {job}: final value after the fault differs from the fault-free one "
                         f"(the offline replay with the server's checkpoints)")  # fmt: skip
    problems = rerun_problems + missing_reruns + other
    shown = "; ".join(reruns[:4]) + ("…" if len(reruns) > 4 else "")
    later = "later steps ran once" + (
        " (but for a zombie's own copy)" if any("carried on" in r for r in reruns) else ""
    )
    return verdict(problems, f"{count(len(all_hits), 'fault hit')}; earlier steps never re-ran, the hit step "
                             f"re-ran ({shown or 'none needed'}), {later}; every checkpoint "
                             f"agrees with the ledger")  # fmt: skip
