"""report.html: one self-contained page (inline CSS, the timeline as a base64 PNG, no external URL)."""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

from reports import timeline
from reports.model import RunView

TEMPLATES = Path(__file__).parent / "templates"
OUT = "report.html"


def _secs(value: Any, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f} s"


def _num(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return "—" if value is None else str(value)


def _plain(value: Any) -> str:
    if isinstance(value, list | tuple):
        return " ".join(map(_plain, value)) if value else "—"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_plain(v)}" for k, v in value.items()) if value else "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return _num(value)


def extras(view: RunView) -> list[dict[str, Any]]:
    """results.json keys the page does not lay out itself: a list of records as a table, a flat
    mapping as pairs, anything else as JSON."""
    out: list[dict[str, Any]] = []
    for key, value in view.extra_results.items():
        if isinstance(value, list) and value and all(isinstance(r, dict) for r in value):
            columns = list(dict.fromkeys(k for r in value for k in r))
            out.append({"key": key, "columns": columns, "rows": [[r.get(c) for c in columns] for r in value]})
        elif (
            isinstance(value, dict) and value and not any(isinstance(v, dict | list) for v in value.values())
        ):
            out.append({"key": key, "pairs": list(value.items())})
        else:
            out.append({"key": key, "json": value})
    return out


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB"):
        if n < 1024 or unit == "MB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def _env() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "j2"]),
                      trim_blocks=True, lstrip_blocks=True)  # fmt: skip
    env.filters.update(secs=_secs, num=_num, size=_size, plain=_plain,
                       pretty=lambda v: json.dumps(v, indent=1, sort_keys=True, default=str))  # fmt: skip
    return env


def timeline_image(view: RunView) -> tuple[str | None, str | None]:
    """(data: URI of the timeline PNG, why there is none)."""
    if not view.has_history:
        return None, "no history to draw (see above)"
    try:
        data = timeline.png(view)
    except Exception as e:  # a drawing bug must not cost the rest of the report
        return None, f"the timeline could not be drawn: {e!r}"
    if data is None:
        return None, "no step ever ran"
    return "data:image/png;base64," + base64.b64encode(data).decode(), None


def caption(view: RunView) -> str:
    """How to read the timeline: only what this one shows."""
    fates = {x.fate for ln in view.lanes for x in ln.executions}
    kinds = {m.kind for m in view.marks}
    parts = [
        "One lane per job, in submission order; one bar per step execution, numbered by step and coloured by "
        "the worker that ran it."
    ]
    if "cut" in fates:
        parts.append("Red-hatched: interrupted (started, never ended; drawn at least a few pixels wide).")
    if "late" in fates:
        parts.append(
            "Dark-hatched: ended after a fault struck it (a zombie, a step in flight across a server crash)."
        )
    if kinds & {"kill", "kill-worker"}:
        parts.append("Red ✕ and line: kill -9 on the struck lane.")
    if any(k.startswith("failpoint") for k in kinds):
        parts.append("Purple ◆: a failpoint fired.")
    for kind, (_, label) in timeline.BANDS.items():
        if kind in kinds:
            parts.append(f"Band on the lane: {label} ({kind}).")
    if "server-crash" in kinds:
        parts.append("Grey band across all lanes: server down.")
    if any(r.restart_s is not None for r in view.fault_rows):
        parts.append("Dotted line: time until the struck step started again.")
    if any(not m.jobs for m in view.marks):
        parts.append(
            "Faint dotted line across all lanes: a fault that found nothing in flight on its target."
        )
    parts.append("▸ submitted, ○ done (as the client saw it).")
    names = view.step_names
    if names:
        parts.append("Steps: " + ", ".join(f"{k} {names[k]}" for k in sorted(names)) + ".")
    if kinds:
        parts.append(
            "A replay reads as: the steps before the struck one once, the struck step twice, the rest once."
        )
    if len(view.lanes) > timeline.LABEL_ALL_UP_TO:
        parts.append("Only the lanes of faulted jobs are named.")
    return " ".join(parts)


def render(view: RunView) -> Path:
    image, no_image = timeline_image(view)
    started = (dt.datetime.fromtimestamp(view.t0, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
               if view.t0 else None)  # fmt: skip
    page = (
        _env()
        .get_template("report.html.j2")
        .render(
            v=view,
            r=view.results,
            settings=view.meta.get("settings") or {},
            sut=view.meta.get("sut") or {},
            versions=view.get("versions") or {},
            jobs=view.results.get("jobs") or {},
            figures=view.results.get("figures") or {},
            timeline=image,
            no_timeline=no_image,
            started=started,
            extras=extras(view),
            caption=caption(view),
            notes=any(r.note for r in view.fault_rows),
            struck_jobs=len({r.job for r in view.fault_rows if r.job}),
            colors=timeline.worker_colors(view.workers),
            generated=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        )
    )
    out = view.run_dir / OUT
    out.write_text(page)
    return out
