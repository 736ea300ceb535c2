"""Figures measured from a history: recovery times, throughput, step executions."""

from __future__ import annotations

import statistics
from typing import Any

from harness.checks import completion_times, hits
from harness.history import History


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))], 3)


def recoveries(h: History) -> list[dict[str, Any]]:
    """Per fault hit: time until the hit step restarted elsewhere and until the job completed."""
    done = completion_times(h)
    out = []
    for x in hits(h):
        again = [a for a in h.executions(x.job) if a.pos == x.pos and a.start > x.t and a.exec != x.exec]
        out.append(
            {
                "fault": x.fault,
                "target": x.target,
                "job": x.job,
                "step": x.pos,
                "site": x.site,
                "t": x.t,
                "restart_s": round(again[0].start - x.t, 3) if again else None,
                "restart_worker": again[0].worker if again else None,
                "done_s": round(done[x.job] - x.t, 3) if x.job in done else None,
            }
        )
    return out


def figures(h: History) -> dict[str, Any]:
    rec = recoveries(h)
    restart = [r["restart_s"] for r in rec if r["restart_s"] is not None]
    to_done = [r["done_s"] for r in rec if r["done_s"] is not None]
    done = completion_times(h)
    load_start = min((e["t"] for e in h.of_kind("submit")), default=None)
    out: dict[str, Any] = {
        "executions": sum(len(h.executions(j)) for j in h.jobs()),
        "submissions": len(h.of_kind("submit")),
    }
    if load_start is not None and done:
        span = max(done.values()) - load_start
        out["makespan_s"] = round(span, 3)
        out["jobs_per_s"] = round(len(done) / span, 3) if span > 0 else 0.0
        out["job_latency_s_p50"] = _pct([done[j] - _first_submit(h, j) for j in done], 0.5)
    accept = [e["latency"] for e in h.of_kind("response") if e["status"] == 202]
    if accept:
        out["accept_latency_ms_p50"] = round(1000 * statistics.median(accept), 1)
        out["accept_latency_ms_max"] = round(1000 * max(accept), 1)
    if rec:
        out["recovery_restart_s_p50"] = _pct(restart, 0.5)
        out["recovery_restart_s_max"] = round(max(restart), 3) if restart else None
        out["recovery_s_p50"] = _pct(to_done, 0.5)
        out["recovery_s_max"] = round(max(to_done), 3) if to_done else None
    return out


def _first_submit(h: History, job_id: str) -> float:
    return min(e["t"] for e in h.of_kind("submit") if e["job_id"] == job_id)
