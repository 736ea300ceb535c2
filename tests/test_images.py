"""Container images for the Docker backend: they build from the app's own directory and declared
dependencies, run offline, and are reused when unchanged (only the app layer when only files change).

Tests that need a Docker daemon skip (with the reason) on a developer machine and fail in CI
(CI=true), where the daemon is part of the contract: the conftest fixtures `docker_daemon` and
`server_ready`.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from harness.app.spec import AppSpec
from harness.cluster import app_image, images
from harness.errors import HarnessError

docker_test = pytest.mark.docker


def make_app(root: Path, requirements: str | None = "resonate-sdk==0.6.7\n", config: str = "") -> AppSpec:
    """A small app: a harness.toml, a worker script, a handler module and (optionally) requirements.txt."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "harness.toml").write_text(
        textwrap.dedent(
            """
            [app]
            handler = "handler:handler"
            worker = "serve.py"
            [submit]
            path = "/go"
            body = { id = "{job}" }
            """
        )
        + config
    )
    (root / "serve.py").write_text("print('serving')\n")
    (root / "handler.py").write_text(
        "def handler(event, context):\n    return {'statusCode': 200, 'body': 'ok'}\n"
    )
    if requirements is not None:
        (root / "requirements.txt").write_text(requirements)
    return AppSpec.load(root)


@pytest.fixture(scope="module")
def client(docker_daemon: None) -> Iterator[docker.DockerClient]:
    c = images.docker_client()
    yield c
    c.close()


@pytest.fixture(scope="module")
def reference_image(client: docker.DockerClient) -> str:
    return app_image.ensure_app_image(client, AppSpec.load(None))


@pytest.fixture(scope="module")
def server_image(client: docker.DockerClient, server_versions: dict[str, str]) -> str:
    return images.ensure_server_image(client, images.default_server_bin())


def _run(client: docker.DockerClient, image: str, command: list[str]) -> str:
    """Run a command in the image offline (no network) and return its output; the container is removed."""
    code, out = images._run_in_image(client, image, command)
    assert code == 0, out
    return out


def _layers(client: docker.DockerClient, ref: str) -> list[str]:
    return list(client.images.get(ref).attrs["RootFS"]["Layers"])


# --- images (need a daemon) ----------------------------------------------------------------------
@docker_test
def test_reference_app_image_has_its_deps_and_files_but_not_the_harness(
    client: docker.DockerClient, reference_image: str
) -> None:
    app = AppSpec.load(None)
    code = ("import sys, resonate, requests, importlib.util as u; assert sys.version_info >= (3, 12); "
            "print(u.find_spec('harness') is None, u.find_spec('matplotlib') is None)")  # fmt: skip
    assert _run(client, reference_image, ["python", "-c", code]).split() == ["True", "True"]
    listing = _run(client, reference_image, ["ls", str(app.root)]).split()
    assert {"harness.toml", "worker.py", "requirements.txt"} <= set(listing)
    image = client.images.get(reference_image)
    assert image.labels["harness.kind"] == "app" and image.labels[app_image.L_APP_ROOT] == str(app.root)
    assert reference_image.endswith(image.labels["harness.inputs-hash"][:16])
    assert image.attrs["Config"]["WorkingDir"] == str(app.root)


@docker_test
def test_server_image_runs_resonate(client: docker.DockerClient, server_image: str) -> None:
    assert "resonate version" in _run(client, server_image, ["--version"])
    attrs = client.images.get(server_image).attrs["Config"]
    assert attrs["Entrypoint"] == ["resonate"]


@docker_test
def test_second_ensure_is_a_cache_hit(
    client: docker.DockerClient, reference_image: str, server_image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_build(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("rebuilt an image whose inputs did not change")

    before = {tag: client.images.get(tag).id for tag in (reference_image, server_image)}
    for name in ("_debootstrap_tarball", "install_layer", "_commit", "wheelhouse"):
        monkeypatch.setattr(images, name, no_build)
    base = images.ensure_base_image(client)
    assert images.ensure_base_image(client) == base
    assert images.ensure_server_image(client, images.default_server_bin()) == server_image
    assert app_image.ensure_app_image(client, AppSpec.load(None)) == reference_image
    assert {tag: client.images.get(tag).id for tag in before} == before


@docker_test
def test_a_small_app_gets_an_image_of_its_own_deps_and_files(
    client: docker.DockerClient, tmp_path: Path
) -> None:
    app = make_app(tmp_path / "small app")  # a space in the path, too
    (app.root / "pkg").mkdir()
    (app.root / "pkg" / "data.txt").write_text("payload\n")
    for junk in (".git", "__pycache__", "runs/old"):
        (app.root / junk).mkdir(parents=True)
        (app.root / junk / "x").write_text("junk")
    (app.root / ".dockerignore").write_text("# comment\n*.log\n")
    (app.root / "debug.log").write_text("noise")
    built = app_image.ensure_app_layers(client, app)
    try:
        assert built.requirements.source == str(app.root / "requirements.txt")
        assert (
            _run(client, built.tag, ["python", "-c", "import resonate; print('imported')"]).strip()
            == "imported"
        )
        assert _run(client, built.tag, ["cat", str(app.root / "pkg" / "data.txt")]) == "payload\n"
        found = _run(client, built.tag, ["find", str(app.root), "-mindepth", "1"]).split("\n")
        rel = sorted(Path(p).relative_to(app.root).as_posix() for p in found if p)
        assert rel == [".dockerignore", "handler.py", "harness.toml", "pkg", "pkg/data.txt", "requirements.txt",
                       "serve.py"]  # fmt: skip
        assert _run(client, built.tag, ["pwd"]).strip() == str(app.root)
    finally:
        client.images.remove(built.tag)


@docker_test
def test_an_app_file_change_rebuilds_only_the_app_layer(
    client: docker.DockerClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(tmp_path / "app")
    first = app_image.ensure_app_layers(client, app)
    deps_id = client.images.get(first.deps).id
    first_layers = _layers(client, first.tag)
    (app.root / "handler.py").write_text("def handler(event, context):\n    return {'statusCode': 204}\n")

    def no_deps(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("rebuilt the dependencies layer though only an app file changed")

    monkeypatch.setattr(images, "install_layer", no_deps)
    monkeypatch.setattr(images, "wheelhouse", no_deps)
    second = app_image.ensure_app_layers(client, app)
    try:
        assert second.tag != first.tag and second.deps == first.deps
        assert client.images.get(second.deps).id == deps_id
        layers = _layers(client, second.tag)
        assert (
            layers[:-1] == first_layers[:-1] == _layers(client, first.deps) and layers[-1] != first_layers[-1]
        )
        assert "204" in _run(client, second.tag, ["cat", str(app.root / "handler.py")])
        with pytest.raises(docker.errors.ImageNotFound):  # the superseded image of the same app is pruned
            client.images.get(first.tag)
    finally:
        client.images.remove(second.tag)


# --- no daemon needed ----------------------------------------------------------------------------
def test_requirements_come_from_the_apps_declaration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    named = make_app(tmp_path / "named", config='[docker]\nrequirements = "deps/prod.txt"\n')
    (named.root / "deps").mkdir()
    (named.root / "deps" / "base.txt").write_text("croniter\n")
    (named.root / "deps" / "prod.txt").write_text("-r base.txt\nresonate-sdk==0.6.7\n")
    reqs = app_image.app_requirements(named)
    assert reqs.pip_args == ("-r", str(named.root / "deps" / "prod.txt"), "requests")
    assert "croniter" in reqs.text and "resonate-sdk==0.6.7" in reqs.text  # included files are hashed too

    plain = make_app(tmp_path / "plain")
    assert app_image.app_requirements(plain).pip_args == (
        "-r",
        str(plain.root / "requirements.txt"),
        "requests",
    )

    project = make_app(tmp_path / "project", requirements=None)
    (project.root / "pyproject.toml").write_text(
        '[project]\nname = "p"\ndependencies = ["resonate-sdk==0.6.7"]\n'
    )
    assert app_image.app_requirements(project).pip_args == ("resonate-sdk==0.6.7", "requests")

    bare = make_app(tmp_path / "bare", requirements=None)
    reqs = app_image.app_requirements(bare)
    assert (
        reqs.source == "default"
        and reqs.pip_args[0].startswith("resonate-sdk")
        and "requests" in reqs.pip_args
    )
    assert "declares no dependencies" in capsys.readouterr().err

    missing = make_app(tmp_path / "missing", config='[docker]\nrequirements = "nope.txt"\n')
    with pytest.raises(HarnessError, match=r"\[docker\] requirements"):
        app_image.app_requirements(missing)


def test_the_files_hash_follows_the_app_files_only(tmp_path: Path) -> None:
    app = make_app(tmp_path / "app")
    run_dir = app.root / "my-run"  # a run directory inside the app's: left out
    run_dir.mkdir()
    (run_dir / "events.jsonl").write_text("{}\n")
    (app.root / "__pycache__").mkdir()
    (app.root / "__pycache__" / "serve.cpython-312.pyc").write_bytes(b"\0")
    files = app_image.app_files(app.root, exclude=[run_dir])
    assert [p.relative_to(app.root).as_posix() for p in files] == ["handler.py", "harness.toml", "requirements.txt",
                                                                   "serve.py"]  # fmt: skip
    first = app_image.files_digest(files)
    (run_dir / "events.jsonl").write_text("{}\n{}\n")
    assert app_image.files_digest(app_image.app_files(app.root, exclude=[run_dir])) == first
    (app.root / "serve.py").write_text("print('changed')\n")
    assert app_image.files_digest(files) != first
    assert images.inputs_hash({"a": 1}) == images.inputs_hash({"a": 1}) != images.inputs_hash({"a": 2})


def test_import_roots_outside_the_app_are_copied_too(tmp_path: Path) -> None:
    (tmp_path / "shared").mkdir()
    app = make_app(tmp_path / "app", config="")
    text = (app.root / "harness.toml").read_text()
    (app.root / "harness.toml").write_text(text.replace("[app]\n", '[app]\npath = [".", "../shared"]\n'))
    assert app_image.copy_roots(AppSpec.load(app.root)) == [app.root, tmp_path / "shared"]


def test_missing_daemon_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(images.DockerUnavailable) as err:
        images.docker_client(base_url=f"unix://{tmp_path}/no-docker.sock", timeout=2)
    assert "install-docker.sh" in str(err.value)
