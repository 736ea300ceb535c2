"""The app image of the Docker backend: the app's own dependencies and files, nothing of the harness.

Two layers on the base image (``harness.cluster.images``):

- ``harness-app-deps:<hash>``: a venv at /opt/venv holding the app's declared dependencies plus what
  the harness's code needs in containers (the gateway imports ``requests``; the agent imports only
  the standard library and the SDK), installed offline from wheels fetched or built on the host.
  Its hash covers the base image and the dependency declaration, so apps with the same
  dependencies share it and a change of the app's files alone reuses it.
- ``harness-app:<hash>``: that plus a copy of the app's directory at its own absolute path (and of
  any import root of its ``[app] path`` outside it), so the paths the members get (``member_env``)
  are the host's, as on the process backend. Its hash covers the deps layer and the files.

The dependencies are, first found: the file named by ``[docker] requirements``, ``DIR/requirements.txt``,
the ``[project] dependencies`` of ``DIR/pyproject.toml``, else the SDK alone (with a printed note).
The harness's own package is not installed here: the Docker backend mounts it read-only.

Copied files leave out version-control and tool caches, virtualenvs, bytecode, ``runs/`` and the
patterns of ``DIR/.dockerignore`` (fnmatch patterns of relative paths, ``!`` lines not supported).
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import sys
import tarfile
import tempfile
import time
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import docker

from harness.app.spec import AppSpec
from harness.cluster import images
from harness.errors import HarnessError

HARNESS_NEEDS = ("requests",)  # imported by harness.gateway inside the gateway container
SDK = "resonate-sdk"
SKIP_DIRS = {".git", ".hg", ".svn", "__pycache__", ".venv", "venv", ".tox", ".nox", ".mypy_cache",
             ".pytest_cache", ".ruff_cache", "node_modules", ".tools", "runs", ".idea", ".vscode"}  # fmt: skip
SKIP_SUFFIXES = (".pyc", ".pyo")
LARGE_BYTES = 200 * 1024 * 1024
L_APP_ROOT = "harness.app-root"
DEPS_RECIPE = 2  # bump to rebuild every deps layer (2: no VOLUME left over from the install step)
_INCLUDE = re.compile(r"^\s*(?:-r|--requirement|-c|--constraint)[\s=]+(\S+)")


@dataclass(frozen=True)
class Requirements:
    """What the app declares it needs, as `pip wheel` arguments, and what they were read from."""

    source: str  # for messages: a path, or "[project] dependencies of ..."
    pip_args: tuple[str, ...]  # ("-r", FILE, "requests") or specifiers
    text: str  # the declaration's content (files included with -r/-c too): what the deps hash covers


def app_requirements(app: AppSpec, log: bool = True) -> Requirements:
    """The app's dependencies plus the harness's container needs (see the module docstring)."""
    root = app.root
    if app.requirements:
        path = (root / app.requirements).resolve()
        if not path.is_file():
            raise HarnessError(f"[docker] requirements naming a file in {app.config}", seen=f"no file {path}")
        return _from_file(path)
    if (root / "requirements.txt").is_file():
        return _from_file(root / "requirements.txt")
    deps = _pyproject_dependencies(root / "pyproject.toml")
    if deps:
        return Requirements(f"[project] dependencies of {root / 'pyproject.toml'}", (*deps, *HARNESS_NEEDS),
                            "\n".join(deps))  # fmt: skip
    sdk = _host_sdk()
    if log:
        print(f"harness[docker]: {root} declares no dependencies (no requirements.txt, no [project] "
              f"dependencies, no [docker] requirements): installing {sdk} only", file=sys.stderr, flush=True)  # fmt: skip
    return Requirements("default", (sdk, *HARNESS_NEEDS), sdk)


def _from_file(path: Path) -> Requirements:
    return Requirements(str(path), ("-r", str(path), *HARNESS_NEEDS), _file_text(path, set()))


def _file_text(path: Path, seen: set[Path]) -> str:
    """A requirements file's text, followed by that of the files it includes (-r, -c), recursively."""
    if path in seen:
        return ""
    seen.add(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise HarnessError(f"a readable requirements file {path}", seen=str(e)) from None
    parts = [f"# {path.name}\n{text}"]
    for line in text.splitlines():
        if (m := _INCLUDE.match(line)) and (inc := (path.parent / m.group(1)).resolve()).is_file():
            parts.append(_file_text(inc, seen))
    return "\n".join(parts)


def _pyproject_dependencies(path: Path) -> list[str]:
    if not path.is_file():
        return []
    try:
        deps = tomllib.loads(path.read_text()).get("project", {}).get("dependencies", [])
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise HarnessError(f"a readable {path}", seen=str(e)) from None
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        raise HarnessError(f"[project] dependencies = a list of strings in {path}", seen=repr(deps))
    return deps


def _host_sdk() -> str:
    """The SDK pinned to the version the harness runs with (its compatibility is checked), if known."""
    try:
        return f"{SDK}=={metadata.version(SDK)}"
    except metadata.PackageNotFoundError:
        return SDK


# --- the app's files ----------------------------------------------------------------------------
def copy_roots(app: AppSpec) -> list[Path]:
    """The directories copied into the image: the app's, and import roots of [app] path outside it."""
    roots = [app.root]
    for p in app.path:
        extra = (app.root / p).resolve()
        if not any(extra == r or extra.is_relative_to(r) for r in roots):
            roots.append(extra)
    return roots


def _ignore_patterns(root: Path) -> list[str]:
    path = root / ".dockerignore"
    if not path.is_file():
        return []
    lines = [line.strip() for line in path.read_text().splitlines()]
    return [line.strip("/") for line in lines if line and not line.startswith(("#", "!"))]


def app_files(root: Path, exclude: Iterable[Path] = ()) -> list[Path]:
    """The files (and symlinks) of `root` that go into the image, sorted; not under `exclude`."""
    patterns = _ignore_patterns(root)
    skip = {Path(e).absolute() for e in exclude}

    def ignored(rel: str) -> bool:
        return any(fnmatch.fnmatch(rel, pat) for pat in patterns)

    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        keep = []
        for d in sorted(dirnames):
            full = here / d
            rel = full.relative_to(root).as_posix()
            if d in SKIP_DIRS or d.endswith(".egg-info") or full in skip or ignored(rel):
                continue
            if full.is_symlink():
                out.append(full)  # copied as a link, not followed
            else:
                keep.append(d)
        dirnames[:] = keep
        for f in sorted(filenames):
            full = here / f
            if (
                not f.endswith(SKIP_SUFFIXES)
                and full not in skip
                and not ignored(full.relative_to(root).as_posix())
            ):
                out.append(full)
    return sorted(out)


def files_digest(files: Iterable[Path]) -> str:
    """sha256 over each file's absolute path, mode and content (a symlink's target)."""
    digest = hashlib.sha256()
    for path in files:
        st = path.lstat()
        body = os.readlink(path) if path.is_symlink() else images.file_sha256(path)
        digest.update(f"{path}\0{st.st_mode & 0o7777:o}\0{body}\0".encode())
    return digest.hexdigest()


def _files_tar(roots: list[Path], files: list[Path], out: Path) -> int:
    """A tar of `roots` (directories) and `files` at their absolute paths, root-owned and readable
    by anyone (members may run as another uid). Returns the bytes of file content."""
    size = 0

    def fix(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        info.mode |= 0o555 if info.isdir() else 0o444
        return info

    dirs = set(roots)
    for path in files:
        root = next(r for r in roots if path.is_relative_to(r))
        dirs.update(p for p in path.parents if p.is_relative_to(root))
    with tarfile.open(out, "w") as tar:
        for path in [*sorted(dirs), *files]:
            tar.add(str(path), arcname=str(path).lstrip("/"), recursive=False, filter=fix)
            size += 0 if path in dirs or path.is_symlink() else path.stat().st_size
    return size


# --- the image ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class AppImage:
    tag: str  # harness-app:<hash>
    deps: str  # harness-app-deps:<hash>, the layer below
    requirements: Requirements


def ensure_app_image(client: docker.DockerClient, app: AppSpec, exclude: Iterable[Path] = ()) -> str:
    """The tag of the app's image (built if missing); `exclude`: paths under the app not to copy
    (the run directory, when it lies inside the app's)."""
    return ensure_app_layers(client, app, exclude).tag


def ensure_app_layers(client: docker.DockerClient, app: AppSpec, exclude: Iterable[Path] = ()) -> AppImage:
    images._ping(client)
    base = images.ensure_base_image(client)
    reqs = app_requirements(app)
    deps_digest = images.inputs_hash({"kind": "app-deps", "base": images._image_id(client, base),
                                      "requirements": reqs.text, "needs": HARNESS_NEEDS, "recipe": DEPS_RECIPE})  # fmt: skip
    roots = copy_roots(app)
    files = [f for r in roots for f in app_files(r, exclude)]
    digest = images.inputs_hash({"kind": "app", "deps": deps_digest, "roots": [str(r) for r in roots],
                                 "files": files_digest(files)})  # fmt: skip
    deps = images.find_image(client, "app-deps", deps_digest)
    if deps and (tag := images.find_image(client, "app", digest)):
        return AppImage(tag, deps, reqs)
    with images.build_lock(f"app-deps-{deps_digest[:16]}"):
        deps = images.find_image(client, "app-deps", deps_digest) or _deps_layer(client, base, reqs, app,
                                                                                   deps_digest)  # fmt: skip
    with images.build_lock(f"app-{digest[:16]}"):
        tag = images.find_image(client, "app", digest) or _files_layer(
            client, deps, app, roots, files, digest
        )
    images.prune_superseded(client, "app", keep=tag, labels={L_APP_ROOT: str(app.root)})
    return AppImage(tag, deps, reqs)


def _deps_layer(client: docker.DockerClient, base: str, reqs: Requirements, app: AppSpec, digest: str) -> str:
    started = time.monotonic()
    probe = images.python_probe(client, base)
    house = images.wheelhouse(list(reqs.pip_args), {"requirements": reqs.text, "needs": HARNESS_NEEDS}, probe,
                              cwd=app.root)  # fmt: skip
    pip = f"PIP_NO_CACHE_DIR=1 {images.VENV}/bin/pip --disable-pip-version-check"
    script = (f"python3 -m venv {images.VENV}\n"
              f"{pip} install -q --no-index --find-links /wheels /wheels/*.whl\n"
              f"{pip} check\n"
              f"{images.VENV}/bin/python -c 'import resonate, requests' || "
              f"{{ echo 'the app image needs {SDK}: add it to {reqs.source}' >&2; exit 1; }}")  # fmt: skip
    tag = images.install_layer(client, base, script, {house: "/wheels"}, "app-deps", digest)
    images.log.info("built %s (dependencies of %s, from %s) in %.1fs", tag, app.root, reqs.source,
                    time.monotonic() - started)  # fmt: skip
    return tag


def _files_layer(client: docker.DockerClient, deps: str, app: AppSpec, roots: list[Path], files: list[Path],
                 digest: str) -> str:  # fmt: skip
    started = time.monotonic()
    container = client.containers.create(deps, command=["true"], network_mode="none")
    try:
        with tempfile.TemporaryDirectory(prefix="app-", dir=images.tools_dir()) as tmp:
            tar = Path(tmp) / "app.tar"
            size = _files_tar(roots, files, tar)
            if size > LARGE_BYTES:
                print(f"harness[docker]: copying {size / 1e6:.0f} MB of {app.root} into the app image; a "
                      f".dockerignore there can leave files out", file=sys.stderr, flush=True)  # fmt: skip
            with tar.open("rb") as fh:
                container.put_archive("/", fh)
        tag = images._commit(
            container, "app", digest, [f"WORKDIR {app.root}"], labels={L_APP_ROOT: str(app.root)}
        )
    finally:
        container.remove(force=True, v=True)
    images.log.info(
        "built %s (%d files of %s) in %.1fs", tag, len(files), app.root, time.monotonic() - started
    )
    return tag
