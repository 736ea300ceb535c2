"""pytest plugin `resonate_harness`: fault-injection tests of a Resonate app in the user's own repo.

Loaded through the `pytest11` entry point wherever resonate-harness is installed (``pip install``;
nothing to import, no conftest). A test in the user's repo::

    import pytest

    @pytest.mark.harness(workers=2)
    def test_a_killed_worker_does_not_ship_twice(harness_run, harness_client, harness_nemesis):
        job = harness_run.jobs(1)[0]
        step = harness_run.steps()[1]
        harness_nemesis.strike(job["jobId"], step)  # hold the worker that reaches this step...
        harness_client.submit(job)
        harness_nemesis.kill(job["jobId"], step)  # ...and SIGKILL it there
        harness_run.wait_done([job["jobId"]])
        assert harness_run.verdicts(["exactly_once", "liveness", "no_loss"]).ok

    def test_smoke(harness_scenario):
        result = harness_scenario("smoke")
        assert result.ok, result.failed

run as ``pytest --app ./my_app`` (or ``harness_app = my_app`` in the pytest ini), ``-n 2`` with xdist.

Options:
    ``--backend process|docker``  repeatable; every test that uses a cluster runs once per backend
                                  (default: process)
    ``--workers N``               workers per cluster, unless the test's marker says otherwise
    ``--app DIR``                 the app under test, a directory with harness.toml (relative to where
                                  pytest starts); else the ini's ``harness_app`` (relative to the ini
                                  file); else the reference app shipped with the harness

Fixtures:
    ``harness_run``       a fresh running cluster for the app (its canary done), in the test's own
                          tmp_path, ports and names, so xdist workers never meet; torn down after the
                          test whatever its outcome. It has everything of harness.runner.RunContext
                          (``client``, ``nemesis``, ``cluster``, ``settings``, ``jobs(n)``, ``steps()``,
                          ``wait_done(ids)``, ``phase(name)``, ...) and ``verdicts(names=None)``, which
                          ends the session (history completed, cluster down) and returns `Verdicts`
    ``harness_client``    the run's client: ``submit(job)``, ``burst(jobs)``, ``wait_done(ids)``
    ``harness_nemesis``   the run's nemesis (harness.faults): ``strike``, ``kill``, ``pause``,
                          ``failpoint``, ``partition``, ``crash_server``, ...
    ``harness_scenario``  run a built-in scenario on the app: ``harness_scenario("crash-recovery",
                          seed=11, workers=3, params={...}, app=DIR)`` -> `Verdicts`
    ``harness_app``       the app's validated AppSpec (session-scoped)
    ``backend``           the test's backend (parametrized by --backend)
    ``server_ready``, ``toxiproxy_bin``, ``docker_daemon``
                          what the machine must have; the server and Toxiproxy are installed into the
                          per-user cache on first use (`harness setup`, under a file lock: parallel
                          workers build once). A machine that lacks one skips with the reason; under
                          ``CI=true`` the test fails instead.

`Verdicts` (a run's results.json): ``.ok``, ``.failed`` (name -> detail), ``v["exactly_once"]``,
``.results``, ``.run_dir``; a failed run also gets report.html there.

Marker: ``@pytest.mark.harness(workers=..., ttl=..., gateway_instances=..., server_args=[...],
proxied=..., liveness_deadline_s=..., params={...}, seed=..., verdicts=[...], backends=[...])``; the
closest (test > class > module) wins. Tests using the server get the ``server`` marker, docker ones
``docker``, so ``-m "not server"`` leaves them out.

Heavy modules (the runner, Docker) are imported only when a fixture needs them, so the plugin
costs nothing in test runs that do not use it.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from harness.errors import HarnessError

if TYPE_CHECKING:
    from harness.app.spec import AppSpec
    from harness.runner import RunContext, Settings

IN_CI = os.environ.get("CI", "").lower() == "true"
BACKENDS = ("process", "docker")
DEFAULT_VERDICTS = ("exactly_once", "liveness", "no_loss")
MARKER_EXTRAS = ("seed", "verdicts", "backends")  # marker keywords that are not runner.Settings fields
INI_APP = "harness_app"


# --- options, markers, parametrization ----------------------------------------------------
def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("resonate-harness", "Resonate fault-injection harness")
    group.addoption("--backend", action="append", choices=BACKENDS, dest="backend",
                    help="cluster backend for harness tests; repeat to run each test on several (default: process)")  # fmt: skip
    group.addoption("--workers", type=int, dest="harness_workers", metavar="N",
                    help="workers per cluster, unless a test's @pytest.mark.harness(workers=...) says otherwise")  # fmt: skip
    group.addoption("--app", dest="harness_app_dir", metavar="DIR",
                    help=f"the app under test: a directory with harness.toml (or ini `{INI_APP}`; default: the reference app)")  # fmt: skip
    parser.addini(INI_APP, "the app under test (a directory with harness.toml), relative to the ini file")


def pytest_configure(config: pytest.Config) -> None:
    workers = config.getoption("harness_workers")
    if workers is not None and workers < 1:
        raise pytest.UsageError(f"--workers N with N >= 1; seen: {workers}")
    for line in (
        "harness(**settings): cluster settings of a harness test (workers, ttl, gateway_instances, server_args, "
        "proxied, liveness_deadline_s, params, seed, verdicts, backends)",
        "server: needs the real Resonate server binary",
        "docker: needs a Docker daemon",
    ):
        config.addinivalue_line("markers", line)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests that use this plugin's `backend` fixture (directly or through harness_run) run once per
    --backend; `@pytest.mark.harness(backends=[...])` leaves the others out (not a skip)."""
    if "backend" not in metafunc.fixturenames or not _ours(metafunc) or _parametrized_by_user(metafunc):
        return
    chosen = list(dict.fromkeys(metafunc.config.getoption("backend") or ["process"]))
    allowed = _marker_kwargs(metafunc.definition).get("backends")
    params = [pytest.param(b, marks=[pytest.mark.docker] if b == "docker" else [], id=b)
              for b in chosen if allowed is None or b in allowed]  # fmt: skip
    if not params:
        reason = f"this test runs on {', '.join(allowed)} only, and --backend chose {', '.join(chosen)}"
        params = [pytest.param(chosen[0], marks=[pytest.mark.skip(reason=reason)], id=chosen[0])]
    metafunc.parametrize("backend", params, indirect=True)


def _ours(metafunc: pytest.Metafunc) -> bool:
    """Whether `backend` resolves to this plugin's fixture (a project may have its own)."""
    defs = getattr(metafunc, "_arg2fixturedefs", {}).get("backend")
    if not defs:
        return True
    func = defs[-1].func
    return getattr(func, "__module__", None) == __name__


def _parametrized_by_user(metafunc: pytest.Metafunc) -> bool:
    for mark in metafunc.definition.iter_markers("parametrize"):
        names = mark.args[0] if mark.args else mark.kwargs.get("argnames", "")
        if "backend" in ([n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)):
            return True
    return False


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that start the real server carry the `server` marker (`-m "not server"` leaves them out)."""
    for item in items:
        if "server_ready" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.server)


def pytest_report_header(config: pytest.Config) -> str | None:
    if "docker" not in (config.getoption("backend") or []):
        return None
    problem = _docker_problem()
    return f"docker backend: {'a Docker daemon answers' if problem is None else f'UNAVAILABLE: {problem}'}"


# --- what the machine has -----------------------------------------------------------------
def need(what: str, problem: str) -> NoReturn:
    """Fail under CI=true (where everything must run); elsewhere skip with the reason."""
    if IN_CI:
        pytest.fail(f"{what} is required in CI: {problem}", pytrace=False)
    pytest.skip(f"{what} unavailable: {problem}")


@pytest.fixture(scope="session")
def server_versions() -> dict[str, str]:
    """Versions of the server and SDK; installs the server first if it is missing (`harness setup`,
    under a file lock, so parallel xdist workers build it once)."""
    from harness.install import ensure_tools
    from harness.stack import get_stack

    try:
        ensure_tools()
        return get_stack().check_compatible()
    except HarnessError as e:
        need("the Resonate server", e.oneline())


@pytest.fixture
def server_ready(server_versions: dict[str, str]) -> None:
    """Depend on this in tests that start the real server."""


@pytest.fixture(scope="session")
def toxiproxy_bin() -> Path:
    """The toxiproxy-server binary (link faults), installed first if missing."""
    from harness import toxiproxy
    from harness.install import TOXIPROXY, ensure

    try:
        ensure(TOXIPROXY)
        return toxiproxy.server_bin()
    except HarnessError as e:
        need("toxiproxy-server", e.oneline())


def _docker_problem() -> str | None:
    """Why no Docker daemon can be used (None: one answers)."""
    from harness.cluster.images import DockerUnavailable, docker_client

    try:
        docker_client(timeout=30).close()
    except DockerUnavailable as e:
        return e.oneline()
    return None


@pytest.fixture(scope="session")
def docker_daemon() -> None:
    """Depend on this in tests that need a Docker daemon."""
    problem = _docker_problem()
    if problem is not None:
        need("a Docker daemon", problem)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """The cluster backend of this test (parametrized by --backend); docker needs a daemon."""
    chosen = str(getattr(request, "param", None) or (request.config.getoption("backend") or ["process"])[0])
    if chosen == "docker":
        request.getfixturevalue("docker_daemon")
    return chosen


# --- the app and its runs -----------------------------------------------------------------
def app_dir(config: pytest.Config) -> Path | None:
    """--app (relative to where pytest was started), else the ini's harness_app (relative to the ini
    file), else None: the reference app."""
    option = config.getoption("harness_app_dir")
    if option:
        return (config.invocation_params.dir / option).resolve()
    ini = str(config.getini(INI_APP) or "").strip()
    if ini:
        base = config.inipath.parent if config.inipath else config.rootpath
        return (base / ini).resolve()
    return None


@pytest.fixture(scope="session")
def harness_app(pytestconfig: pytest.Config) -> AppSpec:
    """The app under test (--app / ini harness_app / the reference app), its config validated."""
    from harness.app.spec import AppSpec

    try:
        return AppSpec.load(app_dir(pytestconfig))
    except HarnessError as e:
        pytest.fail(f"the app under test: {e.oneline()}", pytrace=False)


@dataclass(frozen=True)
class Verdicts:
    """A run's results.json with the named verdicts: `.ok`, `.failed` (name -> detail), `["replay"]`."""

    run_dir: Path
    results: dict[str, Any]

    @property
    def verdicts(self) -> dict[str, dict[str, Any]]:
        return self.results["verdicts"]

    @property
    def ok(self) -> bool:
        return all(v["ok"] for v in self.verdicts.values())

    @property
    def failed(self) -> dict[str, str]:
        return {name: v["detail"] for name, v in self.verdicts.items() if not v["ok"]}

    def __getitem__(self, name: str) -> dict[str, Any]:
        return self.verdicts[name]

    def __repr__(self) -> str:
        lines = "; ".join(
            f"{'PASS' if v['ok'] else 'FAIL'} {k}: {v['detail']}" for k, v in self.verdicts.items()
        )
        return f"Verdicts({'ok' if self.ok else 'FAILED'}: {lines}; run dir {self.run_dir})"


class HarnessRun:
    """A running cluster for the app: everything of harness.runner.RunContext (client, nemesis,
    cluster, events, jobs(), steps(), wait_done(), ...), plus `verdicts()`, which ends the session."""

    def __init__(self, name: str, settings: Settings, *, app: Path | None, backend: str, seed: int,
                 out: Path, command: str, default_verdicts: Iterable[str] = DEFAULT_VERDICTS) -> None:  # fmt: skip
        self._ctx: RunContext | None = None
        self._exit = contextlib.ExitStack()
        self._ended = False
        self.name, self.settings, self.backend, self.seed = name, settings, backend, seed
        self.run_dir = out.absolute()
        self._default_verdicts = list(default_verdicts)
        self._args: dict[str, Any] = {"app": app, "backend": backend, "seed": seed, "out": self.run_dir,
                                      "command": command}  # fmt: skip

    def start(self) -> HarnessRun:
        from harness.runner import session

        self._ctx = self._exit.enter_context(session(self.name, [], self.settings, **self._args))
        return self

    @property
    def ctx(self) -> RunContext:
        if self._ctx is None or self._ended:
            raise HarnessError("a running cluster", seen=f"the session of {self.name} has ended",
                               hint="call verdicts() last: it completes the history and tears the cluster down")  # fmt: skip
        return self._ctx

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.ctx, name)

    def end(self) -> None:
        """Complete the history (the server's promises, effects, replay) and tear the cluster down."""
        if not self._ended:
            self._ended = True
            self._exit.close()

    def verdicts(self, names: Iterable[str] | None = None) -> Verdicts:
        """End the session and compute the named verdicts (default: the marker's `verdicts`, else
        exactly_once, liveness, no_loss) from the run directory; results.json is written there."""
        from harness.checks import VERDICTS
        from harness.history import RUN_META
        from harness.runner import check_run

        wanted = list(names) if names is not None else self._default_verdicts
        unknown = [n for n in wanted if n not in VERDICTS]
        if unknown or not wanted:
            raise HarnessError(
                f"verdict names among {', '.join(VERDICTS)}", seen=", ".join(unknown) or "none"
            )
        self.end()
        meta_path = self.run_dir / RUN_META
        meta = json.loads(meta_path.read_text())
        meta["verdicts"] = wanted  # so that `harness check RUN_DIR` recomputes the same ones
        meta_path.write_text(json.dumps(meta, indent=1))
        return _verdicts(self.run_dir, check_run(self.run_dir))

    def __repr__(self) -> str:
        return f"HarnessRun({self.name} on {self.backend}, run dir {self.run_dir})"


def _verdicts(run_dir: Path, results: dict[str, Any]) -> Verdicts:
    """Verdicts of a finished run; when one failed, report.html is rendered next to results.json."""
    v = Verdicts(run_dir, results)
    if not v.ok:
        with contextlib.suppress(Exception):  # the verdicts stand even if a picture cannot be drawn
            from reports import render

            render(run_dir)
    return v


def _marker_kwargs(node: pytest.Item | Any) -> dict[str, Any]:
    """The keywords of every @pytest.mark.harness on the test, module and class; the closest wins."""
    merged: dict[str, Any] = {}
    for mark in reversed(list(node.iter_markers("harness"))):
        if mark.args:
            pytest.fail(f"@pytest.mark.harness takes keywords only; seen: {mark.args!r}", pytrace=False)
        merged.update(mark.kwargs)
    return merged


def _settings(request: pytest.FixtureRequest) -> tuple[Settings, dict[str, Any]]:
    """runner.Settings of a harness_run test (marker > --workers > defaults), and the marker's extras."""
    from harness.runner import Settings

    kwargs = _marker_kwargs(request.node)
    extras = {k: kwargs.pop(k) for k in MARKER_EXTRAS if k in kwargs}
    known = [f.name for f in fields(Settings)]
    unknown = sorted(set(kwargs) - set(known))
    if unknown:
        pytest.fail(f"@pytest.mark.harness keywords among {', '.join([*known, *MARKER_EXTRAS])}; "
                    f"seen: {', '.join(unknown)}", pytrace=False)  # fmt: skip
    base = asdict(Settings())
    if (workers := request.config.getoption("harness_workers")) is not None:
        base["workers"] = workers
    return Settings(**{**base, **kwargs}), extras


@pytest.fixture
def harness_run(request: pytest.FixtureRequest, backend: str, server_ready: None, harness_app: AppSpec,
                tmp_path: Path) -> Iterator[HarnessRun]:  # fmt: skip
    """A fresh cluster for the app, its canary done, in this test's tmp_path (own ports, names and run
    directory, so xdist workers do not meet). Torn down after the test, whether it passed or not."""
    settings, extras = _settings(request)
    if settings.proxied:
        request.getfixturevalue("toxiproxy_bin")
    run = HarnessRun(request.node.name, settings, app=app_dir(request.config), backend=backend,
                     seed=int(extras.get("seed", 7)), out=tmp_path / "run", command=f"pytest {request.node.nodeid}",
                     default_verdicts=extras.get("verdicts", DEFAULT_VERDICTS))  # fmt: skip
    try:
        run.start()
    except HarnessError as e:
        run.end()
        pytest.fail(f"the cluster did not start: {e.oneline()}", pytrace=False)
    try:
        yield run
    finally:
        run.end()


@pytest.fixture
def harness_client(harness_run: HarnessRun) -> Any:
    """The run's client: submit(job), burst(jobs), status polls, wait_done(ids)."""
    return harness_run.client


@pytest.fixture
def harness_nemesis(harness_run: HarnessRun) -> Any:
    """The run's nemesis: kill, pause, strike, failpoint, partition, crash_server, ... (harness.faults)."""
    return harness_run.nemesis


@pytest.fixture
def harness_scenario(request: pytest.FixtureRequest, backend: str, server_ready: None, harness_app: AppSpec,
                     tmp_path: Path) -> Callable[..., Verdicts]:  # fmt: skip
    """Run a built-in scenario on the app: `harness_scenario("crash-recovery", seed=11)` -> Verdicts.
    Keywords: app (a directory; else --app), workers (else --workers, else the scenario's), seed
    (else the marker's, else 7), params (scenario knobs), and any runner.Settings field to override."""
    counter = itertools.count(1)
    marker_seed = _marker_kwargs(request.node).get("seed", 7)

    def run_scenario(name: str, *, app: Path | str | None = None, workers: int | None = None, seed: int | None = None,
                     params: dict[str, int] | None = None, **overrides: Any) -> Verdicts:  # fmt: skip
        from harness.runner import load_scenarios, run

        sc = load_scenarios().get(name)
        if (sc is not None and sc.settings.proxied) or overrides.get("proxied"):
            request.getfixturevalue("toxiproxy_bin")
        res = run(name, app=Path(app) if app is not None else app_dir(request.config), backend=backend, seed=marker_seed if seed is None else seed,
                  workers=workers or request.config.getoption("harness_workers"), params=params,
                  overrides=overrides, out=tmp_path / f"{name}-{next(counter)}")  # fmt: skip
        return _verdicts(res.run_dir, res.results)

    return run_scenario
