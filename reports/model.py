"""What the renderers show, gathered once from a run directory (and nothing else).

`load(run_dir)` never touches a live cluster: it reads results.json and run.json as JSON, and
the history (events, ledger, promises, effects, replay) through `harness.history.History.load`.
Every part may be missing in a partial run (no promises.json, a scenario that stopped early, no
faults, no results.json yet); the report then shows what there is and says what is missing.

Times are seconds since the run's first harness event, the same origin results.json uses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.checks import Hit, completion_times, hits
from harness.errors import HarnessError
from harness.figures import recoveries
from harness.history import Execution as Run
from harness.history import History
from harness.stack import position_key

INSTANT = frozenset(
    {"kill", "kill-worker"}
)  # faults that are over when they happen (their heal is a restart)
RESULTS = "results.json"
RUN_META = "run.json"
# results.json keys the report lays out itself; any other key (a later dedup or benchmark
# result, say) is shown as-is under "Other results".
KNOWN_RESULT_KEYS = frozenset(
    {"scenario", "backend", "stack", "seed", "versions", "jobs", "faults", "verdicts", "incidents", "figures",
     "command", "app", "findings"}
)  # fmt: skip


@dataclass
class Execution:
    """One execution of one step: a bar on the timeline."""

    job: str
    step: str
    name: str
    worker: str
    pid: int
    start: float
    end: float | None  # None: it never ended (killed, or still running when the run stopped)
    drawn_end: float  # where the bar stops: its end, else the fault that hit it, else the run's end
    fate: str  # "ok" | "cut" (no end) | "late" (ended after a fault hit it, e.g. a zombie)
    hit_by: str | None = None


@dataclass
class Lane:
    job: str
    executions: list[Execution] = field(default_factory=list)
    submitted: float | None = None
    done: float | None = None
    faulted: bool = False


@dataclass
class FaultMark:
    """A fault on the timeline: where it struck and, for one that lasts (pause, server crash,
    partition, a slow link), until when."""

    kind: str
    target: str
    t: float
    until: float | None  # its heal (resume, server back, link restored); None: instant or never healed
    jobs: list[str]  # lanes it struck (empty: nothing was in flight on the target)


@dataclass
class FaultRow:
    """One row of the fault table: a fault and one step execution it struck (or none)."""

    n: int  # the fault's number: rows of one fault that struck several executions share it
    kind: str
    target: str
    at: float | None
    job: str | None = None
    step: str | None = None
    step_name: str | None = None
    site: str | None = None
    victim: str | None = None  # the worker whose execution was struck
    restart_s: float | None = None
    restart_worker: str | None = None
    done_s: float | None = None
    note: str = ""


@dataclass
class RunView:
    run_dir: Path
    results: dict[str, Any]
    meta: dict[str, Any]
    problems: list[str]  # what is missing or unreadable in the run directory
    t0: float = 0.0
    span: float = 0.0
    lanes: list[Lane] = field(default_factory=list)
    marks: list[FaultMark] = field(default_factory=list)
    fault_rows: list[FaultRow] = field(default_factory=list)
    workers: list[str] = field(default_factory=list)
    incidents: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    phases: list[tuple[str, float]] = field(default_factory=list)
    logs: list[tuple[str, int]] = field(default_factory=list)  # (path relative to the run dir, bytes)
    has_history: bool = False

    # --- convenience for templates ----------------------------------------------------------
    def get(self, key: str, default: Any = None) -> Any:
        """A results.json field, else the run.json one."""
        return self.results.get(key, self.meta.get(key, default))

    @property
    def verdicts(self) -> dict[str, dict[str, Any]]:
        return self.results.get("verdicts") or {}

    @property
    def ok(self) -> bool | None:
        """True: every verdict holds; False: one fails; None: nothing was checked."""
        v = self.verdicts
        return all(x.get("ok") for x in v.values()) if v else None

    @property
    def extra_results(self) -> dict[str, Any]:
        return {k: v for k, v in self.results.items() if k not in KNOWN_RESULT_KEYS}

    @property
    def n_faults(self) -> int:
        return len({r.n for r in self.fault_rows})

    @property
    def step_names(self) -> dict[str, str]:
        names = {x.step: x.name for lane in self.lanes for x in lane.executions}
        return dict(sorted(names.items(), key=lambda kv: position_key(kv[0])))


def _read_json(path: Path, problems: list[str]) -> dict[str, Any]:
    if not path.exists():
        problems.append(f"no {path.name}")
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        problems.append(f"{path.name} is unreadable: {e}")
        return {}
    if not isinstance(data, dict):
        problems.append(f"{path.name} is not a JSON object")
        return {}
    return data


def load(run_dir: Path) -> RunView:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise HarnessError("a run directory", seen=f"{run_dir} is not a directory")
    if not (run_dir / RESULTS).exists() and not (run_dir / RUN_META).exists():
        raise HarnessError(f"a run directory (with {RESULTS} or {RUN_META})", seen=f"neither in {run_dir}",
                           hint="harness run SCENARIO --out DIR")  # fmt: skip
    problems: list[str] = []
    results = _read_json(run_dir / RESULTS, problems)
    if not results:
        problems.append("no verdicts: run `harness check RUN_DIR` to compute them")
    meta = _read_json(run_dir / RUN_META, [])
    view = RunView(run_dir, results, meta, problems, logs=_logs(run_dir))
    try:
        h = History.load(run_dir)
    except (HarnessError, OSError, ValueError) as e:
        problems.append(f"no history: {e}")
        view.fault_rows = _rows_from_results(results)
        view.incidents = list(results.get("incidents") or [])
        return view
    if not (run_dir / "promises.json").exists():
        problems.append("no promises.json (the run stopped before the server's promises were read)")
    _from_history(view, h)
    return view


def _logs(run_dir: Path) -> list[tuple[str, int]]:
    logs = run_dir / "logs"
    if not logs.is_dir():
        return []
    return [(str(p.relative_to(run_dir)), p.stat().st_size) for p in sorted(logs.rglob("*")) if p.is_file()]


def _rows_from_results(results: dict[str, Any]) -> list[FaultRow]:
    """Without a history, the fault table has what results.json lists (no recovery times)."""
    return [
        FaultRow(n=i, kind=f.get("kind", "?"), target=f.get("target", "?"), at=f.get("at"), job=f.get("job"),
                 step=None if f.get("step") is None else str(f.get("step")), site=f.get("site"))
        for i, f in enumerate(results.get("faults") or [], 1)
    ]  # fmt: skip


def _from_history(view: RunView, h: History) -> None:
    view.has_history = True
    times = [e["t"] for e in h.events] + [r["t"] for r in h.ledger]
    t0 = h.events[0]["t"] if h.events else min(times, default=0.0)
    view.t0 = t0
    view.span = max(times, default=t0) - t0

    def rel(t: float | None) -> float | None:
        return None if t is None else round(t - t0, 3)

    # Faults (harness fault events and failpoints that fired inside workers), with their hits.
    struck = hits(h)
    by_fault: dict[tuple[str, str, float], list[Hit]] = {}
    for x in struck:
        by_fault.setdefault((x.fault, x.target, x.t), []).append(x)
    heals = sorted(h.of_kind("heal"), key=lambda e: e["t"])
    faults: list[tuple[str, str, float, dict[str, Any]]] = [
        (f["fault"], f["target"], f["t"], f) for f in h.faults()
    ]
    faults += [
        (
            f"failpoint-{r['action']}",
            r["worker"],
            r["t"],
            {**r, "job": h.job_of.get(r["root"]), "step": r["pos"]},
        )
        for r in h.records("failpoint")
        if r.get("action") != "hold" and r.get("root") in h.job_of
    ]
    faults.sort(key=lambda f: f[2])
    rec = {(r["fault"], r["target"], r["t"], r["job"], r["step"]): r for r in recoveries(h)}

    all_jobs = list(h.jobs())
    runs: dict[str, list[Run]] = {j: h.executions(j) for j in all_jobs}
    by_attempt = {a.exec: a for xs in runs.values() for a in xs}
    step_names = {a.pos: a.fn for xs in runs.values() for a in xs}

    rows: list[FaultRow] = []
    for n, (kind, target, t, f) in enumerate(faults, 1):
        until = None  # when the fault was undone; a kill's heal is a restart, not the end of a span
        if kind not in INSTANT:
            until = next((rel(e["t"]) for e in heals if e.get("target") == target and e.get("fault") == kind
                          and e["t"] >= t), None)  # fmt: skip
        xs = by_fault.get((kind, target, t), [])
        view.marks.append(FaultMark(kind, target, rel(t) or 0.0, until, sorted({x.job for x in xs})))
        if not xs:
            step = None if f.get("step") is None else str(f.get("step"))
            rows.append(FaultRow(n, kind, target, rel(t), job=f.get("job"), step=step,
                                 step_name=step_names.get(step or ""), site=f.get("at") if kind.startswith("failpoint") else None,
                                 note="nothing in flight on the target"))  # fmt: skip
            continue
        for x in xs:
            r = rec.get((x.fault, x.target, x.t, x.job, x.pos), {})
            victim = by_attempt.get(x.exec) if x.exec else None
            note = ""
            if r.get("restart_s") is None:
                if victim is not None and victim.end is not None:
                    note = "the struck execution finished; the step was not re-run"
                else:
                    note = "the step never re-ran"
            elif victim is not None and victim.end is not None and victim.end > x.t:
                note = f"the struck execution still finished, {victim.end - x.t:.2f} s after the fault"
            rows.append(FaultRow(
                n, kind, target, rel(t), job=x.job, step=x.pos, step_name=step_names.get(x.pos),
                site=x.site, victim=victim.worker if victim else (target if target != "server" else None),
                restart_s=r.get("restart_s"), restart_worker=r.get("restart_worker"), done_s=r.get("done_s"),
                note=note,
            ))  # fmt: skip
    view.fault_rows = rows

    # Lanes: one per job, in order of first submission (then first execution).
    hit_of = {x.exec: x for x in struck if x.exec}
    submitted: dict[str, float] = {}
    for e in h.of_kind("submit"):
        submitted.setdefault(e["job_id"], e["t"])
    done = completion_times(h)
    faulted_jobs = {x.job for x in struck} | {f.get("job") for *_, f in faults if f.get("job")}
    end_of_run = t0 + view.span
    lanes = []
    for job in all_jobs:
        lane = Lane(
            job, submitted=rel(submitted.get(job)), done=rel(done.get(job)), faulted=job in faulted_jobs
        )
        for a in runs[job]:
            x = hit_of.get(a.exec)
            if a.end is None:
                fate, drawn = "cut", (x.t if x and x.t >= a.start else end_of_run)
            elif x is not None and x.t < a.end:
                fate, drawn = "late", a.end
            else:
                fate, drawn = "ok", a.end
            lane.executions.append(Execution(
                job, a.pos, a.fn, a.worker, a.pid, rel(a.start) or 0.0,
                rel(a.end), rel(drawn) or 0.0, fate, x.fault if x else None,
            ))  # fmt: skip
        lanes.append(lane)
    first = {ln.job: min([x.start for x in ln.executions] + [ln.submitted or view.span]) for ln in lanes}
    lanes.sort(
        key=lambda ln: (ln.submitted if ln.submitted is not None else first[ln.job], first[ln.job], ln.job)
    )
    view.lanes = lanes
    view.workers = sorted(
        {x.worker for ln in lanes for x in ln.executions} | _cluster_workers(h), key=_natural
    )

    view.incidents = list(view.results["incidents"]) if "incidents" in view.results else [
        {"kind": e["kind"], "target": e.get("target"), "code": e.get("code"), "at": rel(e["t"])}
        for e in h.of_kind("worker-exit")
    ]  # fmt: skip
    view.errors = [{**e, "at": rel(e["t"])} for e in h.of_kind("error")]
    view.phases = [(e.get("name", "?"), rel(e["t"]) or 0.0) for e in h.of_kind("phase")]


def _cluster_workers(h: History) -> set[str]:
    up = [e for e in h.of_kind("phase") if e.get("name") == "cluster-up"]
    return set(up[0].get("workers") or []) if up else set()


def _natural(name: str) -> tuple[str, int]:
    head, _, tail = name.rpartition("-")
    return (head, int(tail)) if tail.isdigit() else (name, 0)
