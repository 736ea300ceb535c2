"""A workflow whose sink is not idempotent: every write of an effect adds a row."""

from __future__ import annotations

import time
from contextlib import closing

from workflow import pipeline, sink


def _write_every_time(job_id: str, kind: str, value: str, *, worker: str, attempt: str) -> None:
    with closing(sink.connect(unique=False)) as conn:
        conn.execute(
            "INSERT INTO effects VALUES (?, ?, ?, ?, ?, ?)",
            (job_id, kind, value, worker, attempt, time.time()),
        )


sink.write = _write_every_time
process_document = pipeline.process_document
