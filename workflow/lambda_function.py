"""AWS Lambda handler: a stateless trigger for the durable ``process_document`` workflow.

Faithful to the seed (example-lambda-workers-py/lambda_function.py): a module-scope Resonate
client (one per cold start) in group ``gateway``; ``POST /process-document`` validates the body,
dispatches ``begin_rpc(promise_id(jobId), "process_document", job)`` to ``poll://any@worker``
and returns 202; ``GET /status/{jobId}`` reads the durable promise with ``resonate.get``.

Events are API Gateway REST (v1) proxy events; responses are proxy responses
``{statusCode, headers, body}``.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import re
from typing import Any
from urllib.parse import unquote

from resonate import Resonate
from resonate.errors import ResonateStoreError

logger = logging.getLogger("workflow.lambda_function")

RESONATE_HOST = os.environ.get("RESONATE_HOST", "http://127.0.0.1")
RESONATE_STORE_PORT = os.environ.get("RESONATE_STORE_PORT", "8001")
RESONATE_MSG_PORT = os.environ.get("RESONATE_MSG_PORT", "8002")

WORKER_TARGET = "poll://any@worker"
WORKFLOW_NAME = "process_document"

MAX_BODY_BYTES = 64 * 1024
# A '.' would collide with the SDK's child checkpoint ids (doc/<job>.<n>); '/', '?', '#', '%'
# and spaces break the promise URL path (/promises/<id>) the SDK builds without escaping.
JOB_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
FIELD_MAX_LEN = {"jobId": 64, "documentUrl": 2048, "requesterId": 256, "type": 64}

# Module scope: created once per cold start, reused across warm invocations.
resonate = Resonate.remote(
    group="gateway",
    host=RESONATE_HOST,
    store_port=RESONATE_STORE_PORT,
    message_source_port=RESONATE_MSG_PORT,
)


class BadRequest(Exception):
    """A client error; the message is returned in a 400 body."""


def promise_id(job_id: str) -> str:
    """Return the durable promise id of a job: the idempotency key of its workflow."""
    return f"doc/{job_id}"


def _response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
    """Build an API Gateway proxy response with a JSON body."""
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", **(headers or {})},
        "body": json.dumps(body),
    }


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    return _response(status, {"error": message}, headers)


def _valid_job_id(value: Any) -> bool:
    return isinstance(value, str) and JOB_ID_RE.fullmatch(value) is not None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid JSON constant {name}")


def _parse_job(event: dict[str, Any]) -> dict[str, str]:
    """Validate the request body and return the job dict; raise BadRequest otherwise."""
    raw = event.get("body")
    if raw is None:
        raise BadRequest("request body is required")
    if not isinstance(raw, str):
        raise BadRequest("request body must be a string")
    if event.get("isBase64Encoded"):
        try:
            data = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError) as e:
            raise BadRequest("body is not valid base64") from e
    else:
        try:
            data = raw.encode("utf-8")
        except UnicodeEncodeError as e:
            raise BadRequest("body is not valid UTF-8") from e
    if len(data) > MAX_BODY_BYTES:
        raise BadRequest(f"body exceeds {MAX_BODY_BYTES} bytes")
    try:
        payload = json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError as e:
        raise BadRequest("body is not valid UTF-8") from e
    except (ValueError, RecursionError) as e:
        raise BadRequest("body is not valid JSON") from e
    if not isinstance(payload, dict):
        raise BadRequest("body must be a JSON object")

    job: dict[str, str] = {}
    for field, max_len in FIELD_MAX_LEN.items():
        value = payload.get(field)
        if value is None:
            raise BadRequest(f"missing required field: {field}")
        if not isinstance(value, str):
            raise BadRequest(f"field {field} must be a string")
        if not value.strip():
            raise BadRequest(f"field {field} must not be empty")
        if len(value) > max_len:
            raise BadRequest(f"field {field} exceeds {max_len} characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as e:
            raise BadRequest(f"field {field} is not valid unicode") from e
        job[field] = value
    if not _valid_job_id(job["jobId"]):
        raise BadRequest("jobId must match ^[A-Za-z0-9_-]{1,64}$")
    return job


def _handle_process_document(event: dict[str, Any]) -> dict[str, Any]:
    """Validate, dispatch the durable workflow, return 202 without waiting for it."""
    try:
        job = _parse_job(event)
    except BadRequest as e:
        return _error(400, str(e))
    job_id = job["jobId"]

    try:
        resonate.options(target=WORKER_TARGET).begin_rpc(promise_id(job_id), WORKFLOW_NAME, job)
    except ResonateStoreError as e:
        logger.error("dispatch of %s failed: %s", job_id, e)
        return _error(503, f"could not dispatch job: {e.mesg}")

    return _response(
        202,
        {
            "status": "accepted",
            "jobId": job_id,
            "statusUrl": f"/status/{job_id}",
            "message": "Processing in background. Poll statusUrl for results.",
        },
    )


def _is_not_found(error: ResonateStoreError) -> bool:
    """True when the store answered 404 (SDK 0.6.7 reports code 40400 as 100.404)."""
    response = getattr(error.__cause__, "response", None)
    if getattr(response, "status_code", None) == 404:
        return True
    return error.code in (40400, float("100.40400"))


def _handle_status(job_id: str | None) -> dict[str, Any]:
    """Report processing / done / failed for a job, or 404 if it was never submitted."""
    if not _valid_job_id(job_id):
        return _error(400, "jobId must match ^[A-Za-z0-9_-]{1,64}$")
    assert job_id is not None

    try:
        handle = resonate.get(promise_id(job_id))
    except ResonateStoreError as e:
        if _is_not_found(e):
            return _error(404, f"job {job_id} not found")
        logger.error("status of %s failed: %s", job_id, e)
        return _error(503, f"could not read job status: {e.mesg}")

    if not handle.done():
        return _response(200, {"status": "processing", "jobId": job_id})
    try:
        result = handle.result()
    except Exception as e:
        return _response(200, {"status": "failed", "jobId": job_id, "error": str(e)})
    return _response(200, {"status": "done", "jobId": job_id, "result": result})


def _status_job_id(event: dict[str, Any], path: str) -> str | None:
    """The jobId of a status request: the path parameter, else the raw path segment."""
    params = event.get("pathParameters") or {}
    if event.get("resource") == "/status/{jobId}" and isinstance(params.get("jobId"), str):
        return params["jobId"]
    return unquote(path[len("/status/") :])


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point for API Gateway REST proxy events."""
    if not isinstance(event, dict):
        return _error(400, "malformed event")
    method = event.get("httpMethod")
    path = event.get("path")
    if not isinstance(method, str) or not isinstance(path, str):
        return _error(400, "malformed event")
    method = method.upper()

    if path == "/process-document":
        if method != "POST":
            return _error(405, f"method {method} not allowed", {"Allow": "POST"})
        return _handle_process_document(event)
    if path.startswith("/status/"):
        if method != "GET":
            return _error(405, f"method {method} not allowed", {"Allow": "GET"})
        return _handle_status(_status_job_id(event, path))
    return _error(404, f"no route for {method} {path}")
