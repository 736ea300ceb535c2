"""The durable document pipeline run by the worker group (as in the seeds).

Each `yield ctx.run(step, ...)` is a checkpoint: a child promise `doc/<jobId>.<n>` on the server.
The step bodies are the pure functions of `workflow.steps`, wrapped by `harness.probe.execute`
so every execution is recorded in the ledger and can be hit by a failpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

from resonate import Context

from harness import probe
from workflow import sink, steps

Job = dict[str, Any]


def _effect(job: Job, kind: str) -> Callable[[Any, str], None]:
    def write(value: Any, attempt: str) -> None:
        sink.write(job["jobId"], kind, str(value), worker=probe.worker_id(), attempt=attempt)

    return write


def download_document(ctx: Context, job: Job) -> int:
    return probe.execute(job, 1, "download_document", lambda: steps.download_document(job))


def extract_text(ctx: Context, job: Job, page_count: int) -> str:
    return probe.execute(job, 2, "extract_text", lambda: steps.extract_text(job, page_count))


def analyze_document(ctx: Context, job: Job, text: str) -> dict[str, Any]:
    return probe.execute(job, 3, "analyze_document", lambda: steps.analyze_document(job, text))


def store_results(ctx: Context, job: Job, summary: str, data: dict[str, Any]) -> str:
    return probe.execute(
        job, 4, "store_results", lambda: steps.store_results(job, summary, data), _effect(job, "stored")
    )


def notify_requester(ctx: Context, job: Job, stored_at: str) -> str:
    return probe.execute(
        job, 5, "notify_requester", lambda: steps.notify_requester(job, stored_at), _effect(job, "notified")
    )


def process_document(ctx: Context, job: Job) -> Generator[Any, Any, dict[str, Any]]:
    """Five-step durable pipeline; only the unfinished step re-runs after a crash."""
    page_count = yield ctx.run(download_document, job)
    text = yield ctx.run(extract_text, job, page_count)
    analysis = yield ctx.run(analyze_document, job, text)
    stored_at = yield ctx.run(store_results, job, analysis["summary"], analysis["data"])
    notified_at = yield ctx.run(notify_requester, job, stored_at)
    return steps.workflow_result(job, page_count, analysis, stored_at, notified_at)
