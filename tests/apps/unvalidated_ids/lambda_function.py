"""A Lambda handler that trusts its input: any non-empty jobId string becomes the promise id.

POST /process-document dispatches ``begin_rpc(f"doc/{jobId}", "process_document", job)`` and answers
202; GET /status/{jobId} reads ``doc/{jobId}``. The SDK builds promise URLs from the id unescaped.
"""

from __future__ import annotations

import json
import os
from typing import Any

from resonate import Resonate
from resonate.errors import ResonateStoreError

resonate = Resonate.remote(
    group="gateway",
    host=os.environ.get("RESONATE_HOST", "http://127.0.0.1"),
    store_port=os.environ.get("RESONATE_STORE_PORT", "8001"),
    message_source_port=os.environ.get("RESONATE_MSG_PORT", "8002"),
)


def _reply(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {"statusCode": status, "headers": {"Content-Type": "application/json"}, "body": json.dumps(body)}


def _submit(event: dict[str, Any]) -> dict[str, Any]:
    try:
        job = json.loads(event.get("body") or "")
    except ValueError:
        return _reply(400, {"error": "body is not JSON"})
    if not isinstance(job, dict) or not isinstance(job.get("jobId"), str) or not job["jobId"]:
        return _reply(400, {"error": "jobId must be a non-empty string"})
    if not isinstance(job.get("documentUrl"), str):
        return _reply(400, {"error": "documentUrl must be a string"})
    job_id = job["jobId"]  # not validated: the bug under test
    try:
        resonate.options(target="poll://any@worker").begin_rpc(f"doc/{job_id}", "process_document", job)
    except ResonateStoreError as e:
        return _reply(503, {"error": f"could not dispatch: {e.mesg}"})
    return _reply(202, {"status": "accepted", "jobId": job_id, "statusUrl": f"/status/{job_id}"})


def _status(job_id: str) -> dict[str, Any]:
    try:
        handle = resonate.get(f"doc/{job_id}")
    except ResonateStoreError as e:
        return _reply(404, {"error": f"job {job_id} not found: {e.mesg}"})
    if not handle.done():
        return _reply(200, {"status": "processing", "jobId": job_id})
    return _reply(200, {"status": "done", "jobId": job_id, "result": handle.result()})


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    path, method = event.get("path") or "", event.get("httpMethod")
    if path == "/process-document" and method == "POST":
        return _submit(event)
    if path.startswith("/status/") and method == "GET":
        job_id = (event.get("pathParameters") or {}).get("jobId") or path[len("/status/") :]
        return _status(job_id)
    return _reply(404, {"error": f"no route for {method} {path}"})
