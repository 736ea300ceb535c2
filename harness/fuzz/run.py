"""Running the corpus against an app: a cluster (runner.session, its canary done), every case as raw
HTTP through the gateway with bounded concurrency, then the status of every accepted case polled until
done, lost or a deadline. What was sent and seen goes to ``fuzz.json`` in the run directory; the
verdict and the per-case table are computed from the run directory alone (harness.fuzz.analyze).
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import shlex
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from harness.app.spec import AppSpec, expand
from harness.errors import HarnessError, WaitTimeout
from harness.fuzz.analyze import FUZZ_FILE, analyze, print_report
from harness.fuzz.corpus import ROUTE, STATUS, Case, build_corpus, quoted
from harness.history import LedgerTail, snapshot_promises
from harness.load import LOST_AFTER_MISSING
from harness.runner import RESULTS, RunContext, Settings, check_run, session
from harness.waiting import wait_until

SUB_BASE = 100_000  # the cases' submission marks (X-Harness-Sub), apart from the canary's
GATEWAY_TIMEOUT_S = 5.0  # short, so a hanging handler shows as a 504 quickly
THROTTLE_WAIT_S = 10.0  # the gateway's wait for an idle instance before 429 (its default)
POLL_FAILURES = 3  # status polls answering 5xx / nothing in a row: give up on the job
BODY_KEPT = 4096  # bodies up to this size are kept in fuzz.json (base64), larger ones as a digest


def fuzz_settings() -> Settings:
    """A few gateway instances (the canary proves the instrumentation), two workers, a short timeout."""
    return Settings(workers=2, gateway_instances=3, gateway_timeout_s=GATEWAY_TIMEOUT_S)


def send(base_url: str, method: str, path: str, body: bytes | None, headers: dict[str, str],
         timeout: float) -> dict[str, Any]:  # fmt: skip
    """One raw HTTP request: {"status" (None: no answer), "answer", "latency", "hang", "error", ...}."""
    u = urlsplit(base_url)
    conn = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port or 80, timeout=timeout)
    t0 = time.perf_counter()
    out: dict[str, Any] = {"status": None, "answer": "", "parsed": {}, "hang": False, "error": None}
    try:
        conn.request(method, path, body=body, headers=headers)
        res = conn.getresponse()
        data = res.read()
        out.update(status=res.status, answer=data[:300].decode("utf-8", "replace"), parsed=_json(data),
                   instance=res.getheader("x-harness-instance"), request_id=res.getheader("x-amzn-RequestId"))  # fmt: skip
    except TimeoutError:
        out.update(hang=True, error=f"no answer within {timeout:g}s")
    except (OSError, http.client.HTTPException) as e:
        out["error"] = f"{type(e).__name__}: {e}"
    finally:
        conn.close()
    out["latency"] = round(time.perf_counter() - t0, 3)
    return out


def _body_record(body: bytes | None) -> dict[str, Any]:
    if body is None:
        return {"body_bytes": None}
    rec: dict[str, Any] = {"body_bytes": len(body), "body_sha1": hashlib.sha1(body).hexdigest()}
    if len(body) <= BODY_KEPT:
        rec["body_b64"] = base64.b64encode(body).decode("ascii")
    return rec


class FuzzRun:
    """Sends the corpus through a running cluster and polls what was accepted."""

    def __init__(
        self, ctx: RunContext, spec: AppSpec, corpus: list[Case], seed: int, deadline_s: float
    ) -> None:
        self.ctx, self.spec, self.corpus, self.seed, self.deadline_s = ctx, spec, corpus, seed, deadline_s
        self.url = ctx.cluster.gateway_url
        self.timeout = GATEWAY_TIMEOUT_S + THROTTLE_WAIT_S + 5  # a hang: no answer within this
        self.width = ctx.settings.gateway_instances  # one request per Lambda instance: no throttling
        self.rows: dict[str, dict[str, Any]] = {}

    def run(self) -> dict[str, Any]:
        baseline_dir = self.ctx.run_dir / "fuzz-baseline"
        baseline_dir.mkdir(exist_ok=True)
        baseline = [p["id"] for p in snapshot_promises(self.ctx.cluster.server_api, baseline_dir)]
        self.ctx.phase("fuzz-send", cases=len(self.corpus))
        with ThreadPoolExecutor(max_workers=self.width) as pool:
            for row in pool.map(self.one, enumerate(self.corpus)):
                self.rows[row["id"]] = row
            self.ctx.phase("fuzz-poll", accepted=sum(1 for r in self.rows.values() if _ok(r["status"])))
            self.poll(pool)
        data = {"seed": self.seed,
                "gateway_timeout_s": GATEWAY_TIMEOUT_S, "request_timeout_s": self.timeout, "deadline_s": self.deadline_s,
                "missing_status": self.spec.missing_status, "done": {"field": self.spec.done_field,
                                                                      "equals": self.spec.done_equals},
                "baseline": baseline, "cases": [self.rows[c.id] for c in self.corpus]}  # fmt: skip
        (self.ctx.run_dir / FUZZ_FILE).write_text(json.dumps(data, indent=1))
        return data

    def one(self, item: tuple[int, Case]) -> dict[str, Any]:
        i, case = item
        sub = SUB_BASE + i
        events = self.ctx.events
        events.append("job", job_id=case.id, n=i, method=case.method, path=case.path, body=case.preview(),
                      fuzz=case.category)  # fmt: skip
        events.append("submit", job_id=case.id, sub=sub, mode="fuzz")
        headers = {"Content-Type": "application/json", **dict(case.headers), "X-Harness-Sub": str(sub),
                   "X-Harness-Job": case.id}  # fmt: skip
        res = send(self.url, case.method, case.path, case.body, headers, self.timeout)
        res.pop("parsed", None)
        events.append("response", job_id=case.id, sub=sub, mode="fuzz", status=res["status"] or 0,
                      body=res["answer"][:200], latency=res["latency"], instance=res.get("instance"),
                      request_id=res.get("request_id"), error=res["error"])  # fmt: skip
        return {"id": case.id, "category": case.category, "description": case.description, "method": case.method,
                "path": case.path, "kind": case.kind, "expect": case.expect, "job": case.job, "sub": sub,
                "body_preview": case.preview(), **_body_record(case.body), **res, "poll": None}  # fmt: skip

    def poll(self, pool: ThreadPoolExecutor) -> None:
        """Poll the status of every accepted case that carries a job id until done, lost or the deadline.
        A route case is polled only if its request dispatched something (a 200 landing page is fine)."""
        dispatched = {r.get("job") for r in LedgerTail(self.ctx.cluster.config.ledger_dir).read()
                      if r["ev"] == "dispatch"}  # fmt: skip
        pending = {cid: row for cid, row in self.rows.items()
                   if _ok(row["status"]) and row["kind"] != STATUS and isinstance(row["job"], str)
                   and (row["kind"] != ROUTE or cid in dispatched)}  # fmt: skip
        for row in pending.values():
            row["poll"] = {"path": expand(self.spec.status_path, {"job": quoted(row["job"]), "n": 0}), "polls": 0,
                           "missing": 0, "failed": 0, "done": False, "lost": False, "gave_up": False, "last": None}  # fmt: skip
        t0 = time.monotonic()

        def check(cid: str) -> tuple[str, dict[str, Any]]:
            p = self.rows[cid]["poll"]
            return cid, send(
                self.url, self.spec.status_method, p["path"], None, {"X-Harness-Job": cid}, self.timeout
            )

        def round_done() -> bool:
            for cid, res in pool.map(check, sorted(pending)):
                p = self.rows[cid]["poll"]
                p["polls"] += 1
                p["last"] = {"http": res["status"], "answer": res["answer"][:160], "error": res["error"]}
                if _ok(res["status"]) and self.spec.is_done(res["parsed"]):
                    p.update(done=True, done_after_s=round(time.monotonic() - t0, 3))
                    self.ctx.events.append("completed", job_id=cid, result=self.spec.result_of(res["parsed"]))
                    del pending[cid]
                    continue
                p["missing"] = p["missing"] + 1 if res["status"] == self.spec.missing_status else 0
                p["failed"] = p["failed"] + 1 if res["status"] is None or res["status"] >= 500 else 0
                if p["missing"] >= LOST_AFTER_MISSING:
                    p["lost"] = True
                    self.ctx.events.append("lost", job_ids=[cid])
                    del pending[cid]
                elif p["failed"] >= POLL_FAILURES:
                    p["gave_up"] = True
                    del pending[cid]
            return not pending

        try:
            wait_until(round_done, timeout=self.deadline_s, interval=0.3,
                       expected=f"every accepted fuzz case done ({self.spec.status_method} {self.spec.status_path})",
                       seen=lambda: f"{len(pending)} still not done, e.g. {sorted(pending)[:3]}")  # fmt: skip
        except WaitTimeout as e:
            self.ctx.events.append("incomplete", job_ids=sorted(pending), detail=e.oneline())


def _ok(status: int | None) -> bool:
    return status is not None and 200 <= status < 300


def _json(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def reproduce(app: Path | str | None, backend: str, seed: int, cases: int | None, deadline: float) -> str:
    words = ["harness", "fuzz", "--backend", backend, "--seed", str(seed), "--deadline", f"{deadline:g}"]
    if app is not None:
        words += ["--app", str(Path(app).expanduser().resolve())]
    if cases is not None:
        words += ["--cases", str(cases)]
    return shlex.join(words)


def fuzz(*, app: Path | str | None = None, backend: str = "process", seed: int = 7, out: Path | None = None,
         cases: int | None = None, deadline: float = 30.0, server_bin: Path | str | None = None,
         log: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True)) -> tuple[Path, dict[str, Any]]:  # fmt: skip
    """Run the corpus against the app; (run directory, results) with the `fuzz` verdict and table."""
    if cases is not None and cases < 1:
        raise HarnessError("--cases N with N >= 1", seen=str(cases))
    if deadline <= 0:
        raise HarnessError("--deadline S with S > 0", seen=f"{deadline:g}")
    spec = AppSpec.load(app)
    corpus = build_corpus(spec, seed, cases)
    log(f"harness: fuzz corpus of {len(corpus)} cases from {spec.config}")
    with session("fuzz", [], fuzz_settings(), app=app, backend=backend, seed=seed, out=out,
                 server_bin=server_bin, log=log, command=reproduce(app, backend, seed, cases, deadline)) as ctx:  # fmt: skip
        started = time.monotonic()
        FuzzRun(ctx, spec, corpus, seed, deadline).run()
        log(f"harness: fuzz: {len(corpus)} cases sent and polled in {time.monotonic() - started:.1f}s")
    results = check_run(ctx.run_dir)
    report = analyze(ctx.run_dir)
    results["verdicts"]["fuzz"] = report["verdict"]
    results["figures"].update(report["figures"])
    results["fuzz"] = report["rows"]
    results["fuzz_unexplained_promises"] = report["unexplained"]
    (ctx.run_dir / RESULTS).write_text(json.dumps(results, indent=1))
    return ctx.run_dir, results


def main(args: Any) -> int:
    """`harness fuzz`: exit 0 no problem, 1 a case shows a problem (HarnessError -> 2 in the CLI)."""
    run_dir, results = fuzz(app=args.app, backend=args.backend, seed=args.seed, out=args.out, cases=args.cases,
                            deadline=args.deadline, server_bin=args.server_bin)  # fmt: skip
    print_report(results, run_dir)
    return 0 if all(v["ok"] for v in results["verdicts"].values()) else 1
