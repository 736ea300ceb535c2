"""Container images for the Docker backend: they build, run offline, and are reused when unchanged.

Without a Docker daemon these tests skip (with the reason) on a developer machine and fail in CI
(CI=true), where the daemon is part of the contract.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import docker
import pytest

from harness.cluster import images

pytestmark = pytest.mark.docker


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI needs a Docker daemon for the image tests: {reason}")
    print(f"skipping image tests: {reason}", file=sys.stderr)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def client() -> Iterator[docker.DockerClient]:
    try:
        client = images.docker_client()
    except images.DockerUnavailable as exc:
        _unavailable(str(exc))
    yield client
    client.close()


@pytest.fixture(scope="module")
def server_bin() -> Path:
    path = images.default_server_bin()
    if not path.exists():
        _unavailable(f"no Resonate server binary at {path} (bash scripts/install-server.sh builds one)")
    return path


@pytest.fixture(scope="module")
def app_image(client: docker.DockerClient) -> str:
    return images.ensure_app_image(client, images.PROJECT_ROOT)


@pytest.fixture(scope="module")
def server_image(client: docker.DockerClient, server_bin: Path) -> str:
    return images.ensure_server_image(client, server_bin)


def _run(client: docker.DockerClient, image: str, command: list[str]) -> str:
    out: bytes = client.containers.run(image, command, network_mode="none", remove=True)
    return out.decode()


def test_app_image_imports_project_offline(client: docker.DockerClient, app_image: str) -> None:
    code = "import sys, resonate, harness, workflow; assert sys.version_info >= (3, 12); print(sys.version_info[:2])"
    out = _run(client, app_image, ["python", "-c", code])
    major, minor = (int(x) for x in out.strip().strip("()").split(","))
    assert (major, minor) >= (3, 12)
    labels = client.images.get(app_image).labels
    assert labels["harness.kind"] == "app"
    assert app_image.endswith(labels["harness.inputs-hash"][:16])


def test_server_image_runs_resonate(client: docker.DockerClient, server_image: str) -> None:
    assert "resonate version" in _run(client, server_image, ["--version"])
    attrs = client.images.get(server_image).attrs["Config"]
    assert attrs["Entrypoint"] == ["resonate"]


def test_second_ensure_is_a_cache_hit(
    client: docker.DockerClient,
    server_bin: Path,
    app_image: str,
    server_image: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_build(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("rebuilt an image whose inputs did not change")

    before = {tag: client.images.get(tag).id for tag in (app_image, server_image)}
    for name in ("_debootstrap_tarball", "_install_layer", "_commit", "_wheelhouse", "_project_wheel"):
        monkeypatch.setattr(images, name, no_build)
    base = images.ensure_base_image(client)
    assert images.ensure_base_image(client) == base
    assert images.ensure_server_image(client, server_bin) == server_image
    assert images.ensure_app_image(client, images.PROJECT_ROOT) == app_image
    assert {tag: client.images.get(tag).id for tag in before} == before


def test_inputs_hash_follows_project_files(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\nversion = "0"\n[tool.setuptools.packages.find]\ninclude = ["pkg*"]\n'
    )
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "__init__.py").write_text("")
    files = images.project_files(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in files] == ["pkg/__init__.py", "pyproject.toml"]
    first = images._files_digest(tmp_path, files)
    (tmp_path / "pkg" / "__init__.py").write_text("X = 1\n")
    assert images._files_digest(tmp_path, files) != first
    assert images.inputs_hash({"a": 1}) == images.inputs_hash({"a": 1}) != images.inputs_hash({"a": 2})


def test_missing_daemon_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(images.DockerUnavailable) as err:
        images.docker_client(base_url=f"unix://{tmp_path}/no-docker.sock", timeout=2)
    assert "install-docker.sh" in str(err.value)
