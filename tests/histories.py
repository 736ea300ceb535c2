"""Synthetic histories for the checks' own tests: a healthy run, then doctored copies of it.

They are shaped the way a run leaves them: the harness's events, the ledger the SDK-boundary hooks
write (dispatch, body, start/end, effect, call records), the server's promises, the app's effects
and the offline replay. The app here is a generic five-step workflow `wf` with an effect at step 4.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import uuid
from pathlib import Path
from typing import Any

from harness.history import History
from harness.load import make_jobs

STEPS = {"1": "fetch", "2": "parse", "3": "score", "4": "save", "5": "tell"}
EFFECT_STEP = "4"


def encode(value: Any) -> dict[str, str]:
    return {"data": base64.b64encode(json.dumps(value).encode()).decode()}


def digest(value: Any) -> str:
    return hashlib.sha1(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def step_value(job: str, pos: str) -> str:
    return f"{STEPS.get(pos, pos)}({job})"


def final_value(job: str) -> dict[str, Any]:
    return {"job": job, "steps": [step_value(job, p) for p in STEPS]}


class FakeRun:
    """Builds a history the way a legacy-stack run would leave it, step by step."""

    def __init__(self, verdicts: list[str] | None = None, effects: bool = True) -> None:
        self.rng = random.Random(1)
        self.t = 1000.0
        self.events: list[dict[str, Any]] = []
        self.ledger: list[dict[str, Any]] = []
        self.promises: dict[str, dict[str, Any]] = {}
        self.effects: list[dict[str, Any]] = []
        self.replay: dict[str, Any] = {"roots": {}, "expected": {}, "error": None}
        self.entries: dict[str, str] = {}  # root -> the current body entry
        self.meta = {"scenario": "synthetic", "stack": "legacy", "settings": {"liveness_deadline_s": 30},
                     "verdicts": verdicts or [], "app": {"effects": {"kinds": ["saved"]} if effects else None}}  # fmt: skip
        self.event("phase", name="load")

    def tick(self, dt: float = 0.1) -> float:
        self.t += dt
        return self.t

    def event(self, kind: str, **fields: Any) -> dict[str, Any]:
        rec = {"kind": kind, "t": self.tick(), **fields}
        self.events.append(rec)
        return rec

    def record(self, ev: str, worker: str, pid: int, **fields: Any) -> dict[str, Any]:
        rec = {"ev": ev, "t": self.tick(), "worker": worker, "pid": pid, **fields}
        self.ledger.append(rec)
        return rec

    def new_job(self) -> dict[str, Any]:
        job = make_jobs(self.rng, 1, f"j{len(self.events)}")[0]
        self.event("job", job_id=job["jobId"], n=len(self.events), body={"id": job["jobId"]})
        return job

    def root(self, job: dict[str, Any]) -> str:
        return f"wf/{job['jobId']}"

    def submit(self, job: dict[str, Any], mode: str = "unique", status: int = 202,
               root_id: str | None = None) -> None:  # fmt: skip
        jid = job["jobId"]
        sub = len(self.events)
        self.event("submit", job_id=jid, sub=sub, mode=mode)
        rid = root_id or self.root(job)
        if status == 202:
            created = rid not in self.promises
            self.record(
                "dispatch", "lambda-1", 5, id=rid, fn="wf", job=jid, sub=sub, created=created, error=None
            )
            if created:
                param = encode({"func": "wf", "args": [{"id": jid}], "kwargs": {}})
                self.promises[rid] = {"id": rid, "state": "PENDING", "param": param, "value": {},
                                      "tags": {"resonate:scope": "global", "resonate:root": rid}}  # fmt: skip
        body = {"status": "accepted", "id": jid} if status == 202 else {"error": "bad"}
        self.event("response", job_id=jid, sub=sub, mode=mode, status=status, body=body, latency=0.01)

    def enter(
        self, job: dict[str, Any], worker: str = "worker-1", pid: int = 11, root_id: str | None = None
    ) -> str:
        """A (re-)entry of the job's workflow body on a worker."""
        rid = root_id or self.root(job)
        entry = self.entries[rid] = uuid.uuid4().hex
        self.record("body", worker, pid, root=rid, id=rid, pos="", fn="wf", entry=entry)
        return entry

    def execute(self, job: dict[str, Any], step: int | str, worker: str = "worker-1", pid: int = 11,
                end: bool = True, root_id: str | None = None, value: Any = None) -> str:  # fmt: skip
        """One execution of a step (end=False: interrupted); a completed one is checkpointed."""
        pos = str(step)
        rid = root_id or self.root(job)
        if rid not in self.entries:
            self.enter(job, worker, pid, rid)
        ex = uuid.uuid4().hex
        base = {"root": rid, "id": f"{rid}.{pos}", "pos": pos, "fn": STEPS.get(pos, "extra"), "exec": ex,
                "args": f"in-{pos}"}  # fmt: skip
        self.record("start", worker, pid, **base)
        if end:
            v = step_value(job["jobId"], pos) if value is None else value
            if pos == EFFECT_STEP:
                self.record("effect", worker, pid, **base, effect="write")
                self.effects.append({"job": job["jobId"], "effect": "saved"})
            self.record("end", worker, pid, **base, value=v, vd=digest(v))
            self.promises.setdefault(base["id"], {"id": base["id"], "state": "RESOLVED", "param": {}, "value": encode(v),
                                                  "completedOn": int(self.tick(0.01) * 1000),
                                                  "tags": {"resonate:scope": "local", "resonate:root": rid}})  # fmt: skip
        return ex

    def call(self, job: dict[str, Any], fn: str, after: str, worker: str = "worker-1", pid: int = 11,
             ctx_arg: bool = True) -> None:  # fmt: skip
        """A call from the workflow body straight into an app function (not through ctx.run)."""
        rid = self.root(job)
        self.record("call", worker, pid, root=rid, id=rid, entry=self.entries[rid], after=f"{rid}.{after}" if after else "",
                    fn=fn, ctx_arg=ctx_arg, file="app.py")  # fmt: skip

    def finish(self, job: dict[str, Any], root_id: str | None = None, value: Any = None) -> None:
        """The root promise resolves, the client sees `done`; the offline replay agrees."""
        rid = root_id or self.root(job)
        result = final_value(job["jobId"]) if value is None else value
        self.promises[rid].update(state="RESOLVED", value=encode(result), completedOn=int(self.tick() * 1000))
        self.replay["roots"][rid] = {
            "fn": "wf", "asked": [{"id": f"{rid}.{p}", "pos": p, "fn": fn, "kind": "local"} for p, fn in STEPS.items()],
            "subs": {}, "incomplete": False, "error": None, "value": final_value(job["jobId"]),
            "vd": digest(final_value(job["jobId"])),
        }  # fmt: skip
        self.event("completed", job_id=job["jobId"], result=result)

    def run_job(self, job: dict[str, Any], worker: str = "worker-1", pid: int = 11) -> None:
        for step in STEPS:
            self.execute(job, step, worker, pid)
        self.finish(job)

    def fault(self, fault: str, target: str, **fields: Any) -> dict[str, Any]:
        return self.event("fault", fault=fault, target=target, **fields)

    def history(self, tmp: Path | None = None) -> History:
        return History(run_dir=tmp or Path("."), meta=self.meta, events=list(self.events),
                       ledger=sorted(self.ledger, key=lambda r: r["t"]),
                       promises=sorted(self.promises.values(), key=lambda p: p["id"]),
                       effects={"rows": list(self.effects), "error": None, "declared": True},
                       replay=json.loads(json.dumps(self.replay)))  # fmt: skip
