"""Synthetic histories for the checks' own tests: a healthy run, then doctored copies of it."""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path
from typing import Any

from harness.history import History
from harness.load import make_jobs
from workflow import steps

STEP_FUNCS = (
    lambda job, prev: steps.download_document(job),
    lambda job, prev: steps.extract_text(job, prev[1]),
    lambda job, prev: steps.analyze_document(job, prev[2]),
    lambda job, prev: steps.store_results(job, prev[3]["summary"], prev[3]["data"]),
    lambda job, prev: steps.notify_requester(job, prev[4]),
)


def encode(value: Any) -> dict[str, str]:
    return {"data": base64.b64encode(json.dumps(value).encode()).decode()}


class FakeRun:
    """Builds a history the way a legacy-stack run would leave it, step by step."""

    def __init__(self, verdicts: list[str] | None = None) -> None:
        import random

        self.rng = random.Random(1)
        self.t = 1000.0
        self.events: list[dict[str, Any]] = []
        self.ledger: list[dict[str, Any]] = []
        self.promises: dict[str, dict[str, Any]] = {}
        self.sink: list[dict[str, Any]] = []
        self.meta = {"scenario": "synthetic", "stack": "legacy", "settings": {"liveness_deadline_s": 30},
                     "verdicts": verdicts or []}  # fmt: skip
        self.event("phase", name="load")

    def tick(self, dt: float = 0.1) -> float:
        self.t += dt
        return self.t

    def event(self, kind: str, **fields: Any) -> dict[str, Any]:
        rec = {"kind": kind, "t": self.tick(), **fields}
        self.events.append(rec)
        return rec

    def new_job(self) -> dict[str, Any]:
        job = make_jobs(self.rng, 1, f"j{len(self.events)}")[0]
        self.event("job", job=job, expected=steps.expected_result(job))
        return job

    def submit(self, job: dict[str, Any], mode: str = "unique", status: int = 202,
               root_id: str | None = None) -> None:  # fmt: skip
        jid = job["jobId"]
        self.event("submit", job_id=jid, sub=len(self.events), mode=mode)
        body = {"status": "accepted", "jobId": jid, "statusUrl": f"/status/{jid}"} if status == 202 else {}
        self.event(
            "response", job_id=jid, sub=len(self.events), mode=mode, status=status, body=body, latency=0.01
        )
        rid = root_id or f"doc/{jid}"
        if status == 202 and rid not in self.promises:
            param = encode({"func": "process_document", "args": {"py/tuple": [job]}, "kwargs": {}})
            self.promises[rid] = {"id": rid, "state": "PENDING", "param": param, "value": {},
                                  "tags": {"resonate:scope": "global", "resonate:root": rid}}  # fmt: skip

    def execute(self, job: dict[str, Any], step: int, worker: str = "worker-1", pid: int = 11,
                end: bool = True, root_id: str | None = None) -> str:  # fmt: skip
        """One execution of a step (end=False: interrupted); a completed one is checkpointed."""
        jid = job["jobId"]
        attempt = uuid.uuid4().hex
        base = {"job": jid, "step": step, "name": steps.STEP_NAMES[step - 1], "attempt": attempt,
                "worker": worker, "pid": pid}  # fmt: skip
        self.ledger.append({"ev": "start", "t": self.tick(), **base})
        if end:
            value = self.value(job, step)
            self.ledger.append({"ev": "end", "t": self.tick(), "value": value, **base})
            if step in (4, 5):
                self.sink.append({"job_id": jid, "kind": "stored" if step == 4 else "notified",
                                  "value": str(value), "worker": worker, "attempt": attempt, "t": self.t})  # fmt: skip
            rid = root_id or f"doc/{jid}"
            cid = f"{rid}.{step}"
            self.promises.setdefault(cid, {"id": cid, "state": "RESOLVED", "param": {}, "value": encode(value),
                                           "completedOn": int(self.tick(0.01) * 1000),
                                           "tags": {"resonate:scope": "local", "resonate:root": rid}})  # fmt: skip
        return attempt

    def value(self, job: dict[str, Any], step: int) -> Any:
        prev: dict[int, Any] = {}
        for k in range(1, step + 1):
            prev[k] = STEP_FUNCS[k - 1](job, prev)
        return prev[step]

    def finish(self, job: dict[str, Any], root_id: str | None = None, value: Any = None) -> None:
        """The root promise resolves and the client sees `done`."""
        rid = root_id or f"doc/{job['jobId']}"
        result = value if value is not None else steps.expected_result(job)
        self.promises[rid].update(state="RESOLVED", value=encode(result), completedOn=int(self.tick() * 1000))
        self.event("completed", job_id=job["jobId"], result=result)

    def run_job(self, job: dict[str, Any], worker: str = "worker-1", pid: int = 11) -> None:
        for step in range(1, 6):
            self.execute(job, step, worker, pid)
        self.finish(job)

    def fault(self, fault: str, target: str, **fields: Any) -> dict[str, Any]:
        return self.event("fault", fault=fault, target=target, **fields)

    def history(self, tmp: Path | None = None) -> History:
        return History(run_dir=tmp or Path("."), meta=self.meta, events=list(self.events),
                       ledger=sorted(self.ledger, key=lambda r: r["t"]),
                       promises=sorted(self.promises.values(), key=lambda p: p["id"]), sink=list(self.sink))  # fmt: skip
