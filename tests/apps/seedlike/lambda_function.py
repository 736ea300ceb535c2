"""Shaped like the seed example's Lambda: `lambda_handler`, a module-scope client in group
`gateway`, its own environment names, begin_rpc("doc/<jobId>") and a status route."""

import json
import os
import re
from typing import Any

from resonate import Resonate

RESONATE_HOST = os.environ.get("RESONATE_HOST", "http://localhost")
RESONATE_STORE_PORT = os.environ.get("RESONATE_STORE_PORT", "8001")
RESONATE_MSG_PORT = os.environ.get("RESONATE_MESSAGE_SOURCE_PORT", "8002")

resonate = Resonate.remote(
    group="gateway",
    host=RESONATE_HOST,
    store_port=RESONATE_STORE_PORT,
    message_source_port=RESONATE_MSG_PORT,
)


def _response(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {"statusCode": status, "headers": {"Content-Type": "application/json"}, "body": json.dumps(body)}


def _handle_process_document(event: dict[str, Any]) -> dict[str, Any]:
    try:
        job = json.loads(event.get("body") or "{}")
    except ValueError:
        return _response(400, {"error": "invalid JSON"})
    job_id = job.get("jobId") if isinstance(job, dict) else None
    if not isinstance(job_id, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", job_id):
        return _response(400, {"error": "jobId is required"})
    resonate.options(target="poll://any@worker").begin_rpc(f"doc/{job_id}", "process_document", job)
    return _response(202, {"status": "accepted", "jobId": job_id, "statusUrl": f"/status/{job_id}",
                           "message": "Processing in background. Poll statusUrl for results."})  # fmt: skip


def _handle_status(job_id: str) -> dict[str, Any]:
    try:
        handle = resonate.get(f"doc/{job_id}")
    except Exception:
        return _response(404, {"error": "job not found"})
    if not handle.done():
        return _response(200, {"status": "processing", "jobId": job_id})
    return _response(200, {"status": "done", "jobId": job_id, "result": handle.result()})


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    path = event.get("path", "")
    if event.get("httpMethod") == "POST" and path == "/process-document":
        return _handle_process_document(event)
    if event.get("httpMethod") == "GET" and path.startswith("/status/"):
        return _handle_status(path.rsplit("/", 1)[-1])
    return _response(404, {"error": "not found"})
