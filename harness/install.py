"""`harness setup`: build the Resonate server and Toxiproxy into the per-user cache, once.

Both come from the Go module proxy and are built with the local Go toolchain:

- the legacy Resonate server (github.com/resonatehq/resonate, v0.8.2 by default, cgo for SQLite).
  `go install module@version` is tried first; v0.8.2's go.mod has local `replace` directives, which
  `go install` refuses, so the module is then downloaded (`go mod download`) and built with
  `go build` from a copy of its own root;
- Toxiproxy (github.com/Shopify/toxiproxy/v2, static), whose `server` and `cli` binaries are
  renamed toxiproxy-server and toxiproxy-cli.

A file lock per tool makes parallel callers (pytest-xdist workers, two shells) build once; a
version stamp next to the binaries says what was built. `ensure_tools` is what runs call: it
installs only what is missing and says so on one line.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from filelock import FileLock, Timeout

from harness import paths
from harness.errors import HarnessError

Log = Callable[[str], None]
LOCK_TIMEOUT = 1800.0
BUILD_TIMEOUT = 1800.0
HEARTBEAT_S = 20.0
SERVER_BIN_ENV = "RESONATE_SERVER_BIN"
TOXIPROXY_BIN_ENV = "TOXIPROXY_SERVER_BIN"


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Tool:
    key: str  # names the stamp, lock and build log
    title: str
    module: str
    default_version: str
    version_env: str
    binaries: tuple[str, ...]  # the first is the one runs use
    override_env: str  # set: runs use that binary instead of the cache's
    takes: str  # how long a build takes, for messages

    def version(self) -> str:
        return os.environ.get(self.version_env) or self.default_version

    def installed(self, where: Path | None) -> bool:
        """Whether `where` holds this tool's binaries, stamped with the wanted version."""
        if where is None or not all(paths.executable(where / b) for b in self.binaries):
            return False
        stamp = where / f"{self.key}.version"
        return stamp.is_file() and stamp.read_text().strip() == self.version()

    def available(self) -> bool:
        """Installed in the cache, or (a source checkout) by the old scripts in .tools/bin."""
        return self.installed(paths.bin_dir()) or self.installed(paths.legacy_bin_dir())


SERVER = Tool("resonate", "the Resonate server", "github.com/resonatehq/resonate", "v0.8.2",
              "RESONATE_SERVER_VERSION", ("resonate",), SERVER_BIN_ENV, "about a minute")  # fmt: skip
TOXIPROXY = Tool("toxiproxy", "Toxiproxy", "github.com/Shopify/toxiproxy/v2", "v2.12.0",
                 "TOXIPROXY_VERSION", ("toxiproxy-server", "toxiproxy-cli"), TOXIPROXY_BIN_ENV,
                 "seconds")  # fmt: skip
TOOLS = (SERVER, TOXIPROXY)


# --- what runs call -------------------------------------------------------------------------
def ensure_tools(
    server_bin: Path | str | None = None, *, toxiproxy: bool = False, log: Log = _stderr
) -> None:
    """Install the server (and Toxiproxy, when the run proxies its workers) if missing, once.
    A binary named by --server-bin or the environment is never replaced."""
    if not server_bin:
        ensure(SERVER, log=log)
    if toxiproxy:
        ensure(TOXIPROXY, log=log)


def ensure(tool: Tool, *, log: Log = _stderr) -> None:
    """Install `tool` into the cache if it is missing there (and no binary is named in the environment)."""
    if os.environ.get(tool.override_env) or tool.available():
        return
    log(f"harness: {tool.title} is not installed; installing it into {paths.display(paths.bin_dir())} "
        f"(once, {tool.takes})")  # fmt: skip
    install(tool, log=log)


def setup(*, docker: bool = False, force: bool = False, log: Log = _stderr) -> None:
    """Everything `harness setup` does: both tools, and with `docker` a Docker engine."""
    log(f"harness setup: cache {paths.cache_dir()}")
    for tool in TOOLS:
        binary = install(tool, force=force, log=log)
        if os.environ.get(tool.override_env):
            log(f"harness setup: note: {tool.override_env} is set, so runs use {os.environ[tool.override_env]}"
                f" instead of {binary}")  # fmt: skip
    if docker:
        install_docker(log)


def install(tool: Tool, *, force: bool = False, log: Log = _stderr) -> Path:
    """Build `tool` into the cache unless it is there at the wanted version; the path of its binary."""
    where = paths.bin_dir()
    where.mkdir(parents=True, exist_ok=True)
    version = tool.version()
    lock = FileLock(str(where / f".install-{tool.key}.lock"))
    try:
        lock.acquire(timeout=LOCK_TIMEOUT)
    except Timeout:
        raise HarnessError(f"the install lock of {tool.title} within {LOCK_TIMEOUT:g}s", seen=f"{lock.lock_file} held",
                           hint="another `harness setup` may still be building; wait for it") from None  # fmt: skip
    try:
        if force or not tool.installed(where):
            legacy = paths.legacy_bin_dir()
            if not force and tool.installed(legacy):
                assert legacy is not None
                log(f"harness setup: {tool.title} {version}: copying the build in {legacy}")
                for name in tool.binaries:
                    _place(legacy / name, where / name, copy=True)
            else:
                BUILDERS[tool.key](tool, version, where, log)
            (where / f"{tool.key}.version").write_text(version + "\n")
        binary = where / tool.binaries[0]
        log(f"harness setup: {tool.title} {version} ready: {binary} ({_version_line(tool, binary)})")
        return binary
    finally:
        lock.release()


# --- building -----------------------------------------------------------------------------------
def _build_server(tool: Tool, version: str, where: Path, log: Log) -> None:
    go = _need_go(tool, "1.24")
    cc = (os.environ.get("CC") or "gcc").split()[0]
    if not shutil.which(cc):
        raise HarnessError(f"a C compiler to build {tool.title} (cgo, for SQLite)", seen=f"no {cc} on PATH",
                           hint=f"install gcc (e.g. apt-get install gcc), or set {SERVER_BIN_ENV} to a resonate binary")  # fmt: skip
    log(f"harness setup: building {tool.module}@{version} ({tool.takes}, once)")
    env = {**os.environ, "GOFLAGS": "-mod=mod", "CGO_ENABLED": "1"}
    with tempfile.TemporaryDirectory(prefix=".build-", dir=where) as tmp:
        work = Path(tmp)
        code, _out, _err = _go(
            tool, [go, "install", f"{tool.module}@{version}"], work, {**env, "GOBIN": str(work)}, log
        )
        if code == 0:
            _place(work / "resonate", where / "resonate")
            return
        log("harness setup: `go install` refused it (its go.mod has replace directives); building it from its "
            "module root instead")  # fmt: skip
        code, out, err = _go(
            tool, [go, "mod", "download", "-json", f"{tool.module}@{version}"], work, env, log
        )
        try:
            info = json.loads(out)
        except json.JSONDecodeError:
            info = {}
        src = info.get("Dir", "") if code == 0 else ""
        if not src:
            raise HarnessError(f"the Go module proxy to serve {tool.module}@{version}",
                               seen=info.get("Error") or _last_line(err + out),
                               hint=f"check GOPROXY and the network; see {_log_path(tool)}")  # fmt: skip
        root = work / "src"
        shutil.copytree(src, root)
        _writable(root)  # the module cache is read-only
        code, out, err = _go(tool, [go, "build", "-o", str(work / "resonate"), "."], root, env, log)
        if code != 0:
            raise HarnessError(f"a build of {tool.module}@{version}", seen=_last_line(err + out),
                               hint=f"see {_log_path(tool)}; or set {SERVER_BIN_ENV} to a resonate binary")  # fmt: skip
        _place(work / "resonate", where / "resonate")


def _build_toxiproxy(tool: Tool, version: str, where: Path, log: Log) -> None:
    go = _need_go(tool, "1.22")
    log(f"harness setup: building {tool.module}@{version} ({tool.takes}, once)")
    env = {**os.environ, "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"}
    with tempfile.TemporaryDirectory(prefix=".build-", dir=where) as tmp:
        work = Path(tmp)
        args = [
            go,
            "install",
            "-ldflags",
            f"-s -w -X {tool.module}.Version={version}",
            f"{tool.module}/cmd/...@{version}",
        ]
        code, out, err = _go(tool, args, work, {**env, "GOBIN": str(work)}, log)
        if code != 0:
            raise HarnessError(f"the Go module proxy to serve {tool.module}@{version} and a build of it",
                               seen=_last_line(err + out), hint=f"see {_log_path(tool)}")  # fmt: skip
        _place(work / "server", where / "toxiproxy-server")
        _place(work / "cli", where / "toxiproxy-cli")


BUILDERS: dict[str, Callable[[Tool, str, Path, Log], None]] = {
    SERVER.key: _build_server,
    TOXIPROXY.key: _build_toxiproxy,
}


def _need_go(tool: Tool, minimum: str) -> str:
    go = shutil.which("go")
    if go is None:
        raise HarnessError(f"Go >= {minimum} to build {tool.title}", seen="no 'go' on PATH",
                           hint=f"install Go >= {minimum} and put it on PATH, or set {tool.override_env} "
                                f"to a {tool.binaries[0]} binary")  # fmt: skip
    return go


def _go(tool: Tool, args: list[str], cwd: Path, env: dict[str, str], log: Log) -> tuple[int, str, str]:
    """Run a go command, its output appended to the tool's build log: (exit code, stdout, stderr).
    Says every few seconds that it is still going."""
    log_path = _log_path(tool)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=out, stderr=err, text=True)
        started = time.monotonic()
        while True:
            try:
                proc.wait(timeout=HEARTBEAT_S)
                break
            except subprocess.TimeoutExpired:
                waited = time.monotonic() - started
                if waited > BUILD_TIMEOUT:
                    proc.kill()
                    proc.wait()
                    raise HarnessError(f"`go {args[1]}` to finish within {BUILD_TIMEOUT:g}s", seen="still running",
                                       hint=f"a slow machine can set {tool.override_env} instead") from None  # fmt: skip
                log(f"harness setup: still running go {args[1]} ({waited:.0f}s)")
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    with log_path.open("a") as build_log:
        build_log.write(f"$ {' '.join(args)}  (in {cwd}; exit {proc.returncode})\n{stdout}{stderr}\n")
    return proc.returncode, stdout, stderr


def _log_path(tool: Tool) -> Path:
    return paths.logs_dir() / f"{tool.key}-build.log"


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def _writable(root: Path) -> None:
    for dirpath, _dirs, files in os.walk(root):
        os.chmod(dirpath, 0o755)
        for name in files:
            p = Path(dirpath) / name
            p.chmod(p.stat().st_mode | 0o200)


def _place(src: Path, dest: Path, *, copy: bool = False) -> None:
    """Put a binary at `dest` atomically (a run may be reading the old one)."""
    tmp = dest.with_name(f".{dest.name}.tmp")
    if copy:
        shutil.copy2(src, tmp)
    else:
        shutil.move(src, tmp)
    tmp.chmod(0o755)
    os.replace(tmp, dest)


def _version_line(tool: Tool, binary: Path) -> str:
    flag = "--version" if tool is SERVER else "-version"
    try:
        res = subprocess.run([str(binary), flag], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise HarnessError(f"a runnable {binary.name} at {binary}", seen=str(e),
                           hint="harness setup --force rebuilds it") from e  # fmt: skip
    return _last_line(res.stdout + res.stderr)


# --- Docker -------------------------------------------------------------------------------------
def install_docker(log: Log = _stderr) -> None:
    """Make a Docker daemon answer (as root: Debian's docker.io, then dockerd): install-docker.sh."""
    script = resources.files("harness") / "data" / "install-docker.sh"
    log("harness setup: Docker engine (install-docker.sh)")
    with resources.as_file(script) as path:
        code = subprocess.run(["bash", str(path)], check=False).returncode
    if code != 0:
        raise HarnessError("a Docker daemon that answers", seen=f"install-docker.sh exited {code} (its reason is above)",
                           hint="run `harness setup --docker` as root, or point DOCKER_HOST at a daemon")  # fmt: skip
