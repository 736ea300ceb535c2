"""Checks: pure functions from a History to verdicts. They read nothing but the history.

Each verdict is {"ok": bool, "detail": str}; a failing detail names the job and the step.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness.history import History
from workflow.steps import EFFECT_STEPS, STEP_NAMES

Verdict = dict[str, Any]
EFFECT_KIND_STEP = {"stored": 4, "notified": 5}
MAX_LISTED = 5
# hit sites after which the step may be executed again but need not be (it may finish on its own)
# ("unsettled": the execution had ended but its checkpoint was not stored yet when the fault came;
# the SDK's write may or may not have reached the server)
OWE_NO_RERUN = ("before", "server-down", "paused", "cut-off", "degraded", "unsettled")


def _verdict(problems: list[str], ok_detail: str) -> Verdict:
    if not problems:
        return {"ok": True, "detail": ok_detail}
    more = f" (+{len(problems) - MAX_LISTED} more)" if len(problems) > MAX_LISTED else ""
    return {"ok": False, "detail": "; ".join(problems[:MAX_LISTED]) + more}


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _step(step: int) -> str:
    return f"step {step} ({STEP_NAMES[step - 1]})" if 1 <= step <= len(STEP_NAMES) else f"step {step}"


# --- derived views ------------------------------------------------------------------------
@dataclass(frozen=True)
class Attempt:
    job: str
    step: int
    attempt: str
    worker: str
    pid: int
    start: float
    end: float | None
    value: Any


def attempts(h: History, job_id: str) -> list[Attempt]:
    """Every execution of every step of a job, in start order."""
    starts: dict[str, dict[str, Any]] = {}
    ends: dict[str, dict[str, Any]] = {}
    for r in h.ledger_of(job_id):
        if r["ev"] == "start":
            starts[r["attempt"]] = r
        elif r["ev"] == "end":
            ends[r["attempt"]] = r
    out = [
        Attempt(job_id, s["step"], a, s["worker"], s["pid"], s["t"], ends.get(a, {}).get("t"),
                ends.get(a, {}).get("value"))
        for a, s in starts.items()
    ]  # fmt: skip
    return sorted(out, key=lambda x: x.start)


@dataclass(frozen=True)
class Hit:
    """A fault that struck a step execution (or the point just before one)."""

    fault: str
    target: str
    t: float
    job: str
    step: int
    site: (
        str  # during | before | after_effect | after | server-down | paused | cut-off | degraded | unsettled
    )
    attempt: str | None


def hits(h: History) -> list[Hit]:
    """Which step executions each fault interrupted, from the fault events and the ledger."""
    out: list[Hit] = []
    every = [a for job in h.jobs() for a in attempts(h, job)]
    stored = checkpoint_times(h)
    struck: set[str] = set()  # an execution is interrupted once, by the first fault that reaches it

    def unsettled(a: Attempt, t: float) -> bool:
        """Ended before t, but its value was not checkpointed by t."""
        return a.end is not None and a.end <= t and stored.get((a.job, a.step), float("inf")) > t

    for f in sorted(h.faults(), key=lambda f: f["t"]):
        kind, t = f["fault"], f["t"]
        in_flight = [
            a for a in every
            if a.start <= t and (a.end is None or a.end > t or unsettled(a, t)) and a.attempt not in struck
        ]  # fmt: skip
        site = "during"
        if kind == "server-crash":  # in-flight steps may finish or be re-run: both are allowed
            site = "server-down"
            victims = in_flight
        elif "pid" in f:
            victims = [a for a in in_flight if a.pid == f["pid"]]
        else:
            victims = [a for a in in_flight if a.worker == f["target"]]
        if kind == "pause":  # a paused execution may finish after it resumes (a zombie)
            site = "paused"
        elif kind == "partition":  # cut off from the server: it may finish after the heal, or be re-run
            site = "cut-off"
        elif kind in ("latency", "bandwidth", "reset"):  # a degraded link: a re-run is allowed, not owed
            site = "degraded"
        struck |= {a.attempt for a in victims}
        out += [Hit(kind, f["target"], t, a.job, a.step, "unsettled" if unsettled(a, t) else site, a.attempt)
                for a in victims]  # fmt: skip
        if not victims and f.get("job") and f.get("step"):
            out.append(Hit(kind, f["target"], t, f["job"], f["step"], site, f.get("attempt")))
    for r in h.ledger:
        if r["ev"] == "failpoint":
            fired = [a for a in attempts(h, r["job"]) if a.pid == r["pid"] and a.step == r["step"]]
            out.append(
                Hit(f"failpoint-{r['action']}", r["worker"], r["t"], r["job"], r["step"], r["at"],
                    fired[-1].attempt if fired and r["at"] != "before" else None)
            )  # fmt: skip
    return sorted(out, key=lambda x: x.t)


def checkpoint_times(h: History) -> dict[tuple[str, int], float]:
    """When the server stored each step's checkpoint (child promise completedOn), by (job, step)."""
    stack = h.stack
    by_id = {p["id"]: p for p in h.promises}
    out = {}
    for job in h.jobs():
        for step in range(1, len(STEP_NAMES) + 1):
            child = by_id.get(stack.child_id(job, step))
            if child is not None and child.get("completedOn"):
                out[(job, step)] = child["completedOn"] / 1000
    return out


def roots_by_job(h: History) -> dict[str, list[dict[str, Any]]]:
    stack = h.stack
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for p in h.promises:
        if stack.is_root(p):
            job = stack.job_of_root(p)
            if job is not None:
                grouped[job].append(p)
    return grouped


def completion_times(h: History) -> dict[str, float]:
    """When each job the client saw done was completed: the server's resolution time of its root
    promise (`completedOn`) when known, else the moment a status poll first said done."""
    stack = h.stack
    resolved = {p["id"]: p["completedOn"] / 1000 for p in h.promises if p.get("completedOn")}
    out: dict[str, float] = {}
    for e in h.of_kind("completed"):
        job_id = e["job_id"]
        if job_id not in out:
            out[job_id] = min(e["t"], resolved.get(stack.root_id(job_id), e["t"]))
    return out


# --- verdicts -----------------------------------------------------------------------------
def exactly_once(h: History) -> Verdict:
    """One root promise per accepted job, resolved with the expected value; no duplicate effect."""
    stack = h.stack
    jobs, roots = h.jobs(), roots_by_job(h)
    problems: list[str] = []
    for job_id in sorted(h.accepted()):
        mine = roots.get(job_id, [])
        ids = sorted(p["id"] for p in mine)
        want = stack.root_id(job_id)
        if want not in ids:
            problems.append(f"job {job_id}: no root promise {want} (roots carrying it: {ids or 'none'})")
            continue
        if len(mine) > 1:
            problems.append(f"job {job_id}: {len(mine)} root promises {ids}, expected one")
        root = next(p for p in mine if p["id"] == want)
        if root["state"] != "RESOLVED":
            problems.append(f"job {job_id}: root promise {want} is {root['state']}, not RESOLVED")
            continue
        got, expected = stack.decode(root.get("value")), jobs[job_id]["expected"]
        if got != expected:
            keys = sorted(k for k in set(got or {}) | set(expected) if (got or {}).get(k) != expected.get(k))
            problems.append(
                f"job {job_id}: resolved with a value that differs from the expected one in {keys}"
            )
    effects = Counter((r["job_id"], r["kind"]) for r in h.sink)
    for (job_id, kind), n in sorted(effects.items()):
        if n > 1:
            who = sorted({r["worker"] for r in h.sink if r["job_id"] == job_id and r["kind"] == kind})
            problems.append(
                f"job {job_id} {_step(EFFECT_KIND_STEP.get(kind, 0))}: {n} '{kind}' effects at the sink "
                f"(by {', '.join(who)}), expected one"
            )
    for job_id in sorted(completion_times(h)):
        for kind, step in EFFECT_KIND_STEP.items():
            if effects[(job_id, kind)] == 0:
                problems.append(f"job {job_id} {_step(step)}: completed but no '{kind}' effect at the sink")
    n = len(h.accepted())
    return _verdict(problems, f"{n} accepted jobs: each has one root promise resolved with the expected "
                              f"value; {len(h.sink)} sink effects, none duplicated")  # fmt: skip


def dedup(h: History) -> Verdict:
    """K submissions of one jobId: one root promise, one workflow execution, consistent answers."""
    stack = h.stack
    roots = roots_by_job(h)
    subs, responses = h.by_job("submit"), h.by_job("response")
    step1_hits = Counter(x.job for x in hits(h) if x.step == 1 and x.site != "before")
    completed = {j: [e["result"] for e in evs] for j, evs in h.by_job("completed").items()}
    problems: list[str] = []
    dup_jobs = sorted(j for j, s in subs.items() if len(s) > 1)
    absorbed = lost = 0
    for job_id in dup_jobs:
        k = len(subs[job_id])
        ids = sorted(p["id"] for p in roots.get(job_id, []))
        if len(ids) != 1:
            problems.append(f"job {job_id}: {k} submissions made {len(ids)} root promises {ids[:4]}")
        runs = [a for a in attempts(h, job_id) if a.step == 1]
        if len(runs) > 1 + step1_hits[job_id]:
            problems.append(
                f"job {job_id} {_step(1)}: {len(runs)} workflow executions for {k} submissions "
                f"(by {', '.join(sorted({a.worker for a in runs}))}), expected one"
            )
        ok_resp = [r for r in responses[job_id] if 200 <= r["status"] < 300]
        lost += sum(1 for r in responses[job_id] if r["status"] == 0 or r["status"] >= 500)
        bad = [r for r in responses[job_id] if 400 <= r["status"] < 500]
        if bad:
            problems.append(f"job {job_id}: {len(bad)} of {k} submissions answered {bad[0]['status']}")
        shapes = {(r["status"], r["body"].get("jobId"), r["body"].get("statusUrl")) for r in ok_resp}
        if len(shapes) > 1:
            problems.append(f"job {job_id}: inconsistent answers to duplicates: {sorted(shapes, key=str)}")
        absorbed += max(0, len(ok_resp) - 1)
        results = completed.get(job_id, [])
        if any(r != results[0] for r in results):
            problems.append(f"job {job_id}: status polls returned different results")
        for late in (e for e in subs[job_id] if e.get("mode") == "late-dup"):
            rerun = [a for a in attempts(h, job_id) if a.start > late["t"]]
            if rerun:
                problems.append(f"job {job_id} {_step(rerun[0].step)}: ran again after a late duplicate")
        if stack.root_id(job_id) not in ids and ids:
            problems.append(f"job {job_id}: its root promise is {ids[0]}, not {stack.root_id(job_id)}")
        lost_resp = [r for r in responses[job_id] if r["status"] == 0 or r["status"] >= 500]
        retries = [r for r in responses[job_id] if r.get("mode") == "retry"]
        if lost_resp and retries and not any(200 <= r["status"] < 300 for r in retries):
            problems.append(f"job {job_id}: an answer was lost ({lost_resp[0]['status']}) and none of its "
                            f"{len(retries)} retries was accepted")  # fmt: skip
        problems += _status_regressions(h, job_id)
    if not dup_jobs:
        problems.append("no job was submitted more than once: dedup was not exercised")
    total = sum(len(subs[j]) for j in dup_jobs)
    return _verdict(problems, f"{len(dup_jobs)} jobs submitted {total} times: one root promise and one "
                              f"execution each; {absorbed} duplicate submissions absorbed, {lost} lost "
                              f"responses (5xx or no answer)")  # fmt: skip


def _status_regressions(h: History, job_id: str) -> list[str]:
    """Logged status polls (`status` events) of an accepted job never answer 404, nor go back from done."""
    accepted = min((e["t"] for e in h.of_kind("response") if e["job_id"] == job_id and e["status"] == 202),
                   default=None)  # fmt: skip
    done_at = None
    for e in (e for e in h.of_kind("status") if e["job_id"] == job_id):
        if e["http"] == 404 and accepted is not None and e["t"] > accepted:
            return [f"job {job_id}: status answered 404 {e['t'] - accepted:.2f}s after the job was accepted"]
        if e.get("status") == "done":
            done_at = done_at or e["t"]
        elif done_at is not None and e["http"] == 200:
            return [f"job {job_id}: status went from done back to {e.get('status')}"]
    return []


def replay(h: History) -> Verdict:
    """After a fault in step k: steps < k not re-run, step k re-run, later steps once, same value;
    the server's checkpoints agree with the ledger."""
    stack = h.stack
    promises = {p["id"]: p for p in h.promises}
    all_hits = hits(h)
    done = completion_times(h)
    jobs = h.jobs()
    rerun_problems: list[str] = []  # the most telling problems first
    missing_reruns: list[str] = []
    checkpoint_problems: list[str] = []
    reruns: list[str] = []
    if not all_hits:
        rerun_problems.append("no fault hit a step: replay was not exercised")
    for job_id in sorted(set(done) | {x.job for x in all_hits}):
        mine = attempts(h, job_id)
        job_hits = [x for x in all_hits if x.job == job_id]
        disagree: list[str] = []
        for step in range(1, len(STEP_NAMES) + 1):
            runs = [a for a in mine if a.step == step]
            step_hits = [x for x in job_hits if x.step == step]
            # every execution after the first must follow a fault that hit this step
            if any(not any(x.t <= a.start for x in step_hits) for a in runs[1:]):
                rerun_problems.append(
                    f"job {job_id} {_step(step)}: executed {len(runs)} times (by "
                    f"{', '.join(r.worker for r in runs)}) though no fault interrupted it"
                )
            for x in step_hits:
                again = [a for a in runs if a.start > x.t and a.attempt != x.attempt and a.end is not None]
                if again:
                    reruns.append(f"{job_id} step {step} ({x.fault} of {x.target} -> {again[0].worker})")
                    if x.site in ("paused", "cut-off"):
                        zombie = next((a for a in runs if a.attempt == x.attempt), None)
                        reruns.append(
                            f"the {x.site} attempt of {x.target} also finished, {zombie.end - x.t:.1f}s after the fault"
                            if zombie is not None and zombie.end is not None
                            else f"the {x.site} attempt of {x.target} never finished"
                        )
                elif x.site not in OWE_NO_RERUN:
                    missing_reruns.append(f"job {job_id} {_step(step)}: hit by {x.fault} of {x.target} "
                                          f"but never executed again to completion")  # fmt: skip
            if job_id in done:  # the checkpoint agrees with the ledger
                ended = {_canon(a.value) for a in runs if a.end is not None}
                child = promises.get(stack.child_id(job_id, step))
                if child is None:
                    disagree.append(f"{_step(step)} has no checkpoint ({len(runs)} executions in the ledger)")
                elif child["state"] != "RESOLVED" or _canon(stack.decode(child.get("value"))) not in ended:
                    disagree.append(f"{_step(step)} checkpoint {child['id']} holds another value")
        children = {stack.child_id(job_id, s) for s in range(1, len(STEP_NAMES) + 1)}
        extra = sorted(
            p["id"] for p in h.promises
            if stack.root_of(p) == stack.root_id(job_id) and p["id"] != stack.root_id(job_id) and p["id"] not in children
        )  # fmt: skip
        if extra:
            disagree.append(f"unexpected checkpoints {extra}")
        if disagree:
            checkpoint_problems.append(f"job {job_id}: the server's checkpoints disagree with the ledger: "
                                       + "; ".join(disagree))  # fmt: skip
        root = promises.get(stack.root_id(job_id))
        expected = jobs.get(job_id, {}).get("expected")
        if job_hits and root and root["state"] == "RESOLVED" and stack.decode(root.get("value")) != expected:
            checkpoint_problems.append(
                f"job {job_id}: final value after the fault differs from the fault-free one"
            )
    problems = rerun_problems + missing_reruns + checkpoint_problems
    shown = "; ".join(reruns[:4]) + ("…" if len(reruns) > 4 else "")
    return _verdict(problems, f"{len(all_hits)} fault hits; earlier steps never re-ran, the hit step "
                              f"re-ran ({shown or 'none needed'}), later steps ran once; every checkpoint "
                              f"agrees with the ledger")  # fmt: skip


def liveness(h: History) -> Verdict:
    """Every accepted job completes within the stated deadline after the last fault heals."""
    deadline = float(h.meta.get("settings", {}).get("liveness_deadline_s", 60))
    marks = [e["t"] for e in h.events if e["kind"] in ("fault", "heal")]
    start = [e["t"] for e in h.of_kind("phase") if e.get("name") == "load"]
    since = max(marks or start or [h.events[0]["t"] if h.events else 0.0])
    done = completion_times(h)
    problems = []
    for job_id in sorted(h.accepted()):
        if job_id not in done:
            problems.append(f"job {job_id}: not done (deadline {deadline:g}s after the last fault healed)")
        elif done[job_id] - since > deadline:
            problems.append(f"job {job_id}: done {done[job_id] - since:.1f}s after the last heal, "
                            f"deadline {deadline:g}s")  # fmt: skip
    late = max((done[j] - since for j in h.accepted() if j in done), default=0.0)
    anchor = "the last fault healed" if marks else "the load started"
    when = f"{late:.1f}s after {anchor}" if late >= 0 else f"{-late:.1f}s before {anchor}"
    return _verdict(problems, f"{len(h.accepted())} accepted jobs done, the last {when} "
                              f"(deadline {deadline:g}s)")  # fmt: skip


def no_loss(h: History) -> Verdict:
    """No accepted job is missing from the server, whatever was killed."""
    stack = h.stack
    have = {p["id"] for p in h.promises}
    roots = roots_by_job(h)
    problems = [
        f"job {j}: accepted (202) but the server has no promise for it"
        for j in sorted(h.accepted())
        if stack.root_id(j) not in have and not roots.get(j)
    ]
    return _verdict(problems, f"all {len(h.accepted())} accepted jobs are on the server")


VERDICTS: dict[str, Callable[[History], Verdict]] = {
    "exactly_once": exactly_once,
    "dedup": dedup,
    "replay": replay,
    "liveness": liveness,
    "no_loss": no_loss,
}


def check(h: History, names: list[str]) -> dict[str, Verdict]:
    """The named verdicts (those the scenario exercises; the others stay absent)."""
    return {name: VERDICTS[name](h) for name in names}


__all__ = ["EFFECT_STEPS", "VERDICTS", "check"]
