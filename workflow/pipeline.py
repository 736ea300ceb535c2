"""The durable document pipeline run by the worker group (as in the seeds).

Each `yield ctx.run(step, ...)` is a checkpoint: a child promise `doc/<jobId>.<n>` on the server.
The step bodies are the pure functions of `steps`; each takes WORKFLOW_STEP_SECONDS (one value, or
five comma-separated ones); store_results and notify_requester write to the idempotent sink.
"""

from __future__ import annotations

import os
import time
from collections.abc import Generator
from typing import Any

import sink
import steps
from resonate import Context

Job = dict[str, Any]


def _duration(step: int) -> float:
    values = [float(x) for x in os.environ.get("WORKFLOW_STEP_SECONDS", "0.2").split(",")]
    return values[0] if len(values) == 1 else values[step - 1]


def _work(step: int) -> None:
    time.sleep(_duration(step))


def download_document(ctx: Context, job: Job) -> int:
    _work(1)
    return steps.download_document(job)


def extract_text(ctx: Context, job: Job, page_count: int) -> str:
    _work(2)
    return steps.extract_text(job, page_count)


def analyze_document(ctx: Context, job: Job, text: str) -> dict[str, Any]:
    _work(3)
    return steps.analyze_document(job, text)


def store_results(ctx: Context, job: Job, summary: str, data: dict[str, Any]) -> str:
    stored_at = steps.store_results(job, summary, data)
    time.sleep(_duration(4) / 2)
    sink.write(job["jobId"], "stored", stored_at)
    time.sleep(_duration(4) / 2)
    return stored_at


def notify_requester(ctx: Context, job: Job, stored_at: str) -> str:
    notified_at = steps.notify_requester(job, stored_at)
    time.sleep(_duration(5) / 2)
    sink.write(job["jobId"], "notified", notified_at)
    time.sleep(_duration(5) / 2)
    return notified_at


def process_document(ctx: Context, job: Job) -> Generator[Any, Any, dict[str, Any]]:
    """Five-step durable pipeline; only the unfinished step re-runs after a crash."""
    page_count = yield ctx.run(download_document, job)
    text = yield ctx.run(extract_text, job, page_count)
    analysis = yield ctx.run(analyze_document, job, text)
    stored_at = yield ctx.run(store_results, job, analysis["summary"], analysis["data"])
    notified_at = yield ctx.run(notify_requester, job, stored_at)
    return steps.workflow_result(job, page_count, analysis, stored_at, notified_at)
