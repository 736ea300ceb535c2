"""Views of a history that several verdicts and the figures share: fault hits, checkpoint and
completion times, step labels, verdict helpers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.history import Execution, History
from harness.stack import is_under

Verdict = dict[str, Any]
MAX_LISTED = 5
# hit sites after which the step may be executed again but need not be (it may finish on its own)
# ("unsettled": the execution had ended but its checkpoint was not stored yet when the fault came;
# the SDK's write may or may not have reached the server)
OWE_NO_RERUN = ("before", "server-down", "paused", "cut-off", "degraded", "unsettled")


def verdict(problems: list[str], ok_detail: str) -> Verdict:
    if not problems:
        return {"ok": True, "detail": ok_detail}
    more = f" (+{len(problems) - MAX_LISTED} more)" if len(problems) > MAX_LISTED else ""
    return {"ok": False, "detail": "; ".join(problems[:MAX_LISTED]) + more}


def step_label(h: History, job: str, pos: str) -> str:
    fn = h.steps(job).get(pos)
    return f"step {pos} ({fn})" if fn else f"step {pos}"


@dataclass(frozen=True)
class Hit:
    """A fault that struck a step execution (or the point just before one)."""

    fault: str
    target: str
    t: float
    job: str
    pos: str
    site: (
        str  # during | before | after_effect | after | server-down | paused | cut-off | degraded | unsettled
    )
    exec: str | None

    def covers(self, x: Execution) -> bool:
        """Whether this hit allows another execution of `x`'s step (a generator step re-enters when
        any of its sub-steps is hit)."""
        return self.pos == x.pos or (x.kind == "gen" and is_under(self.pos, x.pos))


def count(n: int, noun: str) -> str:
    """'1 accepted job', '3 accepted jobs'."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def checkpoint_times(h: History) -> dict[tuple[str, str], float]:
    """When the server stored each step's checkpoint (child promise completedOn), by (job, pos)."""
    out = {}
    for job in h.jobs():
        for x in h.executions(job):
            child = h.promise.get(x.id)
            if child is not None and child.get("completedOn"):
                out[(job, x.pos)] = child["completedOn"] / 1000
    return out


_SITES = {"pause": "paused", "partition": "cut-off", "latency": "degraded", "bandwidth": "degraded",
          "reset": "degraded", "server-crash": "server-down"}  # fmt: skip


def hits(h: History) -> list[Hit]:
    """Which step executions each fault interrupted, from the fault events and the ledger."""
    cached = h.__dict__.get("_hits")
    if cached is not None:
        return cached
    out: list[Hit] = []
    every = [x for job in h.jobs() for x in h.executions(job)]
    stored = checkpoint_times(h)
    struck: set[str] = set()  # an execution is interrupted once, by the first fault that reaches it

    def unsettled(x: Execution, t: float) -> bool:
        """Ended before t, but its value was not checkpointed by t."""
        return x.end is not None and x.end <= t and stored.get((x.job, x.pos), float("inf")) > t

    for f in sorted(h.faults(), key=lambda f: f["t"]):
        kind, t = f["fault"], f["t"]
        in_flight = [x for x in every
                     if x.start <= t and (x.end is None or x.end > t or unsettled(x, t)) and x.exec not in struck]  # fmt: skip
        if kind == "server-crash":  # in-flight steps may finish or be re-run: both are allowed
            victims = in_flight
        elif "pid" in f:
            victims = [x for x in in_flight if x.pid == f["pid"]]
        else:
            victims = [x for x in in_flight if x.worker == f["target"]]
        site = _SITES.get(kind, "during")
        struck |= {x.exec for x in victims}
        out += [Hit(kind, f["target"], t, x.job, x.pos, "unsettled" if unsettled(x, t) else site, x.exec)
                for x in victims]  # fmt: skip
        if not victims and f.get("job") and f.get("step") is not None:
            out.append(
                Hit(kind, f["target"], t, f["job"], str(f["step"]), f.get("site", site), f.get("attempt"))
            )
    for r in h.records("failpoint"):
        job = h.job_of.get(r.get("root", ""))
        if job is None or r.get("action") == "hold":  # a hold only places another fault
            continue
        out.append(
            Hit(f"failpoint-{r['action']}", r["worker"], r["t"], job, r["pos"], r["at"], r.get("exec"))
        )
    out.sort(key=lambda x: x.t)
    h.__dict__["_hits"] = out
    return out


def completion_times(h: History) -> dict[str, float]:
    """When each job the client saw done was completed: the server's resolution time of its root
    promise (`completedOn`) when known, else the moment a status poll first said done."""
    out: dict[str, float] = {}
    for e in h.of_kind("completed"):
        job = e["job_id"]
        if job in out:
            continue
        resolved = [h.promise[r]["completedOn"] / 1000 for r in h.roots_of(job)
                    if h.promise.get(r, {}).get("completedOn")]  # fmt: skip
        out[job] = min([e["t"], *resolved])
    return out


def first_step(h: History, job: str) -> str | None:
    """The position of the first step the job's workflow ran."""
    runs = h.executions(job)
    return min((x.pos for x in runs if "." not in x.pos), default=None, key=lambda p: (len(p), p))


def effect_rows(h: History) -> list[dict[str, Any]]:
    """The app's effects of the run's jobs (the canary's left out)."""
    jobs = h.jobs()
    return [r for r in h.effects.get("rows") or [] if r.get("job") in jobs]
