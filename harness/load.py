"""Load: what is submitted when, all drawn from one seed, always through the gateway."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests

from harness.errors import HarnessError, WaitTimeout
from harness.history import EventLog
from workflow.steps import expected_result

DOC_TYPES = ("invoice", "contract", "receipt", "report")
LOST_AFTER_404S = 3


def make_jobs(rng: random.Random, n: int, prefix: str = "job") -> list[dict[str, Any]]:
    """n unique jobs; the ids and fields come from `rng`, so a seed repeats the same mix."""
    jobs = []
    for i in range(n):
        tag = rng.getrandbits(32)
        jobs.append(
            {
                "jobId": f"{prefix}-{i:03d}-{tag:08x}",
                "documentUrl": f"https://docs.example/{tag:08x}.pdf",
                "requesterId": rng.choice(["alice", "bob", "carol", "dave"]),
                "type": rng.choice(DOC_TYPES),
            }
        )
    return jobs


class Client:
    """Submits jobs and polls status through the gateway, logging every request and answer."""

    def __init__(self, gateway_url: str, events: EventLog, timeout: float = 35) -> None:
        self.url = gateway_url
        self.events = events
        self.timeout = timeout
        self._local = threading.local()
        self._seq = 0
        self._lock = threading.Lock()

    def _session(self) -> requests.Session:
        if not hasattr(self._local, "s"):
            self._local.s = requests.Session()
        return self._local.s

    def register(self, jobs: Iterable[dict[str, Any]]) -> None:
        """Log each job with its independently computed expected result."""
        for job in jobs:
            self.events.append("job", job=job, expected=expected_result(job))

    def submit(self, job: dict[str, Any], mode: str = "unique") -> dict[str, Any]:
        with self._lock:
            self._seq += 1
            sub = self._seq
        job_id = job["jobId"]
        self.events.append("submit", job_id=job_id, sub=sub, mode=mode)
        t0 = time.time()
        try:
            res = self._session().post(f"{self.url}/process-document", json=job, timeout=self.timeout)
            status, body, instance = res.status_code, _json(res), res.headers.get("x-harness-instance")
        except requests.RequestException as e:
            status, body, instance = 0, {"error": str(e)}, None
        return self.events.append(
            "response", job_id=job_id, sub=sub, mode=mode, status=status, body=body, latency=time.time() - t0,
            instance=instance,
        )  # fmt: skip

    def status(self, job_id: str) -> dict[str, Any]:
        try:
            res = self._session().get(f"{self.url}/status/{job_id}", timeout=self.timeout)
            return {"http": res.status_code, **_json(res)}
        except requests.RequestException as e:
            return {"http": 0, "error": str(e)}

    def burst(
        self, jobs: list[dict[str, Any]], copies: int = 1, mode: str = "unique", concurrency: int = 16
    ) -> list[dict[str, Any]]:
        """Submit every job `copies` times; the copies of one job are sent at the same moment."""
        plan = [(job, mode if c == 0 else "dup") for job in jobs for c in range(copies)]
        barrier = {j["jobId"]: threading.Barrier(copies) for j in jobs} if copies > 1 else {}

        def one(item: tuple[dict[str, Any], str]) -> dict[str, Any]:
            job, m = item
            if job["jobId"] in barrier:
                barrier[job["jobId"]].wait(timeout=30)
            return self.submit(job, m)

        width = max(concurrency, copies)
        with ThreadPoolExecutor(max_workers=width) as pool:
            return list(pool.map(one, plan))

    def wait_done(self, job_ids: Iterable[str], timeout: float, poll: float = 0.25) -> dict[str, float]:
        """Poll status until every job is done; log `completed` for each; WaitTimeout otherwise."""
        pending = set(job_ids)
        done: dict[str, float] = {}
        unknown: dict[str, int] = {}
        deadline = time.monotonic() + timeout
        while pending:
            for job_id in sorted(pending):
                st = self.status(job_id)
                if st.get("status") == "done":
                    self.events.append("completed", job_id=job_id, result=st.get("result"))
                    done[job_id] = time.time()
                    pending.discard(job_id)
                unknown[job_id] = unknown.get(job_id, 0) + 1 if st.get("http") == 404 else 0
            lost = sorted(j for j in pending if unknown.get(j, 0) >= LOST_AFTER_404S)
            if lost:  # accepted, yet the status route says the job was never submitted
                self.events.append("lost", job_ids=lost)
                raise HarnessError(
                    "every accepted job known to the status route (GET /status/<jobId>)",
                    seen=f"{len(lost)} answered 404 {LOST_AFTER_404S} times, e.g. {lost[:3]}",
                    hint="the gateway dispatched them under another promise id, or the server lost them",
                )
            if not pending:
                break
            if time.monotonic() > deadline:
                self.events.append("incomplete", job_ids=sorted(pending))
                raise WaitTimeout(
                    f"{len(done) + len(pending)} jobs done within {timeout:g}s",
                    seen=f"{len(pending)} still processing, e.g. {sorted(pending)[:3]}",
                    hint="look at the worker and server logs in the run directory",
                )
            time.sleep(poll)
        return done


def _json(res: requests.Response) -> dict[str, Any]:
    try:
        body = res.json()
        return body if isinstance(body, dict) else {"body": body}
    except ValueError:
        return {"text": res.text[:200]}
