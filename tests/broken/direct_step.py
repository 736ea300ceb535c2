"""A workflow that calls analyze_document directly instead of through ctx.run: no checkpoint."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from workflow import pipeline, steps


def process_document(ctx: Any, job: dict[str, Any]) -> Generator[Any, Any, dict[str, Any]]:
    page_count = yield ctx.run(pipeline.download_document, job)
    text = yield ctx.run(pipeline.extract_text, job, page_count)
    analysis = pipeline.analyze_document(ctx, job, text)  # the bug: re-runs on every replay
    stored_at = yield ctx.run(pipeline.store_results, job, analysis["summary"], analysis["data"])
    notified_at = yield ctx.run(pipeline.notify_requester, job, stored_at)
    return steps.workflow_result(job, page_count, analysis, stored_at, notified_at)
