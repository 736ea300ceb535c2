"""The history of a run: everything the checks may read, all of it files in the run directory.

- `events.jsonl`: the harness's own log (jobs, submissions, responses, status polls, faults, phases).
- `ledger/*.jsonl`: what the app's processes did, recorded at the SDK boundary (harness.agent.hooks):
  dispatches by Lambda instances, step executions, workflow-body entries, failpoints, effects.
- `promises.json`: the server's promises of the run, read over its HTTP API at the end.
- `effects.json`: the app's external effects per job, counted as its config declares.
- `replay.json`: the offline replay of the app's workflow with the server's checkpoints.
- `run.json`: what was run (scenario, backend, seed, versions, settings, what was learned of the app).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import requests

from harness.errors import HarnessError
from harness.stack import LegacyStack, get_stack, position_key

EVENTS = "events.jsonl"
PROMISES = "promises.json"
RUN_META = "run.json"
EFFECTS = "effects.json"
REPLAY = "replay.json"


class EventLog:
    """Append-only, thread-safe JSON-lines log of what the harness did and saw."""

    ECHOED = ("phase", "fault", "heal", "armed", "worker-exit", "lost", "error")

    def __init__(self, run_dir: Path, echo: Callable[[str], None] | None = None) -> None:
        self.path = run_dir / EVENTS
        self.t0 = time.time()
        self.echo = echo  # progress lines for a person watching a long run
        self._lock = threading.Lock()
        self._f = open(self.path, "a", buffering=1)  # noqa: SIM115 - closed in close()

    def append(self, kind: str, **fields: Any) -> dict[str, Any]:
        rec = {"kind": kind, "t": time.time(), **fields}
        line = json.dumps(rec, sort_keys=True, default=str)
        with self._lock:
            self._f.write(line + "\n")
        if self.echo is not None and kind in self.ECHOED:
            what = " ".join(
                f"{k}={v}" for k, v in fields.items() if k not in ("trace", "attempt", "expected")
            )
            self.echo(f"harness: +{rec['t'] - self.t0:6.1f}s {kind} {what}")
        return rec

    def close(self) -> None:
        with self._lock:
            self._f.close()


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Records of a JSON-lines file; a torn last line (writer killed mid-write) is skipped."""
    out = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def read_ledger(ledger_dir: Path) -> list[dict[str, Any]]:
    records = [r for p in sorted(ledger_dir.glob("*.jsonl")) for r in read_jsonl(p)]
    return sorted(records, key=lambda r: r["t"])


class LedgerTail:
    """The ledger of a running cluster, read incrementally: each call reads only what was appended
    since the last one (complete lines only), for live fault targeting during a run."""

    def __init__(self, ledger_dir: Path) -> None:
        self.dir = ledger_dir
        self._offsets: dict[Path, int] = {}
        self._records: list[dict[str, Any]] = []

    def read(self) -> list[dict[str, Any]]:
        """Every record so far, in time order."""
        fresh = []
        for path in sorted(self.dir.glob("*.jsonl")):
            offset = self._offsets.get(path, 0)
            with open(path, "rb") as f:
                f.seek(offset)
                data = f.read()
            complete = data[: data.rfind(b"\n") + 1]  # a line being written is read next time
            self._offsets[path] = offset + len(complete)
            for line in complete.splitlines():
                with contextlib.suppress(json.JSONDecodeError):
                    fresh.append(json.loads(line))
        if fresh:
            self._records = sorted(self._records + fresh, key=lambda r: r["t"])
        return self._records


def snapshot_promises(server_api: str, run_dir: Path, pattern: str = "*") -> list[dict[str, Any]]:
    """Read every promise matching `pattern` from the server (paginated) into promises.json."""
    promises: list[dict[str, Any]] = []
    params: dict[str, Any] = {"id": pattern, "limit": 100}
    while True:
        try:
            res = requests.get(f"{server_api}/promises", params=params, timeout=10)
            res.raise_for_status()
        except requests.RequestException as e:
            raise HarnessError(f"the server's promise list at {server_api}", seen=str(e)) from e
        body = res.json()
        promises.extend(body.get("promises") or [])
        if not body.get("cursor"):
            break
        params = {"cursor": body["cursor"]}
    promises.sort(key=lambda p: p["id"])
    (run_dir / PROMISES).write_text(json.dumps(promises, indent=1))
    return promises


@dataclass(frozen=True)
class Execution:
    """One execution of a step: a function run through ctx.run (kind "fn"), or one entry of a
    generator sub-step's body (kind "gen")."""

    job: str
    root: str
    id: str  # the child promise id (the checkpoint)
    pos: str  # its position under the root: "3", "4.1"
    fn: str
    exec: str  # execution id (an entry id for a generator)
    worker: str
    pid: int
    start: float
    end: float | None
    vd: str | None = None  # digest of the value it returned (None: it did not end, or raised)
    value: Any = None
    args: str | None = None
    error: str | None = None
    kind: str = "fn"

    @property
    def step(self) -> str:
        return f"step {self.pos} ({self.fn})"


def load_json(path: Path, default: Any) -> Any:
    return json.loads(path.read_text()) if path.exists() else default


@dataclass
class History:
    """A loaded run: the only input of the checks."""

    run_dir: Path
    meta: dict[str, Any]
    events: list[dict[str, Any]]
    ledger: list[dict[str, Any]]
    promises: list[dict[str, Any]]
    effects: dict[str, Any] = field(default_factory=dict)  # {"rows": [{"job", "effect", ...}], "error"}
    replay: dict[str, Any] = field(default_factory=dict)  # replay.json
    canary: list[dict[str, Any]] = field(default_factory=list)  # the start-up canary's events

    @classmethod
    def load(cls, run_dir: Path) -> History:
        run_dir = Path(run_dir)
        meta_path = run_dir / RUN_META
        if not meta_path.exists():
            raise HarnessError(f"a run directory with {RUN_META}", seen=f"none in {run_dir}")
        events = read_jsonl(run_dir / EVENTS) if (run_dir / EVENTS).exists() else []
        ledger_dir = run_dir / "ledger"
        return cls(
            run_dir=run_dir,
            meta=json.loads(meta_path.read_text()),
            events=[e for e in events if not e.get("canary")],
            ledger=read_ledger(ledger_dir) if ledger_dir.is_dir() else [],
            promises=load_json(run_dir / PROMISES, []),
            effects=load_json(run_dir / EFFECTS, {}),
            replay=load_json(run_dir / REPLAY, {}),
            canary=[e for e in events if e.get("canary")],
        )

    # --- the harness's own events ----------------------------------------------------------
    @property
    def stack(self) -> LegacyStack:
        """The Resonate generation the run used: how to read its promises."""
        return get_stack(self.meta.get("stack", "legacy"))

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return self._kinds.get(kind, [])

    @cached_property
    def _kinds(self) -> dict[str, list[dict[str, Any]]]:
        grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for e in self.events:
            grouped[e["kind"]].append(e)
        return grouped

    def by_job(self, kind: str) -> defaultdict[str, list[dict[str, Any]]]:
        """Events of one kind grouped by their job_id (an absent job gets an empty list)."""
        grouped: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
        for e in self.of_kind(kind):
            grouped[e["job_id"]].append(e)
        return grouped

    @cached_property
    def _jobs(self) -> dict[str, dict[str, Any]]:
        return {e["job_id"]: e for e in self.of_kind("job")}

    def jobs(self) -> dict[str, dict[str, Any]]:
        """Every job the harness submitted, by job id, with the body it was submitted with."""
        return self._jobs

    @cached_property
    def _accepted(self) -> set[str]:
        return {e["job_id"] for e in self.of_kind("response") if 200 <= e.get("status", 0) < 300}

    def accepted(self) -> set[str]:
        """Jobs a submission of which was accepted (a 2xx answer)."""
        return self._accepted

    def faults(self) -> list[dict[str, Any]]:
        return self.of_kind("fault")

    # --- what the app's processes recorded -------------------------------------------------
    @cached_property
    def _ledger(self) -> dict[str, list[dict[str, Any]]]:
        grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in self.ledger:
            grouped[r["ev"]].append(r)
        return grouped

    def records(self, ev: str) -> list[dict[str, Any]]:
        return self._ledger.get(ev, [])

    @cached_property
    def _roots(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = defaultdict(list)
        for d in self.records("dispatch"):
            job = d.get("job")
            if job in self._jobs and d.get("id") and d["id"] not in out[job] and d.get("error") is None:
                out[job].append(d["id"])
        return out

    def roots_of(self, job: str) -> list[str]:
        """The root promise ids the Lambda instances dispatched for this job's submissions."""
        return self._roots.get(job, [])

    @cached_property
    def job_of(self) -> dict[str, str]:
        """Root promise id -> the job it was dispatched for."""
        return {root: job for job, roots in self._roots.items() for root in roots}

    def dispatches_of(self, job: str) -> list[dict[str, Any]]:
        return [d for d in self.records("dispatch") if d.get("job") == job]

    @cached_property
    def _by_job(self) -> dict[str, list[dict[str, Any]]]:
        grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in self.ledger:
            job = self.job_of.get(r.get("root", ""))
            if job is not None:
                grouped[job].append(r)
        return grouped

    def ledger_of(self, job: str) -> list[dict[str, Any]]:
        """Ledger records (steps, bodies, failpoints, effects) under this job's roots, in time order."""
        return self._by_job.get(job, [])

    @cached_property
    def _executions(self) -> dict[str, list[Execution]]:
        out: dict[str, list[Execution]] = {}
        for job, records in self._by_job.items():
            starts: dict[str, dict[str, Any]] = {}
            ends: dict[str, dict[str, Any]] = {}
            for r in records:
                if r["ev"] == "start":
                    starts[r["exec"]] = r
                elif r["ev"] == "end":
                    ends[r["exec"]] = r
                elif r["ev"] == "body" and r["id"] != r["root"]:
                    starts[r["entry"]] = {**r, "exec": r["entry"], "kind": "gen"}
                elif r["ev"] == "body-end" and r["id"] != r["root"]:
                    ends[r["entry"]] = {**r, "error": None if r.get("ok") else r.get("error")}
            runs = []
            for ex, s in starts.items():
                e = ends.get(ex, {})
                runs.append(Execution(job, s["root"], s["id"], s["pos"], s["fn"], ex, s["worker"], s["pid"], s["t"],
                                      e.get("t"), e.get("vd"), e.get("value"), s.get("args"), e.get("error"),
                                      s.get("kind", "fn")))  # fmt: skip
            out[job] = sorted(runs, key=lambda x: x.start)
        return out

    def executions(self, job: str) -> list[Execution]:
        """Every execution of every step of a job, in start order."""
        return self._executions.get(job, [])

    def bodies(self, job: str) -> list[dict[str, Any]]:
        """Entries of the job's workflow body (the first run and every replay)."""
        return [r for r in self.ledger_of(job) if r["ev"] == "body" and r["id"] == r["root"]]

    def steps(self, job: str) -> dict[str, str]:
        """Position -> function of the steps this job ran, in position order."""
        seen = {x.pos: x.fn for x in self.executions(job)}
        return dict(sorted(seen.items(), key=lambda kv: position_key(kv[0])))

    # --- the server's promises -------------------------------------------------------------
    @cached_property
    def promise(self) -> dict[str, dict[str, Any]]:
        return {p["id"]: p for p in self.promises}

    @cached_property
    def _children(self) -> dict[str, list[dict[str, Any]]]:
        stack = self.stack
        out: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for p in self.promises:
            root = stack.root_of(p)
            if root and root != p["id"]:
                out[root].append(p)
        return out

    def children(self, root: str) -> list[dict[str, Any]]:
        """The checkpoints under a root promise (child promises tagged with it)."""
        return self._children.get(root, [])
