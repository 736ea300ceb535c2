"""Renderers from a run directory to human-readable reports. They read only the run directory.

`render(run_dir)` writes report.html (self-contained: inline CSS, the timeline as an embedded
PNG) and report.md (a short summary) into the run directory and returns their paths.
"""

from __future__ import annotations

from pathlib import Path

from reports import html, markdown
from reports.model import load


def render(run_dir: Path) -> list[Path]:
    view = load(Path(run_dir))
    return [html.render(view), markdown.render(view)]


__all__ = ["render"]
