"""Runs a scenario end to end: cluster + load + faults -> history -> verdicts -> results.json."""

from __future__ import annotations

import contextlib
import importlib
import json
import pkgutil
import random
import shlex
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness import effects
from harness.agent.replay import ORACLE_ENV
from harness.app.spec import AppSpec
from harness.canary import Learned, run_canary
from harness.checks import check, findings
from harness.cluster.base import Cluster, ClusterConfig
from harness.errors import HarnessError
from harness.faults import Nemesis
from harness.figures import figures
from harness.history import RUN_META, EventLog, History, snapshot_promises
from harness.install import ensure_tools
from harness.load import Client, make_jobs
from harness.stack import LegacyStack, get_stack

RESULTS = "results.json"
BACKENDS = ("process", "docker")


@dataclass
class Settings:
    workers: int = 3
    ttl: int = 2  # the workers' lease, set by the harness whatever the app asks for
    gateway_instances: int = 4
    liveness_deadline_s: float = 60.0
    server_args: list[str] = field(default_factory=list)  # extra `resonate serve` flags
    params: dict[str, int] = field(default_factory=dict)  # scenario knobs, settable with --param K=V
    proxied: bool = False  # workers reach the server through Toxiproxy (link faults; process backend)
    gateway_timeout_s: float = 29.0  # the gateway's integration timeout (API Gateway's is 29 s)


@dataclass
class Scenario:
    name: str
    description: str
    verdicts: list[str]
    body: Callable[[RunContext], None]
    settings: Settings = field(default_factory=Settings)
    # what the scenario adds to results.json besides verdicts (its "figures" are merged)
    extras: Callable[[History], dict[str, Any]] | None = None


SCENARIOS: dict[str, Scenario] = {}


def scenario(
    name: str,
    verdicts: list[str],
    extras: Callable[[History], dict[str, Any]] | None = None,
    **settings: Any,
) -> Callable[[Callable[[RunContext], None]], Any]:
    """Register a scenario body under `name`; `verdicts` are the checks it exercises."""

    def register(body: Callable[[RunContext], None]) -> Callable[[RunContext], None]:
        SCENARIOS[name] = Scenario(
            name, (body.__doc__ or "").strip(), verdicts, body, Settings(**settings), extras
        )
        return body

    return register


def load_scenarios() -> dict[str, Scenario]:
    """Import every scenario module of the `scenarios` package (each registers itself)."""
    import scenarios

    for mod in pkgutil.iter_modules(scenarios.__path__):
        if not mod.name.startswith(("test_", "conftest")):
            importlib.import_module(f"scenarios.{mod.name}")
    return SCENARIOS


@dataclass
class RunContext:
    """What a scenario body works with."""

    cluster: Cluster
    events: EventLog
    client: Client
    nemesis: Nemesis
    rng: random.Random
    settings: Settings
    learned: Learned  # what the canary taught the harness about the app (steps, promise ids)

    @property
    def run_dir(self) -> Path:
        return self.cluster.config.run_dir

    def steps(self) -> list[str]:
        """The positions of the app's steps run through ctx.run (what faults can be aimed at)."""
        steps = self.learned.leaf_steps()
        if not steps:
            raise HarnessError("an app whose workflow runs at least one step through ctx.run",
                               seen=f"the canary job ran none ({self.learned.workflow})")  # fmt: skip
        return steps

    def middle_step(self) -> str:
        """A step to strike in single-fault scenarios: the first one with an effect, else the middle one."""
        effects = [p for p in self.learned.effect_steps() if p in self.steps()]
        return effects[0] if effects else self.steps()[len(self.steps()) // 2]

    def jobs(self, n: int, prefix: str = "job") -> list[dict[str, Any]]:
        jobs = make_jobs(self.rng, n, prefix)
        self.client.register(jobs)
        return jobs

    def wait_done(self, job_ids: list[str], timeout: float | None = None) -> dict[str, float]:
        return self.client.wait_done(job_ids, timeout or self.settings.liveness_deadline_s + 30)

    def phase(self, name: str, **fields: Any) -> None:
        self.events.append("phase", name=name, **fields)


def make_cluster(backend: str, config: ClusterConfig) -> Cluster:
    if backend == "process":
        from harness.cluster.process import ProcessCluster

        return ProcessCluster(config)
    if backend == "docker":
        from harness.cluster.docker import DockerCluster

        return DockerCluster(config)
    raise HarnessError(f"--backend one of {', '.join(BACKENDS)}", seen=backend)


@dataclass
class RunResult:
    run_dir: Path
    results: dict[str, Any]

    @property
    def ok(self) -> bool:
        return all(v["ok"] for v in self.results["verdicts"].values())


def run(
    name: str,
    *,
    app: Path | str | None = None,
    backend: str = "process",
    workers: int | None = None,
    seed: int = 7,
    out: Path | None = None,
    server_bin: Path | str | None = None,
    overrides: dict[str, Any] | None = None,
    params: dict[str, int] | None = None,
    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True),
) -> RunResult:
    """Run scenario `name` on the app and check it."""
    scenarios = load_scenarios()
    if name not in scenarios:
        raise HarnessError(f"a scenario, one of: {', '.join(sorted(scenarios))}", seen=name)
    sc = scenarios[name]
    unknown = sorted(set(params or {}) - set(sc.settings.params))
    if unknown:
        known = ", ".join(sorted(sc.settings.params)) or "none"
        raise HarnessError(f"--param names this scenario knows ({known})", seen=", ".join(unknown))
    settings = Settings(**{**asdict(sc.settings), **(overrides or {})})
    settings.params = {**settings.params, **(params or {})}
    if workers is not None:
        settings.workers = workers
    with session(name, sc.verdicts, settings, app=app, backend=backend, seed=seed, out=out, server_bin=server_bin,
                 log=log, command=reproduce_command(name, backend, settings.workers, seed, params or {}, app)) as ctx:  # fmt: skip
        try:
            sc.body(ctx)
        except HarnessError as e:
            ctx.events.append("error", error=e.oneline())
            log(f"harness: scenario stopped early: {e.oneline()}")
        except Exception as e:  # a bug in a scenario must still leave a checkable history
            ctx.events.append("error", error=repr(e), trace=traceback.format_exc())
            log(f"harness: scenario raised {e!r}")
    return RunResult(ctx.run_dir, check_run(ctx.run_dir))


@contextlib.contextmanager
def session(
    name: str,
    verdicts: list[str],
    settings: Settings,
    *,
    app: Path | str | None = None,
    backend: str = "process",
    seed: int = 7,
    out: Path | None = None,
    server_bin: Path | str | None = None,
    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True),
    command: str | None = None,
) -> Iterator[RunContext]:
    """A running cluster for the app, its canary done: what a scenario (or a user's pytest test)
    works with. On the way out, whatever happened inside, the history is completed (the server's
    promises, the app's effects, the offline replay) and the cluster is torn down; `check_run`
    then computes the verdicts from the run directory."""
    if settings.workers < 1:
        raise HarnessError("--workers N with N >= 1", seen=str(settings.workers))
    if backend not in BACKENDS:
        raise HarnessError(f"--backend one of {', '.join(BACKENDS)}", seen=backend)
    spec = AppSpec.load(app)
    ensure_tools(server_bin, toxiproxy=settings.proxied, log=log)  # `harness setup`, once, if missing
    stack = get_stack("legacy", server_bin)
    versions = stack.check_compatible()
    if settings.proxied and backend == "process":
        from harness import toxiproxy

        versions["toxiproxy"] = toxiproxy.server_version()
    run_dir = Path(out or Path.cwd() / "runs" / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-s{seed}").absolute()
    if (run_dir / RUN_META).exists():
        raise HarnessError("an empty or new run directory", seen=f"{run_dir} already holds a run",
                           hint="choose another --out, or remove that directory")  # fmt: skip
    run_dir.mkdir(parents=True, exist_ok=True)
    meta = {
        "scenario": name, "backend": backend, "stack": stack.name, "seed": seed, "versions": versions,
        "verdicts": verdicts, "settings": asdict(settings),
        "app": {**spec.summary(), "missing_status": spec.missing_status,
                "effects": {"kinds": list(spec.effects.kinds), "function": spec.effects.function}
                if spec.effects else None},
        "command": command,
    }  # fmt: skip
    (run_dir / RUN_META).write_text(json.dumps(meta, indent=1))
    log(f"harness: {name} on {backend}, {settings.workers} workers, seed {seed}; app {spec.root}; "
        f"server {versions['server']}; run dir {run_dir}")  # fmt: skip
    config = ClusterConfig(
        run_dir=run_dir, stack=stack, app=spec, workers=settings.workers, ttl=settings.ttl,
        gateway_instances=settings.gateway_instances, server_args=settings.server_args, proxied=settings.proxied,
        gateway_timeout=settings.gateway_timeout_s,
    )  # fmt: skip
    events = EventLog(run_dir, echo=log)
    try:
        cluster = make_cluster(backend, config)
        with cluster:
            events.append("phase", name="cluster-up", workers=cluster.live_workers())
            if extra := cluster.versions():  # e.g. the Toxiproxy running in a container
                meta["versions"].update(extra)
            learned = run_canary(cluster, events, timeout=settings.ttl + 30)
            meta["app"]["learned"] = learned.as_dict()
            meta["versions"]["sdk"] = learned.sdk.get("worker", versions.get("sdk"))
            (run_dir / RUN_META).write_text(json.dumps(meta, indent=1))
            log(f"harness: canary done: promise ids {learned.scheme or 'opaque'}, workflow {learned.workflow}, "
                f"steps {', '.join(f'{s['pos']}:{s['fn']}' for s in learned.steps) or 'none'}")  # fmt: skip
            ctx = RunContext(cluster, events, Client(cluster.gateway_url, events, spec),
                             Nemesis(cluster, events, learned.scheme), random.Random(seed), settings, learned)  # fmt: skip
            try:
                yield ctx
            finally:
                for worker, code in cluster.unexpected_exits().items():
                    events.append("worker-exit", target=worker, code=code)
                    log(f"harness: {worker} exited by itself (code {code}); see its log in the run directory")
                events.append("phase", name="done")
                collect(cluster, run_dir, log)
    finally:
        events.close()


def collect(cluster: Cluster, run_dir: Path, log: Callable[[str], None]) -> None:
    """What the checks read besides the logs: the server's promises, the app's effects, the replay."""
    snapshot_promises(cluster.server_api, run_dir)
    app = cluster.config.app
    effects.save(run_dir, effects.count(app, run_dir, cluster.tool_env()))
    code, err = cluster.run_app_tool(["-m", "harness.agent.replay", str(run_dir), str(app.worker_script)],
                                     extra={ORACLE_ENV: app.oracle} if app.oracle else {})  # fmt: skip
    (cluster.config.logs_dir / "replay.log").write_text(err)
    if code != 0:
        log(f"harness: the offline replay of the app's workflow failed (exit {code}); see logs/replay.log")


def check_run(run_dir: Path) -> dict[str, Any]:
    """Compute the verdicts of a saved run and (re)write its results.json. Reads only the run dir."""
    h = History.load(run_dir)
    meta = h.meta
    verdicts = check(h, meta["verdicts"])
    errors = h.of_kind("error")
    if errors:
        verdicts["run"] = {"ok": False, "detail": f"the scenario stopped early: {errors[0]['error']}"}
    learned = meta.get("app", {}).get("learned", {})
    results = {
        "scenario": meta["scenario"], "backend": meta["backend"], "stack": meta["stack"], "seed": meta["seed"],
        "versions": meta["versions"],
        "app": {**{k: v for k, v in meta.get("app", {}).items() if k not in ("learned", "missing_status")},
                "promise_id_scheme": learned.get("scheme"), "workflow": learned.get("workflow"),
                "steps": learned.get("steps", []), "ttl": learned.get("ttl")},
        "jobs": {"submitted": len(h.of_kind("submit")), "unique": len(h.jobs()),
                 "completed": len({e["job_id"] for e in h.of_kind("completed")})},
        "faults": [
            {"kind": f["fault"], "target": f["target"], "at": round(f["t"] - _t0(h), 3),
             **{k: _step_value(f[k]) if k == "step" else f[k] for k in ("job", "step", "site") if k in f}}
            for f in h.faults()
        ] + [
            {"kind": f"failpoint-{r['action']}", "target": r["worker"], "at": round(r["t"] - _t0(h), 3),
             "job": h.job_of.get(r["root"]), "step": _step_value(r["pos"]), "site": r["at"]}
            for r in h.records("failpoint") if r.get("action") != "hold" and r.get("root") in h.job_of
        ],
        "verdicts": verdicts,
        "findings": findings(h),
        "incidents": [{"kind": e["kind"], "target": e["target"], "code": e["code"], "at": round(e["t"] - _t0(h), 3)}
                      for e in h.of_kind("worker-exit")],
        "figures": figures(h),
        "command": meta.get("command"),
    }  # fmt: skip
    sc = load_scenarios().get(meta["scenario"])
    if sc is not None and sc.extras is not None:
        extra = sc.extras(h)
        results["figures"].update(extra.pop("figures", {}))
        results.update(extra)
    (Path(run_dir) / RESULTS).write_text(json.dumps(results, indent=1))
    return results


def _step_value(pos: Any) -> Any:
    """A step position as results.json gives it: 3 for "3", "4.1" stays a string."""
    return int(pos) if isinstance(pos, str) and pos.isdigit() else pos


def _t0(h: History) -> float:
    return h.events[0]["t"] if h.events else 0.0


def reproduce_command(name: str, backend: str, workers: int, seed: int, params: dict[str, int],
                      app: Path | str | None = None) -> str:  # fmt: skip
    words = ["harness", "run", name, "--backend", backend, "--workers", str(workers), "--seed", str(seed)]
    if app is not None:
        words += ["--app", str(Path(app).expanduser().resolve())]
    for key, value in sorted(params.items()):
        words += ["--param", f"{key}={value}"]
    return shlex.join(words)


__all__ = ["SCENARIOS", "LegacyStack", "RunContext", "check_run", "load_scenarios", "run", "scenario"]
