"""The app's external effects per job, counted the way its config declares ([effects]): rows of
(job, effect) from a SQLite query or from a command that prints JSON lines. Written to effects.json
at the end of a run, so the checks read only the run directory."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path
from typing import Any

from harness.app.spec import AppSpec, expand
from harness.history import EFFECTS


def count(app: AppSpec, run_dir: Path, env: dict[str, str]) -> dict[str, Any]:
    """{"rows": [{"job", "effect", ...}], "error": str | None}; never raises."""
    e = app.effects
    if e is None:
        return {"rows": [], "error": None, "declared": False}
    values = {"run_dir": run_dir, "app_dir": app.root, "host": "127.0.0.1", "store_port": "", "poll_port": ""}
    try:
        if e.command:
            res = subprocess.run(expand(e.command, values), shell=True, cwd=app.root, env=env, capture_output=True,
                                 text=True, timeout=120, check=False)  # fmt: skip
            if res.returncode != 0:
                raise RuntimeError(f"`{e.command}` exited {res.returncode}: {res.stderr.strip()[-300:]}")
            rows = [json.loads(line) for line in res.stdout.splitlines() if line.strip()]
        else:
            path = Path(expand(e.sqlite or "", values))
            if not path.exists():  # no effect was ever made
                rows = []
            else:
                with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
                    conn.row_factory = sqlite3.Row
                    rows = [dict(r) for r in conn.execute(e.query or "")]
        bad = next((r for r in rows if not isinstance(r, dict) or "job" not in r or "effect" not in r), None)
        if bad is not None:
            raise ValueError(f"each effect row needs 'job' and 'effect' columns; got {bad!r}")
        return {"rows": [{**r, "job": str(r["job"]), "effect": str(r["effect"])} for r in rows], "error": None,
                "declared": True}  # fmt: skip
    except (OSError, ValueError, RuntimeError, sqlite3.Error, subprocess.SubprocessError) as exc:
        return {"rows": [], "error": f"{type(exc).__name__}: {exc}", "declared": True}


def save(run_dir: Path, result: dict[str, Any]) -> None:
    (run_dir / EFFECTS).write_text(json.dumps(result, indent=1, default=str))
