"""Installing the harness: the per-user cache, `harness setup` (lock, stamp, errors), and the built
wheel installed into a fresh venv and run from an empty directory."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import threading
import time
from pathlib import Path

import pytest

from harness import install, paths
from harness.errors import HarnessError

FAKE_BIN = "#!/bin/sh\necho '{name} version 0.0.0-fake'\n"
SOURCE_IGNORE = shutil.ignore_patterns(".venv", ".git", ".tools", "runs", "build", "dist", "*.egg-info",
                                       "__pycache__", ".pytest_cache", ".ruff_cache")  # fmt: skip


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache, no binary named in the environment, no checkout's .tools/bin to fall back on."""
    monkeypatch.setenv(paths.CACHE_ENV, str(tmp_path / "cache"))
    for env in (install.SERVER_BIN_ENV, install.TOXIPROXY_BIN_ENV, install.SERVER.version_env):
        monkeypatch.delenv(env, raising=False)
    monkeypatch.setattr(paths, "legacy_bin_dir", lambda: None)
    return tmp_path / "cache"


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Replace the Go builds with a slow fake that writes scripts; returns the list of builds done."""
    done: list[str] = []

    def fake(tool: install.Tool, version: str, where: Path, log: install.Log) -> None:
        time.sleep(0.3)
        for name in tool.binaries:
            (where / name).write_text(FAKE_BIN.format(name=name))
            (where / name).chmod(0o755)
        done.append(tool.key)

    monkeypatch.setattr(install, "BUILDERS", {t.key: fake for t in install.TOOLS})
    return done


def test_the_cache_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(paths.CACHE_ENV, raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert paths.cache_dir() == tmp_path / ".cache" / "resonate-harness"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    assert paths.cache_dir() == tmp_path / ".cache" / "resonate-harness"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert paths.bin_dir() == tmp_path / "xdg" / "resonate-harness" / "bin"
    monkeypatch.setenv(paths.CACHE_ENV, str(tmp_path / "mine"))
    assert paths.cache_dir() == tmp_path / "mine"
    assert paths.display(tmp_path / "mine") == "~/mine"


def test_parallel_installs_build_once_and_stamp_the_version(cache: Path, builds: list[str]) -> None:
    threads = [threading.Thread(target=install.install, args=(install.SERVER,), kwargs={"log": lambda _: None})
               for _ in range(3)]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert builds == ["resonate"]
    assert (cache / "bin" / "resonate.version").read_text().strip() == install.SERVER.version()
    assert install.SERVER.available()
    assert paths.tool_path("resonate") == cache / "bin" / "resonate"
    install.install(install.SERVER, log=lambda _: None)
    assert builds == ["resonate"]  # stamped: nothing to do
    install.install(install.SERVER, force=True, log=lambda _: None)
    assert builds == ["resonate", "resonate"]


def test_a_run_installs_what_is_missing_and_says_so(cache: Path, builds: list[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    said: list[str] = []
    install.ensure_tools("/some/resonate", toxiproxy=False, log=said.append)
    assert builds == [] and said == []  # a named binary is never replaced
    install.ensure_tools(None, toxiproxy=True, log=said.append)
    assert builds == ["resonate", "toxiproxy"]
    assert said[0] == (f"harness: the Resonate server is not installed; installing it into {paths.display(cache / 'bin')}"
                       " (once, about a minute)")  # fmt: skip
    install.ensure_tools(None, toxiproxy=True, log=said.append)
    assert builds == ["resonate", "toxiproxy"]
    monkeypatch.setenv(install.SERVER.version_env, "v9.9.9")
    install.ensure_tools(None, log=said.append)
    assert builds == ["resonate", "toxiproxy", "resonate"]  # another version wanted: built again


def test_no_go_is_one_clear_line(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(HarnessError) as err:
        install.install(install.SERVER, log=lambda _: None)
    line = err.value.oneline()
    assert "Go >= 1.24" in line and "no 'go' on PATH" in line and "RESONATE_SERVER_BIN" in line
    assert "\n" not in line


def test_the_docker_script_ships_with_the_package() -> None:
    from importlib import resources

    script = resources.files("harness") / "data" / "install-docker.sh"
    assert "dockerd" in script.read_text()


# --- the wheel ------------------------------------------------------------------------------------
def _venv_with_the_wheel(tmp_path: Path) -> Path:
    """Build the wheel from a copy of the source tree and install it (--no-deps, no index) into a
    fresh venv that sees the dependencies already installed in this one."""
    if not (paths.SOURCE_ROOT / "pyproject.toml").is_file():
        pytest.skip("not a source checkout")
    src, wheels, venv = tmp_path / "src", tmp_path / "wheels", tmp_path / "venv"
    shutil.copytree(paths.SOURCE_ROOT, src, ignore=SOURCE_IGNORE)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(wheels), str(src)], check=True, timeout=300)  # fmt: skip
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()  # fmt: skip
    # a plain path entry: this venv's packages are importable, its .pth files (the editable install) are not run
    (Path(site) / "deps-from-dev-venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    wheel = next(wheels.glob("resonate_harness-*.whl"))
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
                   check=True, timeout=300)  # fmt: skip
    return venv


@pytest.mark.slow
def test_the_wheel_runs_a_scenario_from_an_empty_directory(tmp_path: Path, server_ready: None,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    from harness.stack import get_stack

    venv = _venv_with_the_wheel(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv(install.SERVER_BIN_ENV, str(get_stack().server_bin))
    monkeypatch.setenv(paths.CACHE_ENV, str(tmp_path / "cache"))

    def harness(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(venv / "bin" / "harness"), *args], cwd=empty, capture_output=True, text=True,
                              timeout=600)  # fmt: skip

    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import harness, workflow, scenarios, reports; "
                            "print(harness.__file__, workflow.__file__)"], cwd=empty, capture_output=True,
                           text=True, check=True).stdout  # fmt: skip
    assert str(venv) in where and str(paths.SOURCE_ROOT) not in where, where
    listed = harness("list")
    assert listed.returncode == 0 and "crash-recovery" in listed.stdout and "smoke" in listed.stdout, listed
    run = harness("run", "smoke", "--out", str(tmp_path / "run"))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "PASS  exactly_once" in run.stdout and (tmp_path / "run" / "report.html").is_file()
    assert list(empty.iterdir()) == [], "nothing is written into the current directory with --out"
    site = Path(where.split()[0]).parent.parent
    assert not (site / ".tools").exists() and not (site / "runs").exists()
