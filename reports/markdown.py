"""report.md: a short Markdown summary of a run (verdicts, faults, figures, how to reproduce)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reports.model import RunView

OUT = "report.md"


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _secs(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def render(view: RunView) -> Path:
    r = view.results
    status = {True: "PASS", False: "FAIL", None: "NOT CHECKED"}[view.ok]
    versions = r.get("versions") or view.meta.get("versions") or {}
    jobs = r.get("jobs") or {}
    lines = [
        f"# {view.get('scenario', 'run')}: {status}",
        "",
        f"{view.get('backend', '?')} backend, {view.get('stack', '?')} stack, seed {view.get('seed', '?')}"
        + "".join(f", {k} {v}" for k, v in versions.items())
        + (f"; jobs: {jobs.get('submitted', '?')} submitted, {jobs.get('unique', '?')} unique, "
           f"{jobs.get('completed', '?')} completed" if jobs else ""),
        "",
    ]  # fmt: skip
    for e in view.errors:
        lines += [f"**The scenario stopped early** (at {_secs(e.get('at'))} s): {_cell(e.get('error'))}", ""]
    if view.problems:
        lines += ["Incomplete run directory: " + "; ".join(view.problems) + ".", ""]
    lines += ["## Verdicts", ""]
    if view.verdicts:
        lines += ["| verdict | ok | detail |", "| --- | --- | --- |"]
        lines += [f"| {name} | {'yes' if v.get('ok') else '**NO**'} | {_cell(v.get('detail', ''))} |"
                  for name, v in view.verdicts.items()]  # fmt: skip
    else:
        lines += ["Not checked: run `harness check` on the run directory."]
    app = r.get("app") or {}
    if app:
        steps = ", ".join(f"{x['pos']} {x['fn']}" for x in app.get("steps") or []) or "none seen"
        lines += [
            "",
            "## The app",
            "",
            f"`{app.get('dir')}`: handler `{app.get('handler')}`, worker `{app.get('worker')}`, "
            f"promise ids `{app.get('promise_id_scheme') or 'opaque'}`, steps: {steps}; "
            + (
                "effects declared"
                if app.get("effects")
                else "no effects declared (duplicate effects not checked)"
            ),
        ]
    if r.get("findings"):
        lines += ["", "## Findings", ""] + [
            f"- **{f['kind']}** job {f.get('job')}: {_cell(f['detail'])}" for f in r["findings"]
        ]
    lines += ["", "## Faults", ""]
    if view.fault_rows:
        lines += [
            "| # | fault | target | at (s) | job | step | restarted after (s) | on | job done after (s) |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        lines += [
            f"| {f.n} | {f.kind} | {f.target} | {_secs(f.at)} | {f.job or '—'} | {f.step or '—'} | "
            f"{_secs(f.restart_s)} | {f.restart_worker or '—'} | {_secs(f.done_s)} |"
            for f in view.fault_rows
        ]
    else:
        lines += ["No faults were injected."]
    if view.incidents:
        lines += ["", "## Incidents", ""]
        lines += [f"- {i.get('target')} exited by itself (code {i.get('code')}) at {_secs(i.get('at'))} s"
                  for i in view.incidents]  # fmt: skip
    figures = r.get("figures") or {}
    if figures:
        lines += ["", "## Figures", "", ", ".join(f"{k} {v}" for k, v in figures.items())]
    lines += ["", f"Reproduce: `{view.get('command') or 'not recorded'}`", "",
              "Timeline and details: report.html", ""]  # fmt: skip
    out = view.run_dir / OUT
    out.write_text("\n".join(lines))
    return out
