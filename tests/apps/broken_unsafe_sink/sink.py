"""Broken on purpose: a sink that is not idempotent; every write of an effect adds a row."""

import os
import sqlite3
import time
from contextlib import closing


def write(job_id: str, kind: str, value: str) -> None:
    with closing(sqlite3.connect(os.environ["WORKFLOW_SINK"], timeout=30, isolation_level=None)) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS effects (job_id TEXT, kind TEXT, value TEXT, pid INTEGER, t REAL)"
        )
        conn.execute(
            "INSERT INTO effects VALUES (?, ?, ?, ?, ?)", (job_id, kind, value, os.getpid(), time.time())
        )
