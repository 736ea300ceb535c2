"""Shaped like the seed example's worker: a module-scope client, `@resonate.register` at import,
started under __main__. Two steps are nondeterministic on purpose (hash() of a string differs
between processes; a timestamp)."""

import threading
import time
from typing import Any

from resonate import Context, Resonate

resonate = Resonate.remote(group="worker")


def download_document(ctx: Context, job: dict[str, Any]) -> int:
    time.sleep(0.1)
    return hash(job["documentUrl"]) % 40 + 1  # depends on PYTHONHASHSEED: differs per process


def extract_text(ctx: Context, job: dict[str, Any], page_count: int) -> str:
    time.sleep(0.1)
    return f"{job['type']} document, {page_count} pages"


def analyze_document(ctx: Context, job: dict[str, Any], text: str) -> dict[str, Any]:
    time.sleep(0.1)
    return {"summary": text.upper(), "data": {"words": len(text.split())}}


def store_results(ctx: Context, job: dict[str, Any], summary: str, data: dict[str, Any]) -> str:
    time.sleep(0.1)
    return f"s3://results/{job['jobId']}.json"


def notify_requester(ctx: Context, job: dict[str, Any], stored_at: str) -> str:
    time.sleep(0.1)
    return f"notified {job['requesterId']} at {time.time():.3f}"


@resonate.register
def process_document(ctx: Context, job: dict[str, Any]):
    page_count = yield ctx.run(download_document, job)
    text = yield ctx.run(extract_text, job, page_count)
    analysis = yield ctx.run(analyze_document, job, text)
    stored_at = yield ctx.run(store_results, job, analysis["summary"], analysis["data"])
    notified_at = yield ctx.run(notify_requester, job, stored_at)
    return {
        "jobId": job["jobId"],
        "type": job["type"],
        "pageCount": page_count,
        "summary": analysis["summary"],
        "extractedData": analysis["data"],
        "storedAt": stored_at,
        "notifiedAt": notified_at,
    }


if __name__ == "__main__":
    resonate.start()
    threading.Event().wait()
