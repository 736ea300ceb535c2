"""A gateway that dispatches each request under a fresh random promise id, not doc/<jobId>."""

from __future__ import annotations

import uuid

import workflow.lambda_function as base


def _random_promise_id(job_id: str) -> str:
    return f"doc/{uuid.uuid4().hex}"


base.promise_id = _random_promise_id
handler = base.handler
