"""Dedup verification: J unique jobs x K submissions each, mixing every way a duplicate arrives.

Per job, its K submissions are split over these kinds (logged as `case` on submit and response events):

- `death`, `retry-after-death`: (a share of the jobs) the gateway is armed so the first submission's
  Lambda instance dies after its handler returned (begin_rpc done) and before the reply is written;
  the client sees 502 or 504 (the API Gateway timeout case) and retries until accepted;
- `concurrent`: copies sent at the same moment (a barrier), landing on different Lambda instances;
- `after-202`: retries sent one by one right after a 202, while the job is processing;
- `after-done`: retries after the job completed (mode `late-dup`: nothing may run again).

The drive (`drive`) runs inside the `dedup-verify` scenario; the table and figures (`table`,
`dedup_figures`) are pure functions of the run directory's history; the scenario's `extras` hook (`extras`)
puts them into results.json under "dedup_jobs" and "figures".
"""

from __future__ import annotations

import math
import threading
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.checks.dedup import answer_shape
from harness.checks.views import first_step
from harness.errors import HarnessError
from harness.history import History

if TYPE_CHECKING:
    from harness.runner import RunContext

KINDS = ("concurrent", "after-202", "after-done", "death", "retry-after-death")
LATE_KINDS = ("after-202", "after-done")
DEFAULT_JOBS, DEFAULT_COPIES = 20, 10
DEATH_SHARE = 4  # one job in DEATH_SHARE starts with an instance death
DEATH_STATUSES = (502, 504)


def validate(jobs: int, copies: int) -> None:
    """HarnessError (exit 2) for a J or K that cannot make a dedup run."""
    if jobs < 1:
        raise HarnessError("--jobs J with J >= 1", seen=str(jobs))
    split(copies, death=False)


@dataclass(frozen=True)
class Split:
    """How many submissions of each kind one job gets (they add up to K)."""

    death: int  # 0 or 1; each death is followed by retries until one is accepted (counted as 1)
    concurrent: int
    after_202: int
    after_done: int

    @property
    def total(self) -> int:
        return 2 * self.death + self.concurrent + self.after_202 + self.after_done


def split(copies: int, death: bool) -> Split:
    """Split K submissions: death + its retry first, then about half concurrent, then late ones."""
    if copies < 2:
        raise HarnessError("--copies K with K >= 2 (one job submitted at least twice)", seen=str(copies))
    rest = copies - (2 if death else 0)
    concurrent = min(rest, max(2, math.ceil(rest / 2)))
    after_202 = math.ceil((rest - concurrent) / 2)
    return Split(int(death), concurrent, after_202, rest - concurrent - after_202)


def plan(job_ids: list[str], copies: int, rng: Any) -> dict[str, Split]:
    n_death = max(1, round(len(job_ids) / DEATH_SHARE)) if job_ids else 0
    dying = set(rng.sample(job_ids, n_death))
    return {j: split(copies, j in dying) for j in job_ids}


# --- the drive (inside a scenario) ------------------------------------------------------------
def drive(ctx: RunContext, n_jobs: int, copies: int) -> None:
    """Submit n_jobs x copies through the gateway in the four ways; wait for every job."""
    if n_jobs < 1:
        raise HarnessError("--jobs J with J >= 1", seen=str(n_jobs))
    jobs = ctx.jobs(n_jobs, "dedupv")
    ids = [j["jobId"] for j in jobs]
    splits = plan(ids, copies, ctx.rng)
    client = ctx.client
    client.log_status = True  # statuses seen go into the history
    ctx.events.append(
        "dedup-plan", jobs=n_jobs, copies=copies, splits={j: s.__dict__ for j, s in splits.items()}
    )
    instances = ctx.settings.gateway_instances
    deaths_seen: set[str] = set()
    death_lock = threading.Lock()

    dying = [j for j in ids if splits[j].death]
    death_status = {j: DEATH_STATUSES[k % len(DEATH_STATUSES)] for k, j in enumerate(dying)}
    ctx.phase("load", instance_deaths=dying)

    def die_then_retry(job: dict[str, Any]) -> None:
        """Arm the gateway so this submission's instance dies after begin_rpc; retry until accepted."""
        client.arm_instance_death(job["jobId"], death_status[job["jobId"]])
        first = client.submit(job, "unique", case="death")
        with death_lock:
            client.log_instance_deaths(deaths_seen)
        if first["status"] == 0 or first["status"] >= 500:
            for attempt in range(1, 6):
                again = client.submit(job, "retry", case="retry-after-death", retry_of=first["sub"])
                if 0 < again["status"] < 500:
                    break
                threading.Event().wait(0.2 * attempt)

    def flow(job: dict[str, Any]) -> None:
        """One job: (maybe) an instance death and its retry, then a concurrent burst, then retries."""
        s = splits[job["jobId"]]
        if s.death:
            die_then_retry(job)
        barrier = threading.Barrier(s.concurrent)

        def copy(c: int) -> None:
            barrier.wait(timeout=30)
            client.submit(job, "unique" if c == 0 and not s.death else "dup", case="concurrent")

        with ThreadPoolExecutor(max_workers=s.concurrent) as pool:
            list(pool.map(copy, range(s.concurrent)))
        for _ in range(s.after_202):  # while it is processing (the status poll before says so)
            client.status(job["jobId"])
            client.submit(job, "dup", case="after-202")

    # at most ~2 requests per gateway instance in flight: the gateway queues the rest, never throttles
    width = max(1, (2 * instances) // max(s.concurrent for s in splits.values()))
    with ThreadPoolExecutor(max_workers=width) as pool:
        list(pool.map(flow, jobs))
    with death_lock:
        client.log_instance_deaths(deaths_seen)
    ctx.wait_done(ids)

    ctx.phase("after-done")

    def after_done(job: dict[str, Any]) -> None:
        for _ in range(splits[job["jobId"]].after_done):
            client.submit(job, "late-dup", case="after-done")
        client.status(job["jobId"])

    with ThreadPoolExecutor(max_workers=instances) as pool:
        list(pool.map(after_done, jobs))
    ctx.wait_done(ids)
    client.log_status = False


# --- the table and figures (pure functions of the history) -------------------------------------
def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))]


def _lost(status: int) -> bool:
    return status == 0 or status >= 500


def table(h: History) -> list[dict[str, Any]]:
    """One row per job: submissions by kind, answers, root promises, executions, statuses seen."""
    subs, answers = h.by_job("submit"), h.by_job("response")
    statuses: dict[str, list[str]] = defaultdict(list)
    for e in h.of_kind("status"):
        seen = "done" if e.get("done") else e.get("status") or str(e.get("http"))
        if seen not in statuses[e["job_id"]]:
            statuses[e["job_id"]].append(seen)
    for e in h.of_kind("completed"):
        if "done" not in statuses[e["job_id"]]:
            statuses[e["job_id"]].append("done")
    deaths = Counter(f["job"] for f in h.faults() if f.get("fault") == "lambda-death")
    rows = []
    for job_id in sorted(h.jobs()):
        mine = answers[job_id]
        ok = [r for r in mine if 200 <= r["status"] < 300]
        shapes = {answer_shape(r) for r in ok}
        lost = [r for r in mine if _lost(r["status"])]
        recovered = not lost or any(r["t"] > lost[0]["t"] for r in ok)
        steps = h.executions(job_id)
        first = first_step(h, job_id)
        step1 = [x for x in steps if x.pos == first]
        by_kind = Counter(e.get("case", e.get("mode", "?")) for e in subs[job_id])
        row = {
            "job": job_id,
            "submissions": {k: by_kind[k] for k in KINDS if by_kind[k]}
            | {k: n for k, n in by_kind.items() if k not in KINDS},
            "total": len(subs[job_id]),
            "answers": dict(sorted(Counter(str(r["status"]) for r in mine).items())),
            "absorbed": max(0, len(ok) - 1),
            "lost": len(lost),
            "instance_deaths": deaths[job_id],
            "root_promises": len(h.roots_of(job_id)),
            "executions": len(step1),
            "step_executions": len(steps),
            "statuses_seen": statuses[job_id],
            "instances": len({r["instance"] for r in mine if r.get("instance")}),
            "concurrent_instances": len(
                {r["instance"] for r in mine if r.get("case") == "concurrent" and r.get("instance")}
            ),
            "consistent": len(shapes) <= 1 and recovered and not any(400 <= r["status"] < 500 for r in mine),
        }
        row["ok"] = row["root_promises"] == 1 and row["executions"] == 1 and row["consistent"]
        rows.append(row)
    return rows


def dedup_figures(h: History, rows: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    rows = rows if rows is not None else table(h)
    lat: dict[str, list[float]] = defaultdict(list)
    for r in h.of_kind("response"):
        if 200 <= r["status"] < 300 and r.get("case"):
            lat[r["case"]].append(1000 * r["latency"])
    late = [v for k in LATE_KINDS for v in lat[k]]
    out: dict[str, Any] = {
        "submissions_absorbed": sum(r["absorbed"] for r in rows),
        "most_executions_of_any_job": max((r["executions"] for r in rows), default=0),
        "most_root_promises_of_any_job": max((r["root_promises"] for r in rows), default=0),
        "lost_responses": sum(r["lost"] for r in rows),
        "instance_deaths": sum(r["instance_deaths"] for r in rows),
    }
    for name, values in (("concurrent", lat["concurrent"]), ("late", late),
                         ("retry_after_death", lat["retry-after-death"])):  # fmt: skip
        for q, label in ((0.5, "p50"), (0.99, "p99"), (1.0, "max")):
            v = _pct(values, q)
            out[f"dup_latency_ms_{name}_{label}"] = round(v, 1) if v is not None else None
    return out


def extras(h: History) -> dict[str, Any]:
    """What a dedup-verify run adds to results.json: the per-job table and the dedup figures."""
    rows = table(h)
    return {"dedup_jobs": rows, "figures": dedup_figures(h, rows)}


def print_table(rows: list[dict[str, Any]], out: Any = None) -> None:
    """A compact console rendering of the per-job table."""
    from rich.console import Console
    from rich.table import Table

    t = Table(title="dedup: per job", show_lines=False)
    for col in ("job", "subs", "by kind", "answers", "roots", "execs", "statuses", "inst", "ok"):
        t.add_column(col)
    for r in rows:
        kinds = " ".join(f"{k}={n}" for k, n in r["submissions"].items())
        answers = " ".join(f"{k}x{n}" for k, n in r["answers"].items())
        t.add_row(r["job"], str(r["total"]), kinds, answers, str(r["root_promises"]), str(r["executions"]),
                  ",".join(r["statuses_seen"]), str(r["instances"]), "yes" if r["ok"] else "NO")  # fmt: skip
    Console(file=out, width=160).print(t)
