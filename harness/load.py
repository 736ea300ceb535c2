"""Load: what is submitted when, all drawn from one seed, always through the gateway, in the shape the
app's config gives (its submit and status templates)."""

from __future__ import annotations

import http.client
import json
import queue
import random
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
from tenacity import Retrying, retry_if_result, stop_after_attempt, wait_incrementing

from harness.app.spec import AppSpec
from harness.errors import HarnessError, WaitTimeout
from harness.history import EventLog
from harness.waiting import wait_until

LOST_AFTER_MISSING = 3  # status answers 'unknown job' this many times in a row: the job is lost
DIE_AFTER_HANDLER = "/_gateway/faults/die-after-handler"


def make_jobs(rng: random.Random, n: int, prefix: str = "job") -> list[dict[str, Any]]:
    """n unique jobs ({"jobId": ...}); the ids come from `rng`, so a seed repeats the same mix."""
    return [{"jobId": f"{prefix}-{i:03d}-{rng.getrandbits(32):08x}"} for i in range(n)]


class Client:
    """Submits jobs and polls status through the gateway as the app's config says, logging every
    request and answer. Each submission carries the harness's marks (X-Harness-Sub, X-Harness-Job),
    which the gateway hands to the Lambda instance beside the event, never to the app."""

    def __init__(self, gateway_url: str, events: EventLog, app: AppSpec, timeout: float = 35,
                 log_status: bool = False, mark: dict[str, Any] | None = None) -> None:  # fmt: skip
        self.url = gateway_url
        self.events = events
        self.app = app
        self.timeout = timeout
        self.log_status = log_status  # log every status poll as a `status` event
        self.mark = mark or {}  # extra fields on every logged event (the canary's `canary: true`)
        self._local = threading.local()
        self._seq = 0
        self._n = 0
        self._lock = threading.Lock()

    def _session(self) -> requests.Session:
        if not hasattr(self._local, "s"):
            self._local.s = requests.Session()
        return self._local.s

    def register(self, jobs: Iterable[dict[str, Any]]) -> None:
        """Give each job its index in the run and its request body; log it (`job` event)."""
        for job in jobs:
            with self._lock:
                self._n += 1
                job["n"] = self._n
            method, path, headers, body = self.app.request(job["jobId"], job["n"])
            job.update(method=method, path=path, headers=headers, body=body)
            self.events.append("job", job_id=job["jobId"], n=job["n"], method=method, path=path, body=body,
                               **self.mark)  # fmt: skip

    def submit(self, job: dict[str, Any], mode: str = "unique", **fields: Any) -> dict[str, Any]:
        """Submit the job once; `fields` (e.g. case="concurrent") go into both logged events."""
        if "method" not in job:
            self.register([job])
        with self._lock:
            self._seq += 1
            sub = self._seq
        job_id = job["jobId"]
        self.events.append("submit", job_id=job_id, sub=sub, mode=mode, **fields, **self.mark)
        marks = {"X-Harness-Sub": str(sub), "X-Harness-Job": job_id}
        t0 = time.time()
        try:
            res = self._session().request(job["method"], f"{self.url}{job['path']}", json=job["body"],
                                          headers={**job["headers"], **marks}, timeout=self.timeout)  # fmt: skip
            status, body = res.status_code, _json(res)
            instance, request = res.headers.get("x-harness-instance"), res.headers.get("x-amzn-RequestId")
        except requests.RequestException as e:
            status, body, instance, request = 0, {"error": str(e)}, None, None
        return self.events.append(
            "response", job_id=job_id, sub=sub, mode=mode, status=status, body=body, latency=time.time() - t0,
            instance=instance, request_id=request, **fields, **self.mark,
        )  # fmt: skip

    def submit_until_accepted(
        self,
        job: dict[str, Any],
        mode: str = "unique",
        attempts: int = 5,
        backoff: float = 0.2,
        **fields: Any,
    ) -> list[dict[str, Any]]:
        """Submit; on a lost answer (none, or 5xx) retry with mode `retry` until a 2xx or 4xx answer."""
        answers: list[dict[str, Any]] = []

        def send() -> dict[str, Any]:
            first = not answers
            extra = fields if first else {**fields, "retry_of": answers[0]["sub"]}
            answers.append(self.submit(job, mode if first else "retry", **extra))
            return answers[-1]

        Retrying(
            stop=stop_after_attempt(attempts),
            wait=wait_incrementing(start=backoff, increment=backoff),
            retry=retry_if_result(lambda a: a["status"] == 0 or a["status"] >= 500),
            retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
        )(send)
        return answers

    def status(self, job_id: str) -> dict[str, Any]:
        """One status poll: {"http": code, "answer": JSON body, "done": bool}."""
        method, path = self.app.status_request(job_id)
        try:
            res = self._session().request(method, f"{self.url}{path}", timeout=self.timeout)
            answer = _json(res)
            st = {
                "http": res.status_code,
                "answer": answer,
                "done": res.status_code == 200 and self.app.is_done(answer),
            }
        except requests.RequestException as e:
            st = {"http": 0, "answer": {"error": str(e)}, "done": False}
        if self.log_status:
            field = self.app.done_field
            self.events.append("status", job_id=job_id, http=st["http"], done=st["done"],
                               status=str(st["answer"].get(field.split(".")[0]))[:60], **self.mark)  # fmt: skip
        return st

    # --- the gateway's fault hook ----------------------------------------------------------
    def arm_instance_death(self, job_id: str, status: int = 502) -> dict[str, Any]:
        """Arm: the next invocation for `job_id` dies after its handler returned (client sees `status`)."""
        try:
            res = requests.post(f"{self.url}{DIE_AFTER_HANDLER}", json={"jobId": job_id, "status": status},
                                timeout=5)  # fmt: skip
            res.raise_for_status()
        except requests.RequestException as e:
            raise HarnessError("the gateway's fault hook (POST /_gateway/faults/die-after-handler)",
                               seen=str(e), hint="is the gateway harness.gateway?") from e  # fmt: skip
        armed = res.json()
        self.events.append("fault-armed", fault="lambda-die-after-handler", job=job_id, status=status,
                           fault_id=armed.get("id"))  # fmt: skip
        return armed

    def gateway_faults(self) -> dict[str, Any]:
        """Armed and fired gateway faults (GET /_gateway/faults)."""
        try:
            res = requests.get(f"{self.url}/_gateway/faults", timeout=5)
            res.raise_for_status()
            return dict(res.json())
        except requests.RequestException as e:
            raise HarnessError("the gateway's fault list (GET /_gateway/faults)", seen=str(e)) from e

    def log_instance_deaths(self, seen: set[str]) -> list[dict[str, Any]]:
        """Log a `fault` event for every fired gateway fault not in `seen` (fault ids; updated)."""
        out = []
        for f in self.gateway_faults()["fired"]:
            if f["id"] in seen:
                continue
            seen.add(f["id"])
            out.append(self.events.append(
                "fault", fault="lambda-death", target=f["instance"], job=f["jobId"], instance_pid=f["pid"],
                status=f["status"], handler_status=f["handler_status"], fault_id=f["id"], at=f["at"],
            ))  # fmt: skip
        return out

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
        """Poll status until every job is done; log `completed` for each; WaitTimeout otherwise.

        A job whose status route answers 'unknown job' (the config's [status] missing, 404) several
        times in a row though it was accepted is lost: HarnessError at once, rather than waiting out
        the timeout."""
        pending = set(job_ids)
        done: dict[str, float] = {}
        unknown: dict[str, int] = {}
        missing = self.app.missing_status

        def all_done() -> bool:
            for job_id in sorted(pending):
                st = self.status(job_id)
                if st["done"]:
                    self.events.append("completed", job_id=job_id, result=self.app.result_of(st["answer"]),
                                       **self.mark)  # fmt: skip
                    done[job_id] = time.time()
                    pending.discard(job_id)
                unknown[job_id] = unknown.get(job_id, 0) + 1 if st["http"] == missing else 0
            lost = sorted(j for j in pending if unknown.get(j, 0) >= LOST_AFTER_MISSING)
            if lost:  # accepted, yet the status route says the job was never submitted
                self.events.append("lost", job_ids=lost, **self.mark)
                raise HarnessError(
                    f"every accepted job known to the status route ({self.app.status_method} {self.app.status_path})",
                    seen=f"{len(lost)} answered {missing} {LOST_AFTER_MISSING} times, e.g. {lost[:3]}",
                    hint="the handler dispatched them under another promise id than it polls, or the server lost them",
                )
            return not pending

        try:
            wait_until(all_done, timeout=timeout, interval=poll, expected=f"{len(pending)} jobs done",
                       seen=lambda: f"{len(pending)} still processing, e.g. {sorted(pending)[:3]}",
                       hint="look at the worker and server logs in the run directory")  # fmt: skip
        except WaitTimeout:
            self.events.append("incomplete", job_ids=sorted(pending), **self.mark)
            raise
        return done


# --- open-loop load: intended send times fixed in advance, latency measured from them -----------
def constant_rate_schedule(rate: float, duration: float) -> list[float]:
    """Intended send offsets (seconds from the start) of a constant-rate open-loop load."""
    if rate <= 0 or duration <= 0:
        raise ValueError("rate and duration must be > 0")
    return [i / rate for i in range(max(1, round(rate * duration)))]


@dataclass
class Shot:
    """One open-loop request. Times are time.perf_counter() seconds."""

    i: int
    intended: float
    sent: float = 0.0
    answered: float = 0.0
    status: int = 0  # 0: no answer (connection error or timeout)
    error: str | None = None

    @property
    def latency(self) -> float:
        """Coordinated-omission corrected: from the intended send time to the answer."""
        return self.answered - self.intended

    @property
    def service_time(self) -> float:
        """Uncorrected: from the actual send to the answer (hides a stalled server)."""
        return self.answered - self.sent

    @property
    def lag(self) -> float:
        """How late the request left compared to its schedule."""
        return self.sent - self.intended


@dataclass
class OpenLoopResult:
    shots: list[Shot]
    start: float  # perf_counter at offset 0
    wall_start: float  # time.time() at offset 0
    connections: int
    extra: dict[str, Any] = field(default_factory=dict)

    def wall(self, t: float) -> float:
        """A perf_counter time as a time.time() (the server's promises carry wall-clock ms)."""
        return self.wall_start + (t - self.start)


# a whole request: (method, path, headers, body)
Request = tuple[str, str, dict[str, str], bytes]


def app_request(app: Any, job: str, n: int) -> Request:
    """The app's submission of job `job`, the run's n-th (its [submit] template), as an OpenLoop
    request. It carries the harness's job mark (X-Harness-Job), which the gateway strips from the
    app's event and hands to the Lambda instance, so the ledger's dispatch records name the job."""
    method, path, headers, body = app.request(job, n)
    data = b"" if body is None else json.dumps(body).encode()
    return method, path, {"Content-Type": "application/json", **headers, "X-Harness-Job": job}, data


class OpenLoop:
    """Constant-rate (open-loop) HTTP load: a dispatcher releases each request at its intended
    time to a pool of sender threads, each on its own keep-alive connection. A slow answer never
    delays the schedule; when every sender is busy the request leaves late, and its latency,
    measured from the intended time, includes that wait (coordinated omission corrected).

    `run`'s `body(i)` makes request i: a whole Request (the app's own, see app_request), or bare
    JSON bytes sent as `method` `path` (default POST /, for a no-op endpoint)."""

    def __init__(self, url: str, method: str = "POST", path: str = "/",
                 connections: int = 64, timeout: float = 35.0) -> None:  # fmt: skip
        u = urlsplit(url)
        self.host, self.port = u.hostname or "127.0.0.1", u.port or 80
        self.method, self.path = method, path
        self.connections = connections
        self.timeout = timeout

    def run(
        self,
        schedule: list[float],
        body: Callable[[int], bytes | Request],
        on_answer: Callable[[Shot], None] | None = None,
        stop: threading.Event | None = None,
    ) -> OpenLoopResult:
        """Send request i at start + schedule[i]; return when every request has been answered."""
        shots = [Shot(i, 0.0) for i in range(len(schedule))]
        work: queue.SimpleQueue[Shot | None] = queue.SimpleQueue()
        senders = [threading.Thread(target=self._sender, args=(work, body, on_answer), daemon=True,
                                    name=f"openloop-{k}") for k in range(self.connections)]  # fmt: skip
        for t in senders:
            t.start()
        start = time.perf_counter() + 0.05
        wall_start = time.time() + (start - time.perf_counter())
        for shot, offset in zip(shots, schedule, strict=True):
            shot.intended = start + offset
            delay = shot.intended - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            if stop is not None and stop.is_set():
                shots = shots[: shot.i]
                break
            work.put(shot)
        for _ in senders:
            work.put(None)
        for t in senders:
            t.join()
        return OpenLoopResult(shots, start, wall_start, self.connections)

    def _sender(self, work: queue.SimpleQueue[Shot | None], body: Callable[[int], bytes | Request],
                on_answer: Callable[[Shot], None] | None) -> None:  # fmt: skip
        conn: http.client.HTTPConnection | None = None
        plain = {"Content-Type": "application/json"}
        while (shot := work.get()) is not None:
            made = body(shot.i)
            method, path, headers, data = (
                made if isinstance(made, tuple) else (self.method, self.path, plain, made)
            )
            shot.sent = time.perf_counter()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                conn.request(method, path, body=data, headers=headers)
                res = conn.getresponse()
                res.read()
                shot.status = res.status
                if res.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as e:
                shot.status, shot.error = 0, f"{type(e).__name__}: {e}"
                if conn is not None:
                    conn.close()
                conn = None
            shot.answered = time.perf_counter()
            if on_answer is not None:
                on_answer(shot)
        if conn is not None:
            conn.close()


def _json(res: requests.Response) -> dict[str, Any]:
    try:
        body = res.json()
        return body if isinstance(body, dict) else {"body": body}
    except ValueError:
        return {"text": res.text[:200]}
