"""The idempotent sink that store_results and notify_requester write to: one row per (jobId, kind).

A SQLite file (path in WORKFLOW_SINK) shared by all workers. The primary key makes a repeated write
a no-op; the harness counts rows per (jobId, kind) to see duplicate effects (harness.toml [effects]).
"""

from __future__ import annotations

import os
import sqlite3
import time
from contextlib import closing

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS effects (job_id TEXT NOT NULL, kind TEXT NOT NULL, value TEXT NOT NULL,"
    " pid INTEGER, t REAL{constraint})"
)


def connect(path: str | None = None, *, unique: bool = True) -> sqlite3.Connection:
    conn = sqlite3.connect(path or os.environ["WORKFLOW_SINK"], timeout=30, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(SCHEMA.format(constraint=", PRIMARY KEY (job_id, kind)" if unique else ""))
    return conn


def write(job_id: str, kind: str, value: str) -> None:
    """Record an effect once: a second write for the same (job_id, kind) changes nothing."""
    with closing(connect()) as conn:
        conn.execute(
            "INSERT INTO effects VALUES (?, ?, ?, ?, ?) ON CONFLICT (job_id, kind) DO NOTHING",
            (job_id, kind, value, os.getpid(), time.time()),
        )
