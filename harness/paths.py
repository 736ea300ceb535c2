"""Where the harness keeps what it installs: a per-user cache, never the package directory.

The cache is ``$RESONATE_HARNESS_CACHE``, else ``$XDG_CACHE_HOME/resonate-harness``, else
``~/.cache/resonate-harness``. ``harness setup`` builds the Resonate server and Toxiproxy into its
``bin/``; runs write under the current directory (``runs/``) or wherever ``--out`` says.

A source checkout that still has the binaries the old ``scripts/install-*.sh`` built in
``.tools/bin`` keeps working: those are used when the cache has none.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "RESONATE_HARNESS_CACHE"
# the directory holding the harness package: a source checkout, or site-packages when installed
SOURCE_ROOT = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    """The per-user cache directory (not created here)."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit).expanduser().absolute()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "resonate-harness"


def bin_dir() -> Path:
    """Where `harness setup` installs the server and Toxiproxy binaries."""
    return cache_dir() / "bin"


def logs_dir() -> Path:
    """Where `harness setup` keeps the output of its builds."""
    return cache_dir() / "logs"


def legacy_bin_dir() -> Path | None:
    """``.tools/bin`` of a source checkout (the old install scripts' target), if this is one."""
    if not (SOURCE_ROOT / "pyproject.toml").is_file():
        return None
    path = SOURCE_ROOT / ".tools" / "bin"
    return path if path.is_dir() else None


def executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def tool_path(name: str) -> Path:
    """The binary `name`: the cache's, else a checkout's ``.tools/bin`` one, else the cache's path
    (where `harness setup` will put it)."""
    cached = bin_dir() / name
    if executable(cached):
        return cached
    legacy = legacy_bin_dir()
    if legacy is not None and executable(legacy / name):
        return legacy / name
    return cached


def display(path: Path) -> str:
    """`path` with the home directory written as ~ (for messages)."""
    try:
        return f"~/{path.relative_to(Path.home())}"
    except ValueError:
        return str(path)
