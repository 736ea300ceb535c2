"""A short Markdown summary of a run (report.md), from results.json alone."""

from __future__ import annotations

import json
from pathlib import Path


def render(run_dir: Path) -> list[Path]:
    run_dir = Path(run_dir)
    results = json.loads((run_dir / "results.json").read_text())
    lines = [
        f"# {results['scenario']} ({results['backend']} backend, seed {results['seed']})",
        "",
        f"server {results['versions']['server']}, sdk {results['versions']['sdk']}; "
        f"jobs: {results['jobs']['submitted']} submitted, {results['jobs']['unique']} unique, "
        f"{results['jobs']['completed']} completed",
        "",
        "| verdict | ok | detail |",
        "| --- | --- | --- |",
        *[f"| {n} | {'yes' if v['ok'] else '**NO**'} | {v['detail']} |" for n, v in results["verdicts"].items()],
        "",
        "## Faults",
        "",
        *[f"- {f['kind']} {f['target']} at {f['at']}s" + (f" (job {f['job']}, step {f['step']})" if "job" in f else "")
          for f in results["faults"]],
        "",
        "## Figures",
        "",
        *[f"- {k}: {v}" for k, v in results["figures"].items()],
        "",
        f"Reproduce: `{results.get('command')}`",
        "",
    ]
    out = run_dir / "report.md"
    out.write_text("\n".join(lines))
    return [out]
