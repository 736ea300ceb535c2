"""Broken on purpose: the reference handler, dispatching each request under a fresh random promise
id instead of doc/<jobId>, so duplicates are not collapsed."""

import uuid

import lambda_function as base  # the reference app's handler (an import root of this app)

base.promise_id = lambda job_id: f"doc/{uuid.uuid4().hex}"
handler = base.handler
