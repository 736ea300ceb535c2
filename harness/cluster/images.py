"""Container images for the Docker backend: a base, the Resonate server, Toxiproxy, and the shared
helpers of the app image (``harness.cluster.app_image``: the app's dependencies and files).

No container registry is reachable here, so the base image is normally built locally: a Debian
rootfs from ``debootstrap`` (mirror taken from apt's own sources), ``docker import``-ed. Python
packages reach the app image as wheels fetched or built on the host and installed offline.

Every image carries ``harness.inputs-hash`` (sha256 of what it was made from) and ``harness.kind``
labels and is tagged ``harness-<kind>:<hash[:16]>``; an image whose label matches is reused, and a
``filelock.FileLock`` under the cache's ``locks/`` keeps parallel pytest-xdist workers from
building the same thing twice.

``python -m harness.cluster.images [--app DIR] [--toxiproxy]`` builds (or finds) them all.

Environment:
    HARNESS_BASE_IMAGE    base to use if present locally (default ``python:3.12-slim``)
    HARNESS_ALLOW_PULL    ``1`` to try ``docker pull`` of that base (off: no registry is reachable)
    HARNESS_DEBIAN_SUITE  suite to debootstrap (default ``trixie``: Python 3.13; bookworm has 3.11)
    HARNESS_DEBIAN_MIRROR mirror URL (default: the first Debian archive URI in apt's sources)
    HARNESS_WHEEL_PYTHON  host interpreter for ``pip wheel`` (default: one matching the image's X.Y)
    HARNESS_CACHE_DIR     cache of tarballs, wheelhouses and locks (default ``images/`` of the
                          per-user cache, ``~/.cache/resonate-harness/images``)
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import io
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests
from docker.models.images import Image
from docker.types import Mount
from filelock import FileLock

from harness import paths
from harness.errors import HarnessError
from harness.stack import get_stack

log = logging.getLogger(__name__)

RECIPE = "harness-images/1"  # bump to force every image to be rebuilt
DEFAULT_BASE = "python:3.12-slim"
DEBIAN_PACKAGES = ("python3", "python3-venv", "ca-certificates", "netbase")
VENV = "/opt/venv"
IMAGE_PATH = f"{VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
LOCK_TIMEOUT = 1800.0
GLIBC_LIBS = ("linux-vdso", "libc.so", "ld-linux", "libpthread", "libdl", "libm.so", "librt", "libresolv")
PROBE = (
    "import json, platform, sys; print(json.dumps({'python': '%d.%d' % sys.version_info[:2],"
    " 'glibc': platform.libc_ver()[1], 'machine': platform.machine()}))"
)
PIP_HINT = "check that the package index answers (pip's output is above)"
INSTALL_HINT = "as root: bash scripts/install-docker.sh (installs docker.io and starts dockerd)"


class DockerUnavailable(HarnessError):
    """No Docker daemon answers."""


class ImageBuildError(HarnessError):
    """An image could not be made."""


def tools_dir() -> Path:
    """The cache folder for tarballs, wheelhouses and locks: $HARNESS_CACHE_DIR, else images/ of the
    per-user cache (harness.paths)."""
    path = Path(env) if (env := os.environ.get("HARNESS_CACHE_DIR")) else paths.cache_dir() / "images"
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_server_bin() -> Path:
    """The Resonate server binary the process backend would run: $RESONATE_SERVER_BIN, else what
    `harness setup` installed (harness.stack, the one place that finds it)."""
    return get_stack().server_bin


def docker_client(base_url: str | None = None, timeout: int = 600) -> docker.DockerClient:
    """A client for a daemon that answers ``ping``, or :class:`DockerUnavailable`."""
    try:
        client = (
            docker.DockerClient(base_url=base_url, timeout=timeout)
            if base_url
            else docker.from_env(timeout=timeout)
        )
        client.ping()
    except (docker.errors.DockerException, requests.RequestException) as exc:
        where = base_url or os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        raise DockerUnavailable(
            f"a Docker daemon answering at {where}", seen=str(exc), hint=INSTALL_HINT
        ) from exc
    return client


# --- hashing, lookup, locking -----------------------------------------------------------------


def inputs_hash(parts: dict[str, Any]) -> str:
    """sha256 over a JSON-able description of an image's inputs (plus the recipe version)."""
    blob = json.dumps({"recipe": RECIPE, **parts}, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def image_tag(kind: str, digest: str) -> str:
    """``harness-<kind>:<first 16 hex digits of the inputs hash>``."""
    return f"harness-{kind}:{digest[:16]}"


def _labels(kind: str, digest: str) -> dict[str, str]:
    return {"harness.inputs-hash": digest, "harness.kind": kind}


def find_image(client: docker.DockerClient, kind: str, digest: str) -> str | None:
    """The tag of an existing image built from these inputs (re-tagging it if the tag was lost)."""
    tag = image_tag(kind, digest)
    with contextlib.suppress(docker.errors.ImageNotFound):
        if client.images.get(tag).labels.get("harness.inputs-hash") == digest:
            return tag
    found = client.images.list(filters={"label": f"harness.inputs-hash={digest}"})
    if found:
        repo, name = tag.split(":")
        found[0].tag(repo, name)
        return tag
    return None


@contextlib.contextmanager
def build_lock(
    kind: str,
) -> Iterator[None]:
    """Cross-process lock for building one kind of image."""
    lock_dir = tools_dir() / "locks"
    lock_dir.mkdir(exist_ok=True)
    with FileLock(str(lock_dir / f"{kind}.lock"), timeout=LOCK_TIMEOUT):
        yield


def _ping(client: docker.DockerClient) -> None:
    try:
        client.ping()
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise DockerUnavailable("a Docker daemon answering ping", seen=str(exc), hint=INSTALL_HINT) from exc


def _run(cmd: list[str], what: str, *, hint: str = "", log_file: Path | None = None, **kwargs: Any) -> str:
    """Run a host command; on failure raise ImageBuildError with the tail of its output."""
    log.info("running %s", " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)
    out = proc.stdout + proc.stderr
    if log_file:
        log_file.write_text(out)
    if proc.returncode != 0:
        tail = "\n".join(out.strip().splitlines()[-15:])
        where = f" (full log: {log_file})" if log_file else ""
        raise ImageBuildError(
            f"{what} to succeed",
            seen=f"exit {proc.returncode}{where}:\n{tail}",
            hint=hint or "read the output above",
        )
    return str(proc.stdout)


def _commit(
    container: Any, kind: str, digest: str, changes: list[str], labels: dict[str, str] | None = None
) -> str:
    """Commit a container as ``harness-<kind>:<digest[:16]>`` with the inputs labels (and `labels`)."""
    tag = image_tag(kind, digest)
    repo, name = tag.split(":")
    every = {**_labels(kind, digest), **(labels or {})}
    container.commit(repository=repo, tag=name, changes=[*changes, *(f"LABEL {json.dumps(k)}={json.dumps(v)}"
                                                                      for k, v in every.items())])  # fmt: skip
    return tag


def _run_in_image(
    client: docker.DockerClient, image: str, command: list[str], **kwargs: Any
) -> tuple[int, str]:
    """Run a command in a throw-away container with no network; (exit code, output)."""
    container = client.containers.create(image, command=command, network_mode="none", **kwargs)
    try:
        container.start()
        code = container.wait(timeout=600)["StatusCode"]
        return code, container.logs().decode(errors="replace")
    finally:
        container.remove(force=True, v=True)


# --- base image -------------------------------------------------------------------------------


def debian_mirror() -> str:
    """The Debian archive URL apt uses here (HARNESS_DEBIAN_MIRROR overrides)."""
    if env := os.environ.get("HARNESS_DEBIAN_MIRROR"):
        return env
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        for stanza in Path(path).read_text().split("\n\n"):
            fields = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", stanza, re.M))
            uris, suites = fields.get("URIs", "").split(), fields.get("Suites", "").split()
            is_archive = bool(uris) and not uris[0].rstrip("/").endswith("-security")
            if "deb" in fields.get("Types", "").split() and is_archive and any("-" not in s for s in suites):
                return str(uris[0])
    for path in ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*.list"))]:
        with contextlib.suppress(OSError):
            for line in Path(path).read_text().splitlines():
                words = [w for w in line.split() if not w.startswith("[")]
                if len(words) >= 3 and words[0] == "deb" and "-" not in words[2] and "debian" in words[1]:
                    return words[1]
    raise ImageBuildError(
        "a Debian mirror in /etc/apt/sources.list(.d)",
        seen="none found",
        hint="set HARNESS_DEBIAN_MIRROR to a Debian archive URL",
    )


def _host_arch() -> str:
    try:
        return subprocess.run(
            ["dpkg", "--print-architecture"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)


def _unmount_under(root: Path) -> None:
    """Lazily unmount anything a failed debootstrap left mounted inside ``root``."""
    prefix = str(root.resolve())
    with contextlib.suppress(OSError):
        points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
        for point in sorted((p for p in points if p == prefix or p.startswith(prefix + "/")), reverse=True):
            subprocess.run(["umount", "-l", point], check=False, capture_output=True)


def _trim_rootfs(root: Path) -> None:
    """Drop what a container never needs: apt caches and lists, docs, host resolv.conf/hostname."""
    for pattern in [
        "var/cache/apt/archives/*.deb",
        "var/cache/apt/*.bin",
        "var/lib/apt/lists/*_*",
        "usr/share/doc/*",
        "usr/share/man/*",
        "usr/share/info/*",
        "var/log/*.log",
        "etc/resolv.conf",
        "etc/hostname",
    ]:
        for path in root.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)


def _debootstrap_tarball(parts: dict[str, Any], digest: str) -> Path:
    """Build (or reuse) ``.tools/images/base-<hash>.tar``: a trimmed debootstrap rootfs."""
    cache = tools_dir()
    tarball = cache / f"base-{digest[:16]}.tar"
    if tarball.exists():
        return tarball
    if os.geteuid() != 0:
        raise ImageBuildError(
            "root, to debootstrap a base image",
            seen=f"uid {os.geteuid()}",
            hint=f"run as root, or provide HARNESS_BASE_IMAGE locally (default {DEFAULT_BASE})",
        )
    if not shutil.which("debootstrap"):
        raise ImageBuildError("the debootstrap command", seen="not on PATH", hint=INSTALL_HINT)
    debs = cache / "debcache"
    debs.mkdir(exist_ok=True)
    rootfs = Path(tempfile.mkdtemp(prefix=f"rootfs-{digest[:16]}-", dir=cache))
    try:
        _run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--arch={parts['arch']}",
                f"--include={','.join(parts['packages'])}",
                f"--cache-dir={debs}",
                parts["suite"],
                str(rootfs),
                parts["mirror"],
            ],
            f"debootstrap of Debian {parts['suite']} from {parts['mirror']}",
            hint="check HARNESS_DEBIAN_MIRROR (default: apt's sources) and HARNESS_DEBIAN_SUITE",
            log_file=cache / f"base-{digest[:16]}.debootstrap.log",
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
        _unmount_under(rootfs)
        _trim_rootfs(rootfs)
        partial = tarball.with_suffix(".tar.partial")
        _run(
            ["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(partial), "."], "tar of the base rootfs"
        )
        partial.rename(tarball)
    finally:
        _unmount_under(rootfs)
        shutil.rmtree(rootfs, ignore_errors=True)
    return tarball


def ensure_base_image(
    client: docker.DockerClient,
    *,
    base: str | None = None,
) -> str:
    """A base image with Python >= 3.12: the configured one if present (or pullable), else debootstrap."""
    _ping(client)
    base = base or os.environ.get("HARNESS_BASE_IMAGE") or DEFAULT_BASE
    with contextlib.suppress(docker.errors.ImageNotFound):
        client.images.get(base)
        return base
    if os.environ.get("HARNESS_ALLOW_PULL") == "1":
        try:
            client.images.pull(base)
            return base
        except docker.errors.APIError as exc:
            log.warning("could not pull %s (%s); building a base image with debootstrap", base, exc)
    parts = {
        "kind": "base",
        "suite": os.environ.get("HARNESS_DEBIAN_SUITE", "trixie"),
        "mirror": debian_mirror(),
        "arch": _host_arch(),
        "packages": sorted(DEBIAN_PACKAGES),
    }
    digest = inputs_hash(parts)
    if tag := find_image(client, "base", digest):
        return tag
    with build_lock("base"):
        if tag := find_image(client, "base", digest):
            return tag
        started = time.monotonic()
        tarball = _debootstrap_tarball(parts, digest)
        tag = image_tag("base", digest)
        repo, name = tag.split(":")
        changes = [
            f"ENV PATH={IMAGE_PATH.split(':', 1)[1]}",
            "ENV LANG=C.UTF-8",
            'CMD ["python3"]',
            *(f"LABEL {k}={v}" for k, v in _labels("base", digest).items()),
        ]
        try:
            client.api.import_image_from_file(str(tarball), repository=repo, tag=name, changes=changes)
        except docker.errors.APIError as exc:
            raise ImageBuildError(
                f"docker import of {tarball}",
                seen=str(exc),
                hint=f"delete {tarball} to rebuild it; check the dockerd log",
            ) from exc
        if find_image(client, "base", digest) is None:
            raise ImageBuildError(
                f"image {tag} after docker import", seen="no such image", hint="check the dockerd log"
            )
        log.info("built %s in %.1fs", tag, time.monotonic() - started)
        return tag


def _image_id(client: docker.DockerClient, ref: str) -> str:
    """The content id of an image, which downstream inputs hashes build on."""
    image: Image = client.images.get(ref)
    return str(image.id)


# --- server image -----------------------------------------------------------------------------


def check_server_binary(server_bin: Path) -> None:
    """Fail early if the binary is missing or needs shared libraries beyond glibc."""
    if not server_bin.is_file() or not os.access(server_bin, os.X_OK):
        raise ImageBuildError(
            "an executable Resonate server binary",
            seen=f"{server_bin} is missing or not executable",
            hint="run `harness setup` (it builds the server into the cache), or pass another path",
        )
    if not shutil.which("ldd"):
        return
    out = subprocess.run(["ldd", str(server_bin)], capture_output=True, text=True, check=False)
    text = out.stdout + out.stderr
    if "not a dynamic executable" in text or "statically linked" in text:
        return
    libs = [line.split()[0] for line in out.stdout.splitlines() if line.strip()]
    extra = [lib for lib in libs if not lib.startswith(GLIBC_LIBS) and "ld-linux" not in lib]
    if extra or "not found" in text:
        raise ImageBuildError(
            f"{server_bin} to need only glibc (a cgo build linking libc alone)",
            seen=f"ldd lists {', '.join(extra) or text.strip()}",
            hint="build it with CGO_ENABLED=1 and the default (bundled) sqlite",
        )


def _binary_tar(binary: Path, dest: str, dirs: tuple[str, ...] = ()) -> bytes:
    """A tar holding `binary` at `dest` (root-owned, executable) and the empty `dirs`."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in dirs:
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        info = tar.gettarinfo(str(binary), arcname=dest)
        info.mode, info.uid, info.gid, info.uname, info.gname = 0o755, 0, 0, "root", "root"
        with binary.open("rb") as fh:
            tar.addfile(info, fh)
    return buf.getvalue()


def _binary_image(
    client: docker.DockerClient,
    kind: str,
    binary: Path,
    tar: bytes,
    changes: list[str],
    check: tuple[list[str], str, str],
) -> str:
    """The base image plus one host binary (a tar of it), committed with `changes`, labelled with
    the inputs hash; `check` = (args to run in the new image, what its output must contain, a hint)."""
    _ping(client)
    base = ensure_base_image(client)
    digest = inputs_hash({"kind": kind, "base": _image_id(client, base), "bin": file_sha256(binary)})
    if tag := find_image(client, kind, digest):
        return tag
    with build_lock(kind):
        if tag := find_image(client, kind, digest):
            return tag
        started = time.monotonic()
        container = client.containers.create(base, command=["true"], network_mode="none")
        try:
            container.put_archive("/", tar)
            tag = _commit(container, kind, digest, changes)
        finally:
            container.remove(force=True, v=True)
        args, expect, hint = check
        code, out = _run_in_image(client, tag, args)
        if code != 0 or expect not in out:
            client.images.remove(tag, force=True)
            raise ImageBuildError(f"`{' '.join(args)}` to run in {tag}", seen=f"exit {code}: {out.strip()[-500:]}",
                                  hint=hint)  # fmt: skip
        log.info("built %s in %.1fs", tag, time.monotonic() - started)
        return tag


def ensure_server_image(client: docker.DockerClient, server_bin: Path) -> str:
    """An image with ``server_bin`` at /usr/local/bin/resonate, entrypoint ``resonate`` (cmd ``serve``)."""
    server_bin = Path(server_bin).resolve()
    check_server_binary(server_bin)
    return _binary_image(
        client, "server", server_bin,
        _binary_tar(server_bin, "usr/local/bin/resonate", dirs=("var/lib/resonate",)),
        ['ENTRYPOINT ["resonate"]', 'CMD ["serve"]', "WORKDIR /var/lib/resonate"],
        (["--version"], "version", "the binary may need a newer glibc than the base image has"),
    )  # fmt: skip


# --- toxiproxy image --------------------------------------------------------------------------

TOXIPROXY_API_PORT = 8474  # toxiproxy-server's own default


def ensure_toxiproxy_image(client: docker.DockerClient, toxiproxy_bin: Path | None = None) -> str:
    """An image with ``toxiproxy_bin`` (default: the one `harness setup` installs) at
    /usr/local/bin/toxiproxy-server; entrypoint that binary, listening on 0.0.0.0:8474."""
    from harness import toxiproxy  # the binary's lookup and install hint live there

    binary = toxiproxy.server_bin(toxiproxy_bin).resolve()
    return _binary_image(
        client, "toxiproxy", binary,
        _binary_tar(binary, "usr/local/bin/toxiproxy-server"),
        ['ENTRYPOINT ["toxiproxy-server"]', f'CMD ["-host", "0.0.0.0", "-port", "{TOXIPROXY_API_PORT}"]',
         f"EXPOSE {TOXIPROXY_API_PORT}"],
        (["-version"], "version", f"{binary} must be a static (CGO_ENABLED=0) build; {toxiproxy.INSTALL_HINT}"),
    )  # fmt: skip


# --- Python packages for the app image (harness.cluster.app_image builds it) -------------------


def python_probe(client: docker.DockerClient, image: str) -> dict[str, str]:
    """The Python version, glibc and machine of an image (what wheels it takes); needs >= 3.12."""
    code, out = _run_in_image(client, image, ["python3", "-c", PROBE])
    if code != 0:
        raise ImageBuildError(
            f"python3 in the base image {image}", seen=out.strip()[-500:], hint="use another base"
        )
    probe: dict[str, str] = json.loads(out.strip().splitlines()[-1])
    if tuple(int(x) for x in probe["python"].split(".")) < (3, 12):
        raise ImageBuildError(
            f"Python >= 3.12 in the base image {image}",
            seen=f"Python {probe['python']}",
            hint="HARNESS_DEBIAN_SUITE=trixie, or a HARNESS_BASE_IMAGE with Python >= 3.12",
        )
    return probe


def _python_for(version: str) -> str | None:
    """A host interpreter of the given X.Y with pip, to ``pip wheel`` for the image's Python."""
    if env := os.environ.get("HARNESS_WHEEL_PYTHON"):
        return env
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates = [
        sys.executable,
        shutil.which(f"python{version}") or "",
        *sorted(glob.glob(str(pyenv / f"{version}*" / "bin" / f"python{version}")), reverse=True),
    ]
    check = f"import sys, pip; assert '%d.%d' % sys.version_info[:2] == {version!r}"
    for cand in filter(None, candidates):
        if subprocess.run([cand, "-c", check], capture_output=True, check=False).returncode == 0:
            return cand
    return None


def _manylinux_platforms(glibc: str, machine: str) -> list[str]:
    major, minor = (int(x) for x in glibc.split(".")[:2])
    tags = [f"manylinux_{major}_{m}_{machine}" for m in range(minor, 4, -1)]
    return [*tags, f"manylinux2014_{machine}", f"manylinux2010_{machine}", f"manylinux1_{machine}"]


def wheelhouse(pip_args: list[str], key: dict[str, Any], probe: dict[str, str], *, cwd: Path | None = None,) -> Path:  # fmt: skip
    """Wheels of ``pip wheel PIP_ARGS`` (requirement specifiers, ``-r FILE``) for the image's Python
    (`probe`), cached under .tools/images/wheelhouse/ by `key` (what the arguments stand for)."""
    digest = inputs_hash({"kind": "wheelhouse", **key, **probe})[:16]
    house = tools_dir() / "wheelhouse" / digest
    if (house / ".complete").exists():
        return house
    shutil.rmtree(house, ignore_errors=True)
    house.mkdir(parents=True)
    version = probe["python"]
    if python := _python_for(version):
        cmd = [python, "-m", "pip", "wheel", "-q", "--wheel-dir", str(house), *pip_args]
        _run(cmd, f"pip wheel of the app's dependencies with {python}", hint=PIP_HINT, cwd=cwd)
    else:  # no host interpreter of that version: fetch binary wheels built for it
        abi = "cp" + version.replace(".", "")
        plats = [a for p in _manylinux_platforms(probe["glibc"], probe["machine"]) for a in ("--platform", p)]
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "--implementation", "cp"]
        cmd += ["--python-version", version, "--abi", abi, "--abi", "abi3", "--abi", "none", *plats]
        what = f"pip download of binary wheels for CPython {version} (no python{version} on the host)"
        _run([*cmd, "--dest", str(house), *pip_args], what, cwd=cwd,
             hint=f"{PIP_HINT}, or install python{version} (local or sdist-only requirements need it)")  # fmt: skip
    if not any(house.glob("*.whl")):
        raise ImageBuildError(f"wheels in {house}", seen="pip made none", hint=PIP_HINT)
    (house / ".complete").write_text("")
    return house


def install_layer(
    client: docker.DockerClient, image: str, script: str, mounts: dict[Path, str], kind: str, digest: str
) -> str:
    """Run ``script`` in ``image`` (no network, `mounts` read-only) and commit the result."""
    # Mount objects, not `volumes=`: docker-py declares those as image VOLUMEs too, which the commit keeps
    binds = [Mount(bind, str(host), type="bind", read_only=True) for host, bind in mounts.items()]
    container = client.containers.create(
        image, command=["/bin/sh", "-ec", script], network_mode="none", mounts=binds
    )
    try:
        container.start()
        code = container.wait(timeout=1200)["StatusCode"]
        if code != 0:
            out = container.logs().decode(errors="replace").strip()
            raise ImageBuildError(
                f"the {kind} install step to succeed in {image}",
                seen=f"exit {code}:\n{out[-2000:]}",
                hint=f"delete {tools_dir() / 'wheelhouse'} to refetch the wheels",
            )
        changes = [
            f"ENV PATH={IMAGE_PATH}",
            f"ENV VIRTUAL_ENV={VENV}",
            "ENV PYTHONUNBUFFERED=1",
            "ENTRYPOINT []",
            'CMD ["python"]',
        ]
        return _commit(container, kind, digest, changes)
    finally:
        container.remove(force=True, v=True)


def prune_superseded(
    client: docker.DockerClient, kind: str, keep: str, labels: dict[str, str] | None = None
) -> None:
    """Remove older images of a kind (and `labels`): one is built per source change; images in use stay."""
    flt = [f"harness.kind={kind}", *(f"{k}={v}" for k, v in (labels or {}).items())]
    for image in client.images.list(filters={"label": flt}):
        if keep in image.tags:
            continue
        with contextlib.suppress(docker.errors.APIError):  # in use by a container: keep it
            client.images.remove(image.id)


def _main(argv: list[str] | None = None) -> None:
    """``python -m harness.cluster.images [--app DIR] [--toxiproxy]``: build (or find) the images a
    Docker run uses and print their tags, sizes and timings."""
    import argparse

    from harness.app.spec import AppSpec
    from harness.cluster.app_image import ensure_app_image

    p = argparse.ArgumentParser(prog="python -m harness.cluster.images", description=_main.__doc__)
    p.add_argument("--app", type=Path, metavar="DIR", help="the app (default: the reference app)")
    p.add_argument("--toxiproxy", action="store_true", help="also the toxiproxy image (proxied clusters)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    client = docker_client()
    app = AppSpec.load(args.app)
    steps: list[tuple[str, Callable[[], str]]] = [
        ("base", lambda: ensure_base_image(client)),
        ("server", lambda: ensure_server_image(client, default_server_bin())),
        ("app", lambda: ensure_app_image(client, app)),
    ]
    if args.toxiproxy:
        steps.append(("toxiproxy", lambda: ensure_toxiproxy_image(client)))
    for name, build in steps:
        started = time.monotonic()
        tag = build()
        size = client.images.get(tag).attrs["Size"] / 1e6
        print(f"{name:9} {tag:40} {size:7.1f} MB  {time.monotonic() - started:6.1f}s", flush=True)


if __name__ == "__main__":
    _main()
