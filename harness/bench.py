"""`harness bench`: open-loop throughput benchmark of the SUT through the gateway.

The app under test is `--app DIR` (default: the reference app in workflow/). For each worker count
(default 1, 2, 4, 8) a fresh cluster is started and a canary job run through it, which teaches the
harness the app's workflow, its steps and its promise-id scheme. For each offered rate (default: a
doubling ramp that stops at the first rate the cluster cannot keep up with) the load generator
sends the app's own submit request ([submit] method, path, headers and body, each with a fresh
job id) at a constant rate for a fixed duration (open loop: the send times are fixed in advance
and never wait for answers). Every latency is measured from the request's INTENDED send time, so
a stalled gateway or server shows up in the numbers instead of silently slowing the load down
(coordinated omission corrected), and recorded in HdrHistograms:

- accept latency: intended send -> the gateway's 2xx answer;
- completion latency: intended send -> the job's root promise resolved on the server (its
  `completedOn`, read from the server after the point: no status polling load). The root is found
  by the promise-id scheme the canary learned (e.g. `order-{job}`), or, for an app whose promise
  ids do not carry the job id, by the ledger's dispatch records (each request carries the job mark).

`--step-seconds` is the reference app's knob only (its WORKFLOW_STEP_SECONDS); other apps run
their steps as they are.

Per point: offered rate, achieved submit (2xx) rate, completed jobs/s, accept p50/p95/p99/max,
completion p50/p99, errors, schedule lag, CPU use by component. Per worker count: capacity (best
completed jobs/s), the knee (lowest offered rate where completions fall behind), and scaling
efficiency against 1 worker. Before the sweep the generator is run against a no-op HTTP server on
loopback (a separate process), so its own ceiling is known.

Output directory: bench.json, summary.md, throughput.png, latency.png, scaling.png, and the
clusters' run directories (server/worker/gateway logs). `harness bench --compare A B` prints a
comparison of two bench.json files (or directories holding one).

``python -m harness.bench noop [--port P] [--stall-after N --stall-for S]`` runs the no-op server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests

from harness.errors import HarnessError, WaitTimeout
from harness.history import LedgerTail
from harness.load import OpenLoop, OpenLoopResult, Request, Shot, app_request, constant_rate_schedule
from harness.waiting import wait_until

BENCH_JSON = "bench.json"
DEFAULT_WORKERS = "1,2,4,8"
DEFAULT_STEP_SECONDS = "0.01"
DEFAULT_DURATION = 8.0
DEFAULT_INSTANCES = 6
DEFAULT_CONNECTIONS = 64
AUTO_START_RATE = 4.0
AUTO_FACTOR = 2.0
AUTO_MAX_POINTS = 5
CEILING_RATES = "250,500,1000,2000,4000"
CEILING_SECONDS = 3.0
CEILING_LAG_MS = 50
BEHIND_RATIO = 0.9  # completions below 90% of the offered rate: falling behind
HIST_MAX_US = 3_600_000_000
NOOP_READY = "noop ready on "


# --- latency histograms ----------------------------------------------------------------------
def histogram() -> Any:
    from hdrh.histogram import HdrHistogram

    return HdrHistogram(1, HIST_MAX_US, 3)


def record(hist: Any, seconds: float) -> None:
    hist.record_value(min(HIST_MAX_US, max(1, round(seconds * 1e6))))


def summarize(hist: Any, percentiles: tuple[float, ...] = (50, 95, 99)) -> dict[str, float | None]:
    """Percentiles (and max) of a histogram in milliseconds; None when empty."""
    if hist.get_total_count() == 0:
        return {**{f"p{p:g}": None for p in percentiles}, "max": None, "count": 0}
    out: dict[str, Any] = {f"p{p:g}": round(hist.get_value_at_percentile(p) / 1000, 2) for p in percentiles}
    out["max"] = round(hist.get_max_value() / 1000, 2)
    out["count"] = hist.get_total_count()
    return out


@dataclass
class LoadStats:
    """What an open-loop run measured, from the schedule's point of view."""

    offered_rate: float
    duration_s: float
    requests: int
    answered_ok: int
    errors: dict[str, int]
    achieved_rate: float  # 2xx answers per second, from the start to the last answer
    accept: Any  # HdrHistogram, corrected (from intended send)
    service: Any  # HdrHistogram, uncorrected (from actual send)
    lag: Any  # HdrHistogram of send lag

    def to_json(self) -> dict[str, Any]:
        return {
            "offered_rate": self.offered_rate,
            "duration_s": self.duration_s,
            "requests": self.requests,
            "answered_ok": self.answered_ok,
            "errors": self.errors,
            "achieved_rate": round(self.achieved_rate, 2),
            "accept_ms": summarize(self.accept),
            "service_ms_uncorrected": summarize(self.service),
            "lag_ms": summarize(self.lag),
        }


def load_stats(res: OpenLoopResult, rate: float, duration: float, ok: Callable[[int], bool]) -> LoadStats:
    accept, service, lag = histogram(), histogram(), histogram()
    errors: Counter[str] = Counter()
    good = [s for s in res.shots if ok(s.status)]
    for s in res.shots:
        record(lag, max(0.0, s.lag))
        if ok(s.status):
            record(accept, s.latency)
            record(service, s.service_time)
        else:
            errors[str(s.status) if s.status else "no-answer"] += 1
    last = max((s.answered for s in good), default=res.start)
    span = max(last - res.start, 1e-9)
    return LoadStats(
        rate,
        duration,
        len(res.shots),
        len(good),
        dict(errors),
        len(good) / span if good else 0.0,
        accept,
        service,
        lag,
    )


# --- the no-op endpoint (for the harness's own ceiling) ----------------------------------------
async def _noop_serve(port: int, stall_after: int, stall_for: float) -> None:
    served = 0
    body = b'{"status":"accepted"}'
    head = b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(
        body
    )

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal served
        try:
            while True:
                headers = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in headers.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:].strip() or 0)
                if length:
                    await reader.readexactly(length)
                served += 1
                if served == stall_after:
                    time.sleep(stall_for)  # blocks the whole loop: a stalled server
                writer.write(head + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    print(f"{NOOP_READY}http://127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


@contextlib.contextmanager
def noop_server(stall_after: int = 0, stall_for: float = 0.0) -> Iterator[str]:
    """A no-op HTTP endpoint (202, keep-alive) in its own process; yields its URL."""
    cmd = [sys.executable, "-m", "harness.bench", "noop", "--port", "0"]
    if stall_after:
        cmd += ["--stall-after", str(stall_after), "--stall-for", str(stall_for)]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith(NOOP_READY):
            raise HarnessError("the no-op HTTP server to start", seen=line.strip() or f"exit {proc.poll()}")
        yield line[len(NOOP_READY) :].strip()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def accepted(status: int) -> bool:
    """The gateway accepted the submission (any 2xx: the app decides which)."""
    return 200 <= status < 300


def ceiling(
    rates: list[float],
    seconds: float,
    connections: int,
    progress: Callable[[str, int, int], None] | None = None,
    request: Callable[[int], bytes | Request] | None = None,
) -> dict[str, Any]:
    """The load generator's own ceiling: achieved rate and schedule lag against a no-op endpoint,
    sending `request(i)` (the app's submit request; default a tiny JSON body)."""
    points = []
    make = request or (lambda i: b'{"jobId":"noop"}')
    with noop_server() as url:
        loop = OpenLoop(url, connections=connections)
        for rate in rates:
            schedule = constant_rate_schedule(rate, seconds)
            done = [0]

            def tick(
                _: Shot, n: int = len(schedule), label: str = f"ceiling {rate:g}/s", done: list[int] = done
            ) -> None:
                done[0] += 1
                if progress and done[0] % 50 == 0:
                    progress(label, done[0], n)

            res = loop.run(schedule, make, on_answer=tick)
            st = load_stats(res, rate, seconds, accepted)
            keeps_up = (
                st.achieved_rate >= 0.97 * rate
                and (st.lag.get_value_at_percentile(99) / 1000) < CEILING_LAG_MS
            )
            points.append({**st.to_json(), "keeps_up": keeps_up})
    ok = [p["offered_rate"] for p in points if p["keeps_up"]]
    return {
        "target": "no-op HTTP/1.1 server (asyncio, separate process) on 127.0.0.1",
        "criterion": f"achieved >= 97% of offered and schedule lag p99 < {CEILING_LAG_MS} ms",
        "connections": connections,
        "points": points,
        "max_rate": max(ok) if ok else None,
    }


# --- CPU context -------------------------------------------------------------------------------
ROLES = (
    ("harness.agent.worker", "workers"),
    ("harness.agent.lambda_runtime", "lambdas"),
    ("harness.gateway", "gateway"),
    ("harness.bench", "noop"),
    ("resonate", "server"),
)


def _proc_stat(pid: str) -> tuple[int, int] | None:
    """(ppid, utime + stime ticks) of a process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return int(fields[1]), int(fields[11]) + int(fields[12])


def _role(pid: int) -> str:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "other"
    return next((role for needle, role in ROLES if needle in cmd), "other")


def cpu_snapshot() -> dict[str, Any]:
    """Machine CPU ticks and the CPU ticks of this process and every descendant, by role."""
    me = os.getpid()
    stats: dict[int, tuple[int, int]] = {}
    if Path("/proc/stat").exists():
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and (st := _proc_stat(entry.name)) is not None:
                stats[int(entry.name)] = st
        line = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        ticks = [int(x) for x in line]
        machine = (sum(ticks) - ticks[3] - (ticks[4] if len(ticks) > 4 else 0), sum(ticks))
    else:
        machine = (0, 0)
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    mine: dict[int, tuple[str, int]] = {}
    todo = [me]
    while todo:
        pid = todo.pop()
        if pid in stats:
            mine[pid] = ("load generator" if pid == me else _role(pid), stats[pid][1])
        todo += children.get(pid, [])
    return {"t": time.monotonic(), "machine": machine, "procs": mine}


def cpu_delta(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """CPU used between two snapshots, in cores (1.0 = one core busy all the time)."""
    hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    wall = max(b["t"] - a["t"], 1e-9)
    by_role: Counter[str] = Counter()
    for pid, (role, ticks) in b["procs"].items():
        before = a["procs"].get(pid, (role, 0))[1]
        by_role[role] += max(0, ticks - before)
    busy, total = b["machine"][0] - a["machine"][0], b["machine"][1] - a["machine"][1]
    cores = os.cpu_count() or 1
    machine = round(cores * busy / total, 2) if total > 0 else None
    ours = {role: round(t / hz / wall, 2) for role, t in sorted(by_role.items())}
    return {
        "machine_busy_cores": machine,
        "cores": cores,
        "by_component_cores": ours,
        "others_cores": round(machine - sum(ours.values()), 2) if machine is not None else None,
    }


# --- one benchmark point -----------------------------------------------------------------------
@dataclass
class Target:
    """The app under load: its submit template, and how each job's root promise is found on the
    server: by the promise-id scheme learned from the canary ("order-{job}": one paginated search
    per point), or, when the app's promise ids do not carry the job id (scheme None), by the
    ledger's dispatch records (job mark -> promise id), read one promise at a time."""

    app: Any  # harness.app.spec.AppSpec
    scheme: str | None  # e.g. "doc/{job}"
    ledger_dir: Path | None = None
    _tail: LedgerTail | None = field(default=None, init=False, repr=False, compare=False)

    @staticmethod
    def job(prefix: str, i: int) -> str:
        return f"{prefix}-{i:06d}"

    def request(self, prefix: str) -> Callable[[int], Request]:
        return lambda i: app_request(self.app, self.job(prefix, i), i)

    def pattern(self, prefix: str) -> str:
        assert self.scheme is not None
        return self.scheme.replace("{job}", f"{prefix}-*")

    def job_of(self, promise_id: str) -> str | None:
        if self.scheme is None:
            return None
        pre, _, post = self.scheme.partition("{job}")
        if (
            promise_id.startswith(pre)
            and promise_id.endswith(post)
            and len(promise_id) >= len(pre) + len(post)
        ):
            return promise_id[len(pre) : len(promise_id) - len(post)]
        return None

    def dispatched(self, jobs: set[str]) -> dict[str, str]:
        """job -> root promise id, from the ledger's dispatch records of these jobs."""
        if self.ledger_dir is None or not self.ledger_dir.is_dir():
            return {}
        if self._tail is None:
            self._tail = LedgerTail(self.ledger_dir)  # read incrementally: only what was appended since
        out: dict[str, str] = {}
        for r in self._tail.read():
            if r.get("ev") == "dispatch" and r.get("job") in jobs and r.get("id") and not r.get("error"):
                out.setdefault(r["job"], r["id"])
        return out

    def drain(self, server_api: str, prefix: str, jobs: set[str], timeout: float) -> bool:
        """Wait until no root promise of these jobs is pending; False on timeout."""
        if self.scheme is not None:
            return drain(server_api, self.pattern(prefix), timeout)
        done: set[str] = set()

        def none_pending() -> bool:
            roots = self.dispatched(jobs)
            for job in sorted(jobs - done):
                p = _promise(server_api, roots[job]) if job in roots else None
                if p is None or p.get("state") == "PENDING":
                    return False
                done.add(job)
            return True

        try:
            wait_until(none_pending, timeout=timeout, interval=0.25, expected=f"no pending {prefix} job",
                       seen=lambda: f"{len(jobs - done)} of {len(jobs)} jobs pending or not dispatched")  # fmt: skip
        except WaitTimeout:
            return False
        return True

    def resolved(self, server_api: str, prefix: str, jobs: set[str]) -> Iterator[tuple[str, dict[str, Any]]]:
        """(job, root promise) of each of these jobs whose root promise is resolved."""
        if self.scheme is not None:
            for p in _roots(server_api, self.pattern(prefix), "resolved"):
                job = self.job_of(p["id"])
                if job in jobs:
                    yield job, p
            return
        for job, root in sorted(self.dispatched(jobs).items()):
            p = _promise(server_api, root)
            if p is not None and str(p.get("state", "")).upper() == "RESOLVED":
                yield job, p


def _promise(server_api: str, promise_id: str) -> dict[str, Any] | None:
    """One promise by id; None when the server does not know it."""
    res = requests.get(f"{server_api}/promises/{quote(promise_id, safe='/')}", timeout=10)
    if res.status_code == 404:
        return None
    res.raise_for_status()
    body = res.json()
    return dict(body.get("promise", body)) if isinstance(body, dict) else None


def _server_get(server_api: str, params: dict[str, Any]) -> dict[str, Any]:
    res = requests.get(f"{server_api}/promises", params=params, timeout=10)
    res.raise_for_status()
    return dict(res.json())


def _roots(
    server_api: str, pattern: str, state: str | None = None, limit: int = 100
) -> Iterator[dict[str, Any]]:
    params: dict[str, Any] = {"id": pattern, "limit": limit, "tags[resonate:scope]": "global"}
    if state:
        params["state"] = state
    while True:
        body = _server_get(server_api, params)
        yield from body.get("promises") or []
        if not body.get("cursor") or limit < 100:
            return
        params = {"cursor": body["cursor"]}


def drain(server_api: str, pattern: str, timeout: float) -> bool:
    """Wait until no root promise matching `pattern` is pending; False on timeout."""
    try:
        wait_until(lambda: not any(True for _ in _roots(server_api, pattern, "pending", limit=1)),
                   timeout=timeout, interval=0.25, expected=f"no pending {pattern} job")  # fmt: skip
    except WaitTimeout:
        return False
    return True


@dataclass
class PointSpec:
    workers: int
    rate: float
    duration: float
    prefix: str


def run_point(
    gateway_url: str,
    server_api: str,
    spec: PointSpec,
    connections: int,
    drain_s: float,
    target: Target,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    schedule = constant_rate_schedule(spec.rate, spec.duration)
    label = f"{spec.workers} worker{'s' if spec.workers > 1 else ''} @ {spec.rate:g}/s"
    done = [0]

    def tick(_: Shot) -> None:
        done[0] += 1
        if progress and (done[0] % 10 == 0 or done[0] == len(schedule)):
            progress(label, done[0], len(schedule))

    cpu0 = cpu_snapshot()
    res = OpenLoop(gateway_url, connections=connections).run(
        schedule, target.request(spec.prefix), on_answer=tick
    )
    cpu1 = cpu_snapshot()
    st = load_stats(res, spec.rate, spec.duration, accepted)
    intended = {target.job(spec.prefix, s.i): res.wall(s.intended) for s in res.shots if accepted(s.status)}
    drained = target.drain(server_api, spec.prefix, set(intended), drain_s)
    completion = histogram()
    done_at: list[tuple[float, float]] = []  # (intended wall time, completion wall time)
    for job, p in target.resolved(server_api, spec.prefix, set(intended)):
        if p.get("completedOn"):
            t_done = p["completedOn"] / 1000
            done_at.append((intended[job], t_done))
            record(completion, max(0.0, t_done - intended[job]))
    completed = len(done_at)
    # completed jobs/s: completions in the send window shifted by the fastest completion latency
    shift = min((d - i for i, d in done_at), default=0.0)
    lo, hi = res.wall_start + shift, res.wall_start + spec.duration + shift
    completed_per_s = sum(1 for _, d in done_at if lo <= d < hi) / spec.duration
    # drain-inclusive processing rate: every completion over the time from the first send to the last
    last_done = max((d for _, d in done_at), default=res.wall_start)
    processed_per_s = completed / max(last_done - res.wall_start, spec.duration) if completed else 0.0
    timeline = Counter(int(d - res.wall_start) for _, d in done_at)
    early, late = _quarter_p50(done_at, first=True), _quarter_p50(done_at, first=False)
    reasons = []
    if completed_per_s < BEHIND_RATIO * spec.rate:
        reasons.append(f"completed {completed_per_s:.1f}/s < {BEHIND_RATIO:.0%} of offered")
    if not drained or completed < st.answered_ok:
        reasons.append(f"{st.answered_ok - completed} accepted jobs not done {drain_s:g}s after the load")
    if st.requests and sum(st.errors.values()) > 0.01 * st.requests:
        reasons.append(f"{sum(st.errors.values())} errors {st.errors}")
    if early is not None and late is not None and late > 2 * early + 0.5:
        reasons.append(
            f"completion latency grew from {early:.2f}s to {late:.2f}s (p50, first vs last quarter)"
        )
    return {
        "workers": spec.workers,
        **st.to_json(),
        "completed": completed,
        "incomplete": st.answered_ok - completed,
        "completed_per_s": round(completed_per_s, 2),
        "processed_per_s": round(processed_per_s, 2),
        "completions_per_second": [timeline.get(k, 0) for k in range(max(timeline, default=-1) + 1)],
        "completion_ms": summarize(completion, (50, 99)),
        "completion_p50_s_first_quarter": early,
        "completion_p50_s_last_quarter": late,
        "behind": bool(reasons),
        "why_behind": "; ".join(reasons),
        "drained": drained,
        "cpu": cpu_delta(cpu0, cpu1),
        "histograms": {"accept_us": _encode(st.accept), "completion_us": _encode(completion)},
    }


def _quarter_p50(done_at: list[tuple[float, float]], first: bool) -> float | None:
    ordered = sorted(done_at)
    q = len(ordered) // 4
    if q < 3:
        return None
    part = ordered[:q] if first else ordered[-q:]
    lat = sorted(d - i for i, d in part)
    return round(lat[len(lat) // 2], 3)


def _encode(hist: Any) -> str | None:
    if hist.get_total_count() == 0:
        return None
    raw = hist.encode()
    return raw.decode() if isinstance(raw, bytes) else str(raw)


# --- the sweep ---------------------------------------------------------------------------------
def _rates_for(args: argparse.Namespace) -> list[float] | None:
    if args.rates in (None, "auto"):
        return None
    return _floats(args.rates, "--rates")


def _floats(text: str, flag: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise HarnessError(f"{flag} as comma-separated numbers", seen=text) from None
    if not values or any(v <= 0 or not math.isfinite(v) for v in values):
        raise HarnessError(f"{flag} as comma-separated numbers > 0", seen=text)
    return values


def _ints(text: str, flag: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise HarnessError(f"{flag} as comma-separated whole numbers", seen=text) from None
    if not values or any(v < 1 for v in values):
        raise HarnessError(f"{flag} as comma-separated whole numbers >= 1", seen=text)
    return values


def sweep(args: argparse.Namespace, out: Path, log: Callable[[str], None]) -> dict[str, Any]:
    from harness.app.spec import REFERENCE_APP, AppSpec
    from harness.canary import run_canary
    from harness.cluster.base import ClusterConfig
    from harness.history import EventLog
    from harness.runner import make_cluster
    from harness.stack import get_stack

    app = AppSpec.load(args.app)
    reference = app.root == REFERENCE_APP

    workers = _ints(args.workers, "--workers")
    rates = _rates_for(args)
    if args.duration <= 0:
        raise HarnessError("--duration S with S > 0", seen=str(args.duration))
    stack = get_stack("legacy", args.server_bin)
    versions = stack.check_compatible()
    ceiling_rates = _floats(args.ceiling_rates, "--ceiling-rates")
    out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "kind": "harness-bench",
        "version": 1,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": shlex.join(["harness", "bench", *sys.argv[2:]]) if sys.argv[1:2] == ["bench"] else None,
        "config": {
            "workers": workers,
            "rates": rates or "auto",
            "duration_s": args.duration,
            "app": str(app.root),
            "step_seconds": args.step_seconds if reference else None,  # the reference app's knob only
            "gateway_instances": args.instances,
            "connections": args.connections,
            "drain_s": args.drain,
            "backend": args.backend,
            "seed": args.seed,
            "auto": {"start": args.start_rate, "factor": AUTO_FACTOR, "max_points": args.max_points}
            if rates is None
            else None,
        },
        "method": {
            "load": "open loop, constant rate: request i is due at start + i/rate whatever the answers",
            "latency_origin": "the intended send time (coordinated omission corrected)",
            "accept": "intended send -> the gateway's 2xx answer",
            "completion": "intended send -> completedOn of each job's root promise, resolved on the server (found "
            "by the app's promise-id scheme learned from a canary job, else by the ledger's dispatch records)",
            "completed_per_s": "completions in the send window shifted by the fastest completion latency",
            "processed_per_s": "all completions / (last completion - first intended send), drain included",
            "capacity": "per worker count, the best completed_per_s of its points (sustained under load)",
            "behind": f"completed/s < {BEHIND_RATIO:.0%} of offered, jobs not done after the drain, >1% errors, "
            "or completion latency p50 of the last quarter > 2x the first + 0.5s",
            "work": None,  # described from the canary's learned steps (work_description)
        },
        "environment": _environment(versions),
        "ceiling": None,
        "points": [],
    }
    per_n = len(rates) if rates else args.max_points + int(args.refine)
    total = len(workers) * per_n + (0 if args.no_ceiling else 1)
    with _Progress(total) as bar:
        if not args.no_ceiling:
            bar.point("harness ceiling (no-op endpoint)")
            result["ceiling"] = ceiling(ceiling_rates, CEILING_SECONDS, args.connections, bar.update,
                                        request=lambda i: app_request(app, Target.job("noop", i), i))  # fmt: skip
            c = result["ceiling"]
            log(
                f"harness ceiling: {c['max_rate'] or 'below ' + str(ceiling_rates[0])} req/s against a no-op "
                f"endpoint ({', '.join(_ceiling_line(p) for p in c['points'])})"
            )
            bar.advance()
        for n in workers:
            config = ClusterConfig(
                run_dir=out / f"cluster-w{n}",
                stack=stack,
                app=app,
                workers=n,
                ttl=args.ttl,
                gateway_instances=args.instances,
                extra_env={"WORKFLOW_STEP_SECONDS": str(args.step_seconds)} if reference else {},
            )
            bar.point(f"starting {n} worker{'s' if n > 1 else ''}")
            with make_cluster(args.backend, config) as cluster:
                events = EventLog(config.run_dir)
                try:
                    learned = run_canary(cluster, events, timeout=args.ttl + 30)
                finally:
                    events.close()
                target = Target(app, learned.scheme, config.ledger_dir)
                if learned.scheme is None:
                    log(f"  the canary's root promise {learned.root} does not carry its job id {learned.job}: "
                        "each job's root is found by the ledger's dispatch records")  # fmt: skip
                result["app"] = {**app.summary(), "promise_id_scheme": learned.scheme, "workflow": learned.workflow,
                                 "steps": learned.steps, "roots_from": "scheme" if learned.scheme else "ledger"}  # fmt: skip
                result["method"]["work"] = work_description(
                    app, learned, args.step_seconds if reference else None
                )
                warm = PointSpec(n, min(rates or [args.start_rate]), 2.0, f"warm{n}")
                run_point(cluster.gateway_url, cluster.server_api, warm, args.connections, args.drain, target)
                todo = (
                    list(rates)
                    if rates
                    else [args.start_rate * AUTO_FACTOR**k for k in range(args.max_points)]
                )
                kept: float | None = None
                k, refined = 0, False
                while k < len(todo):
                    rate = round(todo[k], 2)
                    spec = PointSpec(n, rate, args.duration, f"b{n}w{k}p{args.seed}")
                    bar.point(f"{n} worker{'s' if n > 1 else ''} @ {rate:g}/s")
                    point = run_point(
                        cluster.gateway_url,
                        cluster.server_api,
                        spec,
                        args.connections,
                        args.drain,
                        target,
                        bar.update,
                    )
                    result["points"].append(point)
                    log(_point_line(point))
                    bar.advance()
                    k += 1
                    if not point["behind"]:
                        kept = rate
                        continue
                    if rates is None and args.refine and kept is not None and not refined:
                        refined = True
                        # one more point between the last rate kept up with and this one: a sharper knee
                        todo.insert(k, math.sqrt(kept * rate))
                        todo[k + 1 :] = []
                        continue
                    if rates is None or not point["drained"]:
                        skipped = len(todo) - k
                        if skipped:
                            why = "knee found" if point["drained"] else "backlog not drained"
                            log(f"  {n} workers: {why}; skipping {skipped} higher rate(s)")
                        break
                bar.advance(max(0, per_n - k))
    result["summary"] = summarize_sweep(result["points"])
    result["cpu_context"] = cpu_context(result["points"])
    return result


def work_description(app: Any, learned: Any, step_seconds: str | None) -> str:
    """What one job does, from the canary's learned workflow and steps (`step_seconds`: the
    reference app's WORKFLOW_STEP_SECONDS, None for any other app)."""
    steps = _steps_text(learned.steps)
    name = f"workflow {learned.workflow or '?'}"
    if step_seconds is not None:
        return (
            f"the reference app's {name}: {steps}, each sleeping WORKFLOW_STEP_SECONDS={step_seconds}s (its "
            "--step-seconds), so the benchmark measures orchestration (gateway, Lambda dispatch, server, workers)"
        )
    return f"app {app.root.name}, {name}: {steps}, run as the app runs them (learned from a canary job)"


def _steps_text(steps: list[dict[str, Any]]) -> str:
    """'5 steps (price, weigh in pack, label in pack, price, ship [effect])' from the learned steps."""
    nested = {s["pos"]: s["fn"] for s in steps if s.get("kind") == "gen"}
    names = []
    for s in steps:
        if s.get("kind", "fn") != "fn":
            continue
        parent = nested.get(s["pos"].rpartition(".")[0])
        names.append(s["fn"] + (f" in {parent}" if parent else "") + (" [effect]" if s.get("effect") else ""))
    return f"{len(names)} step{'s' if len(names) != 1 else ''}" + (f" ({', '.join(names)})" if names else "")


def _work_title(result: dict[str, Any]) -> str:
    """A short name of the work per job, for plot titles and comparisons."""
    app = result.get("app") or {}
    steps = [s for s in app.get("steps") or [] if s.get("kind", "fn") == "fn"]
    name = Path(str(result.get("config", {}).get("app") or app.get("dir") or "the app")).name
    step = result.get("config", {}).get("step_seconds")
    if not steps:
        return f"{name}" + (f", steps x {step}s" if step else "")
    return f"{name}: {app.get('workflow') or '?'}, {len(steps)} steps" + (f" x {step}s" if step else "")


def _environment(versions: dict[str, str]) -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        model = next(
            (
                ln.split(":", 1)[1].strip()
                for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")
            ),
            "",
        )
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        "note": "the load generator, gateway, Lambda instances, server and workers share these CPUs",
    }


def summarize_sweep(points: list[dict[str, Any]]) -> dict[str, Any]:
    """Per worker count: capacity (best completed/s), knee, scaling efficiency against 1 worker."""
    by: dict[int, list[dict[str, Any]]] = {}
    for p in points:
        by.setdefault(p["workers"], []).append(p)
    out: dict[str, Any] = {}
    base = None
    for n in sorted(by):
        pts = sorted(by[n], key=lambda p: p["offered_rate"])
        capacity = max(p["completed_per_s"] for p in pts)
        behind = [p["offered_rate"] for p in pts if p["behind"]]
        kept = [p["offered_rate"] for p in pts if not p["behind"]]
        if n == 1:
            base = capacity
        out[str(n)] = {
            "capacity_jobs_per_s": capacity,
            "capacity_is_lower_bound": not behind,
            "knee_offered_rate": min(behind) if behind else None,
            "highest_rate_kept_up": max(kept) if kept else None,
            "scaling_efficiency": round(capacity / (n * base), 2) if base else None,
            "speedup": round(capacity / base, 2) if base else None,
        }
    return out


# --- progress, console lines ------------------------------------------------------------------
class _Progress:
    """Rich progress bars on stderr: one for the sweep, one for the point being run."""

    def __init__(self, total: int) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            TextColumn("{task.description:<34}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self.total = total
        self._lock = threading.Lock()

    def __enter__(self) -> _Progress:
        self.progress.start()
        self.sweep = self.progress.add_task("sweep", total=self.total)
        self.current = self.progress.add_task("", total=1)
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def point(self, label: str) -> None:
        self.progress.reset(self.current, description=label, total=None)

    def update(self, label: str, done: int, total: int) -> None:
        with self._lock:
            self.progress.update(self.current, description=label, completed=done, total=total)

    def advance(self, n: int = 1) -> None:
        self.progress.advance(self.sweep, n)


def _ceiling_line(p: dict[str, Any]) -> str:
    return f"{p['offered_rate']:g}/s -> {p['achieved_rate']:g}/s, lag p99 {p['lag_ms']['p99']} ms"


def _point_line(p: dict[str, Any]) -> str:
    a, c = p["accept_ms"], p["completion_ms"]
    return (
        f"  {p['workers']} workers @ {p['offered_rate']:g}/s: submitted {p['achieved_rate']:g}/s, completed "
        f"{p['completed_per_s']:g}/s, accept p50/p99 {a['p50']}/{a['p99']} ms, completion p50/p99 "
        f"{c['p50']}/{c['p99']} ms, errors {sum(p['errors'].values())}, cpu cores ours/all/available "
        f"{_cpu_cell(p['cpu'])}{' BEHIND: ' + p['why_behind'] if p['behind'] else ''}"
    )


def _cpu_cell(cpu: dict[str, Any]) -> str:
    """Cores busy: this harness's processes (SUT + load generator) / the whole machine / available."""
    ours = sum((cpu.get("by_component_cores") or {}).values())
    return f"{ours:.2f}/{_fmt(cpu.get('machine_busy_cores'))}/{cpu.get('cores', '?')}"


def cpu_context(points: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean CPU use over all points: ours by component, the machine, and other processes."""
    if not points:
        return {}
    n = len(points)
    comps: Counter[str] = Counter()
    for p in points:
        comps.update(p["cpu"]["by_component_cores"])
    machine = [p["cpu"]["machine_busy_cores"] for p in points if p["cpu"]["machine_busy_cores"] is not None]
    others = [p["cpu"]["others_cores"] for p in points if p["cpu"]["others_cores"] is not None]
    return {
        "cores": points[0]["cpu"]["cores"],
        "mean_machine_busy_cores": round(sum(machine) / len(machine), 2) if machine else None,
        "mean_ours_cores": round(sum(comps.values()) / n, 2),
        "mean_by_component_cores": {k: round(v / n, 2) for k, v in sorted(comps.items())},
        "mean_other_processes_cores": round(sum(others) / len(others), 2) if others else None,
        "max_other_processes_cores": max(others) if others else None,
    }


def _cpu_sentence(ctx: dict[str, Any]) -> str:
    if not ctx:
        return ""
    comps = ", ".join(f"{k} {v:g}" for k, v in ctx["mean_by_component_cores"].items())
    return (
        f"CPU during the load (mean over points, in cores of {ctx['cores']}): machine busy "
        f"{_fmt(ctx['mean_machine_busy_cores'])}; this harness {ctx['mean_ours_cores']:g} ({comps}); other "
        f"processes on the machine {_fmt(ctx['mean_other_processes_cores'])} (max "
        f"{_fmt(ctx['max_other_processes_cores'])})."
    )


# --- outputs: plots, summary, comparison -------------------------------------------------------


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plots(result: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = result["points"]
    groups: dict[int, list[dict[str, Any]]] = {}
    for p in pts:
        groups.setdefault(p["workers"], []).append(p)
    paths = []
    if not pts:
        return paths
    work = _work_title(result)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    top = max(p["offered_rate"] for p in pts)
    ax.plot([0, top], [0, top], color="grey", ls=":", lw=1, label="offered = completed")
    for n, g in sorted(groups.items()):
        g = sorted(g, key=lambda p: p["offered_rate"])
        x = [p["offered_rate"] for p in g]
        (line,) = ax.plot(x, [p["completed_per_s"] for p in g], marker="o", label=f"{n} workers: completed/s")
        ax.plot(
            x,
            [p["achieved_rate"] for p in g],
            ls="--",
            color=line.get_color(),
            alpha=0.6,
            label=f"{n} workers: accepted/s",
        )
    ax.set_xlabel("offered rate (jobs/s)")
    ax.set_ylabel("jobs/s")
    ax.set_title(f"Throughput vs offered load ({work})")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    paths.append(_save(fig, out / "throughput.png"))

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for n, g in sorted(groups.items()):
        g = sorted(g, key=lambda p: p["offered_rate"])
        x = [p["offered_rate"] for p in g]
        for ax, key, qs in (
            (axes[0], "accept_ms", ("p50", "p99")),
            (axes[1], "completion_ms", ("p50", "p99")),
        ):
            (line,) = ax.plot(x, [p[key][qs[0]] for p in g], marker="o", label=f"{n}w {qs[0]}")
            ax.plot(
                x,
                [p[key][qs[1]] for p in g],
                marker="^",
                ls="--",
                color=line.get_color(),
                label=f"{n}w {qs[1]}",
            )
    for ax, title in (
        (axes[0], "Accept latency (intended send -> 2xx)"),
        (axes[1], "Completion latency (intended send -> done)"),
    ):
        ax.set_yscale("log")
        ax.set_xlabel("offered rate (jobs/s)")
        ax.set_ylabel("ms (log)")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    paths.append(_save(fig, out / "latency.png"))

    summary = result.get("summary") or {}
    if summary:
        fig, ax = plt.subplots(figsize=(5.5, 4))
        ns = sorted(int(n) for n in summary)
        caps = [summary[str(n)]["capacity_jobs_per_s"] for n in ns]
        ax.plot(ns, caps, marker="o", label="measured capacity")
        if 1 in ns:
            ax.plot(ns, [caps[0] * n for n in ns], ls=":", color="grey", label="linear from 1 worker")
        ax.set_xscale("log", base=2)
        ax.set_xticks(ns, [str(n) for n in ns])
        ax.set_xlabel("workers")
        ax.set_ylabel("completed jobs/s (best point)")
        ax.set_title(f"Scaling ({result['environment']['cpus']} CPUs shared by everything)", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        paths.append(_save(fig, out / "scaling.png"))
    return paths


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{v:g}" if isinstance(v, float) else str(v)


def points_table(result: dict[str, Any]) -> list[list[str]]:
    rows = []
    for p in sorted(result["points"], key=lambda p: (p["workers"], p["offered_rate"])):
        a, c = p["accept_ms"], p["completion_ms"]
        cpu = p.get("cpu") or {}
        rows.append(
            [
                str(p["workers"]),
                _fmt(p["offered_rate"]),
                _fmt(p["achieved_rate"]),
                _fmt(p["completed_per_s"]),
                _fmt(a["p50"]),
                _fmt(a["p95"]),
                _fmt(a["p99"]),
                _fmt(a["max"]),
                _fmt(c["p50"]),
                _fmt(c["p99"]),
                str(sum(p["errors"].values())),
                _fmt(p["lag_ms"]["p99"]),
                _cpu_cell(cpu),
                "BEHIND" if p["behind"] else "ok",
            ]
        )
    return rows


POINT_COLUMNS = [
    "workers",
    "offered/s",
    "submitted/s",
    "completed/s",
    "accept p50 ms",
    "p95",
    "p99",
    "max",
    "completion p50 ms",
    "p99",
    "errors",
    "lag p99 ms",
    "cpu ours/all/cores",
    "keeps up",
]


def summary_markdown(result: dict[str, Any]) -> str:
    cfg, env = result["config"], result["environment"]
    lines = [
        "# harness bench",
        "",
        f"{env['cpus']} CPUs ({env['cpu_model'] or 'unknown model'}), load average at start "
        f"{env['loadavg_at_start']}; server {env['versions'].get('server')}, sdk {env['versions'].get('sdk')}. "
        "The load generator, gateway, Lambda instances, server and workers all share these CPUs.",
        "",
        f"Work per job: {result.get('method', {}).get('work') or '?'}. "
        f"Gateway: {cfg['gateway_instances']} Lambda instances. {cfg['duration_s']:g} s per point, open loop, "
        f"{cfg['connections']} connections; latencies from the intended send time (coordinated omission "
        "corrected).",
        "",
        _cpu_sentence(result.get("cpu_context") or {}),
        "",
    ]
    c = result.get("ceiling")
    if c:
        top = max((p["offered_rate"] for p in result["points"]), default=None)
        lines += [
            "## Harness ceiling",
            "",
            f"Against a {c['target']}: sustains **{_fmt(c['max_rate'])} req/s** ({c['criterion']})"
            + (
                f", {c['max_rate'] / top:.0f}x the highest rate offered to the SUT."
                if top and c["max_rate"]
                else "."
            ),
            "",
            "| offered/s | achieved/s | lag p50 ms | lag p99 ms | latency p99 ms |",
            "|---|---|---|---|---|",
        ]
        for p in c["points"]:
            lines.append(
                f"| {p['offered_rate']:g} | {p['achieved_rate']:g} | {_fmt(p['lag_ms']['p50'])} | "
                f"{_fmt(p['lag_ms']['p99'])} | {_fmt(p['accept_ms']['p99'])} |"
            )
        lines.append("")
    lines += [
        "## Per worker count",
        "",
        "| workers | capacity jobs/s | knee (offered/s) | speedup | efficiency |",
        "|---|---|---|---|---|",
    ]
    for n, s in sorted(result.get("summary", {}).items(), key=lambda kv: int(kv[0])):
        cap = f"{s['capacity_jobs_per_s']:g}{'+' if s['capacity_is_lower_bound'] else ''}"
        knee = (
            _fmt(s["knee_offered_rate"]) if s["knee_offered_rate"] else f"> {_fmt(s['highest_rate_kept_up'])}"
        )
        lines.append(f"| {n} | {cap} | {knee} | {_fmt(s['speedup'])} | {_fmt(s['scaling_efficiency'])} |")
    lines += [
        "",
        "(`+`: never fell behind, the capacity is a lower bound.)",
        "",
        "## Points",
        "",
        "| " + " | ".join(POINT_COLUMNS) + " |",
        "|" + "---|" * len(POINT_COLUMNS),
    ]
    lines += ["| " + " | ".join(r) + " |" for r in points_table(result)]
    behind = [p for p in result["points"] if p["behind"]]
    if behind:
        lines += ["", "Why points fell behind:", ""]
        lines += [f"- {p['workers']} workers @ {p['offered_rate']:g}/s: {p['why_behind']}" for p in behind]
    cpu_lines = [
        f"- {p['workers']} workers @ {p['offered_rate']:g}/s: "
        + ", ".join(f"{k} {v:g}" for k, v in p["cpu"]["by_component_cores"].items())
        + f" (others {p['cpu']['others_cores']})"
        for p in result["points"]
    ]
    lines += [
        "",
        "## CPU by component (cores, during the load)",
        "",
        *cpu_lines,
        "",
        "![throughput](throughput.png) ![latency](latency.png) ![scaling](scaling.png)",
        "",
    ]
    return "\n".join(lines)


def load_bench(path: Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        path = path / BENCH_JSON
    try:
        data = json.loads(path.read_text())
    except OSError as e:
        raise HarnessError("a bench.json file (or a directory holding one)", seen=str(e)) from e
    except json.JSONDecodeError as e:
        raise HarnessError("a readable bench.json", seen=f"{path}: {e}") from e
    if not isinstance(data, dict) or "points" not in data:
        raise HarnessError("a bench.json written by harness bench", seen=str(path))
    return data


def compare(a: dict[str, Any], b: dict[str, Any]) -> list[list[str]]:
    """Rows: per (workers, offered rate) in either file, A vs B side by side with the change."""

    def key(p: dict[str, Any]) -> tuple[int, float]:
        return p["workers"], round(p["offered_rate"], 3)

    pa, pb = {key(p): p for p in a["points"]}, {key(p): p for p in b["points"]}
    rows = []
    for k in sorted(set(pa) | set(pb)):
        x, y = pa.get(k), pb.get(k)

        def get(p: dict[str, Any] | None, path: tuple[str, ...]) -> Any:
            for part in path:
                p = p.get(part) if isinstance(p, dict) else None
            return p

        row = [str(k[0]), f"{k[1]:g}"]
        for path in (
            ("completed_per_s",),
            ("accept_ms", "p99"),
            ("completion_ms", "p50"),
            ("completion_ms", "p99"),
        ):
            va, vb = get(x, path), get(y, path)
            row += [_fmt(va), _fmt(vb), _delta(va, vb)]
        row.append(
            f"{'B' if x and x['behind'] else '-'}/{'B' if y and y['behind'] else '-'}" if x or y else ""
        )
        rows.append(row)
    for n in sorted(set(a.get("summary", {})) | set(b.get("summary", {})), key=int):
        ca = a.get("summary", {}).get(n, {}).get("capacity_jobs_per_s")
        cb = b.get("summary", {}).get(n, {}).get("capacity_jobs_per_s")
        rows.append([n, "capacity", _fmt(ca), _fmt(cb), _delta(ca, cb)] + [""] * 9 + [""])
    return rows


COMPARE_COLUMNS = [
    "workers",
    "offered/s",
    "A completed/s",
    "B",
    "change",
    "A accept p99 ms",
    "B",
    "change",
    "A completion p50 ms",
    "B",
    "change",
    "A completion p99 ms",
    "B",
    "change",
    "behind A/B",
]


def _delta(a: Any, b: Any) -> str:
    if not isinstance(a, int | float) or not isinstance(b, int | float):
        return ""
    if a == 0:
        return "" if b == 0 else "new"
    return f"{100 * (b - a) / a:+.0f}%"


def print_compare(path_a: Path, path_b: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    a, b = load_bench(path_a), load_bench(path_b)
    t = Table(title=f"harness bench: A = {path_a}  vs  B = {path_b}")
    for col in COMPARE_COLUMNS:
        t.add_column(col, justify="right")
    for row in compare(a, b):
        t.add_row(*row)
    console = Console(width=200)
    console.print(t)
    for label, d in (("A", a), ("B", b)):
        cfg, env = d.get("config", {}), d.get("environment", {})
        console.print(
            f"{label}: {d.get('created')} {_work_title(d)}, {cfg.get('duration_s')}s/point, "
            f"{cfg.get('gateway_instances')} instances, {env.get('cpus')} CPUs, "
            f"ceiling {(d.get('ceiling') or {}).get('max_rate')} req/s, other processes on the CPUs "
            f"{(d.get('cpu_context') or {}).get('mean_other_processes_cores', '?')} cores on average"
        )


# --- command line ------------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--app", type=Path, metavar="DIR", help="the app under test (default: the reference app)")
    p.add_argument(
        "--workers", default=DEFAULT_WORKERS, help=f"worker counts to sweep (default {DEFAULT_WORKERS})"
    )
    p.add_argument(
        "--rates",
        default="auto",
        help="offered rates in jobs/s, e.g. 5,10,20 (default auto: "
        f"{AUTO_START_RATE:g}, x{AUTO_FACTOR:g} each point, stop at the first that falls behind)",
    )
    p.add_argument("--start-rate", type=float, default=AUTO_START_RATE, help="first rate of the auto ramp")
    p.add_argument(
        "--max-points",
        type=int,
        default=AUTO_MAX_POINTS,
        help="most points of the auto ramp per worker count",
    )
    p.add_argument(
        "--no-refine",
        dest="refine",
        action="store_false",
        help="auto ramp: no extra point between the last rate kept up with and the first missed",
    )
    p.add_argument("--duration", type=float, default=DEFAULT_DURATION, help="seconds of load per point")
    p.add_argument(
        "--step-seconds",
        default=DEFAULT_STEP_SECONDS,
        help="the reference app's knob only: its WORKFLOW_STEP_SECONDS (seconds each step sleeps; other apps "
        "run their steps as they are and ignore it)",
    )
    p.add_argument("--instances", type=int, default=DEFAULT_INSTANCES, help="gateway Lambda instances")
    p.add_argument("--connections", type=int, default=DEFAULT_CONNECTIONS, help="load generator connections")
    p.add_argument(
        "--drain", type=float, default=30.0, help="most seconds to wait for completions after a point"
    )
    p.add_argument("--ttl", type=int, default=10, help="worker task lease (s)")
    p.add_argument("--ceiling-rates", default=CEILING_RATES, help="rates for the harness-ceiling run")
    p.add_argument("--no-ceiling", action="store_true", help="skip the harness-ceiling run")
    p.add_argument("--backend", default="process", choices=["process", "docker"])
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", type=Path, help="output directory (default runs/bench-<time>)")
    p.add_argument("--server-bin", help="Resonate server binary")
    p.add_argument("--compare", nargs=2, type=Path, metavar=("A", "B"), help="compare two bench.json files")


def main(args: argparse.Namespace) -> int:
    if args.compare:
        print_compare(*args.compare)
        return 0
    from harness.install import ensure_tools

    if args.instances < 1 or args.connections < 1 or args.max_points < 1 or args.start_rate <= 0:
        raise HarnessError("--instances, --connections, --max-points >= 1 and --start-rate > 0")
    ensure_tools(args.server_bin)
    out = Path(args.out or Path.cwd() / "runs" / f"bench-{time.strftime('%Y%m%d-%H%M%S')}").absolute()

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    log(
        f"harness bench: app {args.app or 'reference'}, workers {args.workers}, rates {args.rates}, "
        f"{args.duration:g}s per point, {args.instances} gateway instances, {os.cpu_count()} CPUs; output {out}"
    )
    result = sweep(args, out, log)
    (out / BENCH_JSON).write_text(json.dumps(result, indent=1))
    written = plots(result, out)
    (out / "summary.md").write_text(summary_markdown(result))
    _print_summary(result)
    for path in [out / BENCH_JSON, out / "summary.md", *written]:
        print(path)
    return 0


def _print_summary(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="harness bench")
    for col in POINT_COLUMNS:
        t.add_column(col, justify="right")
    for row in points_table(result):
        t.add_row(*row)
    console = Console(width=200)
    console.print(t)
    for n, s in sorted(result["summary"].items(), key=lambda kv: int(kv[0])):
        knee = (
            _fmt(s["knee_offered_rate"]) if s["knee_offered_rate"] else f"> {_fmt(s['highest_rate_kept_up'])}"
        )
        console.print(
            f"{n} workers: capacity {s['capacity_jobs_per_s']:g}{'+' if s['capacity_is_lower_bound'] else ''}"
            f" jobs/s, knee {knee}/s, speedup {_fmt(s['speedup'])}, efficiency {_fmt(s['scaling_efficiency'])}"
        )
    console.print(_cpu_sentence(result.get("cpu_context") or {}))
    c = result.get("ceiling")
    if c:
        console.print(
            f"harness ceiling: {_fmt(c['max_rate'])} req/s against a no-op endpoint "
            f"({'; '.join(_ceiling_line(p) for p in c['points'])})"
        )


def _noop_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.bench noop")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--stall-after", type=int, default=0, help="stall the whole server at the N-th request")
    p.add_argument("--stall-for", type=float, default=0.0, help="seconds the stall lasts")
    a = p.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_noop_serve(a.port, a.stall_after, a.stall_for))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["noop"]:
        sys.exit(_noop_main(sys.argv[2:]))
    sys.exit("usage: python -m harness.bench noop [--port P] [--stall-after N --stall-for S]")
