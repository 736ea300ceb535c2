"""The five document-pipeline steps as pure functions of the job (no SDK, no I/O).

Outputs depend only on the job, so the harness computes the expected workflow result
independently (`expected_result`) and compares it with what the server stored.
"""

from __future__ import annotations

import hashlib
from typing import Any

STEP_NAMES: tuple[str, ...] = (
    "download_document",
    "extract_text",
    "analyze_document",
    "store_results",
    "notify_requester",
)
EFFECT_STEPS: frozenset[int] = frozenset({4, 5})  # steps that write to the idempotent sink

Job = dict[str, Any]


def _digest(*parts: object) -> str:
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()


def download_document(job: Job) -> int:
    """Page count of the document."""
    return 1 + int(_digest(job["jobId"], job["documentUrl"])[:8], 16) % 40


def extract_text(job: Job, page_count: int) -> str:
    return (
        f"{job['type']} {job['documentUrl']} pages={page_count} sig={_digest(job['jobId'], page_count)[:16]}"
    )


def analyze_document(job: Job, text: str) -> dict[str, Any]:
    return {
        "summary": f"{job['type']} document for {job['requesterId']} ({len(text)} chars)",
        "data": {"type": job["type"], "words": len(text.split()), "fingerprint": _digest(text)[:12]},
    }


def store_results(job: Job, summary: str, data: dict[str, Any]) -> str:
    """Where the results are stored (the sink row is keyed by jobId)."""
    return f"sink://results/{job['jobId']}/{_digest(summary, sorted(data.items()))[:8]}"


def notify_requester(job: Job, stored_at: str) -> str:
    return f"notified:{job['requesterId']}:{_digest(stored_at)[:8]}"


def expected_result(job: Job) -> dict[str, Any]:
    """The workflow's return value, computed without running the workflow."""
    page_count = download_document(job)
    text = extract_text(job, page_count)
    analysis = analyze_document(job, text)
    stored_at = store_results(job, analysis["summary"], analysis["data"])
    notified_at = notify_requester(job, stored_at)
    return workflow_result(job, page_count, analysis, stored_at, notified_at)


def workflow_result(
    job: Job, page_count: int, analysis: dict[str, Any], stored_at: str, notified_at: str
) -> dict[str, Any]:
    return {
        "jobId": job["jobId"],
        "type": job["type"],
        "pageCount": page_count,
        "summary": analysis["summary"],
        "extractedData": analysis["data"],
        "storedAt": stored_at,
        "notifiedAt": notified_at,
    }
