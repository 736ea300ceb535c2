"""The worker launcher: ``python -m harness.agent.worker SCRIPT`` runs the app's worker script
unmodified, as ``__main__``, with the SDK hooks installed first.

The app's import roots come from HARNESS_APP_PATH (os.pathsep-separated), its directory from
HARNESS_APP_ROOT. The script sees the argv and sys.path it would see under ``python SCRIPT``.
"""

from __future__ import annotations

import os
import runpy
import sys

from harness.agent import hooks, lifecycle

PATH_ENV = "HARNESS_APP_PATH"


def app_paths() -> list[str]:
    return [p for p in os.environ.get(PATH_ENV, "").split(os.pathsep) if p]


def prepare_imports(script: str | None = None) -> None:
    """sys.path as `python SCRIPT` would set it, after the app's declared import roots (which win)."""
    here = [os.path.dirname(os.path.abspath(script))] if script else []
    first = list(dict.fromkeys(os.path.abspath(p) for p in [*app_paths(), *here]))
    # `python -m` put the working directory (the app's) at the front: the declared order wins
    sys.path[:] = first + [p for p in sys.path if (os.path.abspath(p) if p else os.getcwd()) not in first]


def main() -> None:
    if len(sys.argv) < 2:
        print("usage: python -m harness.agent.worker SCRIPT [ARGS...]", file=sys.stderr)
        raise SystemExit(2)
    script = os.path.abspath(sys.argv[1])
    lifecycle.die_with_parent_if_asked()
    prepare_imports(script)
    hooks.install("worker")
    sys.argv = sys.argv[1:]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
