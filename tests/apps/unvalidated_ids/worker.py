"""The worker of the unvalidated-ids app: a two-step durable workflow, run as ``python worker.py``."""

from __future__ import annotations

import os
import threading
from collections.abc import Generator
from typing import Any

from resonate import Context, Resonate

resonate = Resonate.remote(
    group="worker",
    host=os.environ.get("RESONATE_HOST", "http://127.0.0.1"),
    store_port=os.environ.get("RESONATE_STORE_PORT", "8001"),
    message_source_port=os.environ.get("RESONATE_MSG_PORT", "8002"),
)


def fetch(ctx: Context, job: dict[str, Any]) -> int:
    return len(job["documentUrl"])


def summarize(ctx: Context, job: dict[str, Any], size: int) -> dict[str, Any]:
    return {"jobId": job["jobId"], "size": size}


def process_document(ctx: Context, job: dict[str, Any]) -> Generator[Any, Any, dict[str, Any]]:
    size = yield ctx.run(fetch, job)
    return (yield ctx.run(summarize, job, size))


resonate.register(process_document, name="process_document")

if __name__ == "__main__":
    resonate.start()
    print(f"worker pid {os.getpid()} started", flush=True)
    threading.Event().wait()
