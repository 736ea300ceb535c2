"""The cluster: what runs (server, workers, gateway), one backend per way of running them."""

from __future__ import annotations

import abc
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import requests

from harness.agent.failpoints import FAILPOINTS_ENV
from harness.agent.hooks import APP_ROOT_ENV, EFFECT_ENV, TTL_ENV
from harness.agent.ledger import LEDGER_ENV, MEMBER_ENV
from harness.agent.worker import PATH_ENV
from harness.app.spec import AppSpec
from harness.errors import HarnessError
from harness.stack import LegacyStack
from harness.waiting import wait_until


@dataclass
class ClusterConfig:
    run_dir: Path
    stack: LegacyStack
    app: AppSpec
    workers: int = 3
    ttl: int = 2  # worker lease (task ttl) in seconds, set by the harness; heartbeats every ttl/2
    gateway_instances: int = 4
    server_args: list[str] = field(default_factory=list)
    python: str = sys.executable
    extra_env: dict[str, str] = field(default_factory=dict)
    proxied: bool = False  # each worker reaches the server through its own Toxiproxy proxies (link faults)
    gateway_timeout: float = 29.0  # the gateway's integration timeout, seconds: 504 after it

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise HarnessError("--workers N with N >= 1", seen=str(self.workers))
        if self.gateway_instances < 1:
            raise HarnessError("at least one gateway instance", seen=str(self.gateway_instances))

    @property
    def ledger_dir(self) -> Path:
        return self.run_dir / "ledger"

    @property
    def logs_dir(self) -> Path:
        return self.run_dir / "logs"

    @property
    def failpoints_file(self) -> Path:
        return self.run_dir / "failpoints" / "armed.json"

    def member_env(
        self, host: str, store_port: int, poll_port: int, worker: str | None = None
    ) -> dict[str, str]:
        """What every app process gets on both backends: the SDK's own connection variables, the
        app's [app.env] table, and the agent's settings. `host`/ports: where this member reaches the
        server; paths are the same inside containers (the run and app directories are mounted at
        their own paths)."""
        app = self.app
        values = {"host": host, "store_port": store_port, "poll_port": poll_port, "run_dir": self.run_dir,
                  "app_dir": app.root}  # fmt: skip
        env = {
            "PYTHONUNBUFFERED": "1",
            "RESONATE_HOST": f"http://{host}",
            "RESONATE_HOST_STORE": f"http://{host}",
            "RESONATE_HOST_MESSAGE_SOURCE": f"http://{host}",
            "RESONATE_PORT_STORE": str(store_port),
            "RESONATE_PORT_MESSAGE_SOURCE": str(poll_port),
            **app.app_env(values),
            "HARNESS_RUN_DIR": str(self.run_dir),
            LEDGER_ENV: str(self.ledger_dir),
            FAILPOINTS_ENV: str(self.failpoints_file),
            APP_ROOT_ENV: str(app.root),
            PATH_ENV: os.pathsep.join(app.import_roots()),
            TTL_ENV: str(self.ttl),
            **self.extra_env,
        }
        if app.effects is not None and app.effects.function:
            env[EFFECT_ENV] = app.effects.function
        if worker is not None:
            env[MEMBER_ENV] = worker
        return env


class Cluster(abc.ABC):
    """Start/stop the SUT and apply process-level faults to its members by name."""

    backend: str

    def __init__(self, config: ClusterConfig) -> None:
        self.config = config
        self.server_api = ""  # http://host:port of the REST API, as the harness reaches it
        self.metrics_url = ""  # http://host:port of the server's Prometheus metrics
        self.gateway_url = ""

    # lifecycle
    @abc.abstractmethod
    def start(self) -> None: ...

    @abc.abstractmethod
    def stop(self) -> None:
        """Remove everything this cluster started; safe to call twice."""

    def __enter__(self) -> Cluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # workers
    @abc.abstractmethod
    def add_worker(self) -> str:
        """Start one more worker, wait until it is connected, return its id."""

    @abc.abstractmethod
    def restart_worker(self, worker: str) -> None:
        """Start a fresh process for a worker id whose process is gone."""

    @abc.abstractmethod
    def stop_worker(self, worker: str) -> None:
        """Graceful removal (SIGTERM)."""

    @abc.abstractmethod
    def kill_worker(self, worker: str) -> None:
        """SIGKILL, no goodbye."""

    @abc.abstractmethod
    def pause_worker(self, worker: str) -> None: ...

    @abc.abstractmethod
    def resume_worker(self, worker: str) -> None: ...

    @abc.abstractmethod
    def live_workers(self) -> list[str]: ...

    @abc.abstractmethod
    def unexpected_exits(self) -> dict[str, int]:
        """Workers that are gone though the harness neither killed nor stopped them: exit codes."""

    # the app's own tools (the offline replay)
    @abc.abstractmethod
    def run_app_tool(
        self, args: list[str], extra: dict[str, str] | None = None, timeout: float = 300
    ) -> tuple[int, str]:
        """Run `python ARGS` where the app's processes run, in their environment: (exit code, stderr)."""

    @abc.abstractmethod
    def tool_env(self) -> dict[str, str]:
        """The environment an app tool run on this host gets (an [effects] command)."""

    # server
    @abc.abstractmethod
    def kill_server(self) -> None: ...

    @abc.abstractmethod
    def start_server(self) -> None:
        """(Re)start the server on the same ports and store, and wait until it serves."""

    # network faults: optional, a backend that can cut a worker off overrides both
    def partition_worker(self, worker: str) -> None:
        """Cut a worker off from the server (and the rest of the cluster); its process keeps running."""
        raise HarnessError(
            f"network partitions: partition_worker({worker}) is not supported by this backend",
            seen=f"backend {self.backend}",
            hint="run the scenario with --backend docker",
        )

    def heal_worker(self, worker: str) -> None:
        """Undo partition_worker: the worker reaches the server again."""
        raise HarnessError(
            f"network partitions: heal_worker({worker}) is not supported by this backend",
            seen=f"backend {self.backend}",
            hint="run the scenario with --backend docker",
        )

    def versions(self) -> dict[str, str]:
        """Versions of extra members this backend runs (the runner records them), e.g. Toxiproxy."""
        return {}

    # shared helpers ------------------------------------------------------------------------
    def poll_connections(self) -> int:
        """SSE connections the server's poll plugin holds (workers and gateway clients)."""
        try:
            text = requests.get(f"{self.metrics_url}/metrics", timeout=2).text
        except requests.RequestException:
            return -1
        m = re.search(r'^aio_plugin_connections\{type="[^"]*poll"\} (\d+)', text, re.M)
        return int(m.group(1)) if m else 0

    def wait_server_ready(self, timeout: float = 30) -> None:
        def ready() -> bool:
            try:
                return requests.get(f"{self.server_api}/promises?id=__ready__&limit=1", timeout=1).ok
            except requests.RequestException:
                return False

        wait_until(
            ready,
            timeout=timeout,
            expected=f"the Resonate server answering at {self.server_api}",
            seen=lambda: self.server_log_tail(),
            hint="look at the server log in the run directory",
        )

    def wait_connections(self, at_least: int, timeout: float = 30) -> None:
        """Wait for the workers' SSE streams; a worker that exited meanwhile fails at once, with the
        last line of its log (an import error of the app, usually)."""

        def connected() -> bool:
            exited = self.unexpected_exits()
            if exited:
                worker, code = sorted(exited.items())[0]
                raise HarnessError(f"the app's worker script to keep running ({worker})",
                                   seen=f"it exited with code {code}: {self.log_tail(f'{worker}.log') or 'no output'}",
                                   hint=f"look at {self.config.logs_dir / f'{worker}.log'}")  # fmt: skip
            return self.poll_connections() >= at_least

        wait_until(
            connected,
            timeout=timeout,
            expected=f"{at_least} SSE connections to the server's poll port",
            seen=lambda: f"{self.poll_connections()} connected",
            hint="look at the worker logs in the run directory",
        )

    def log_tail(self, name: str) -> str:
        """The last non-empty line of a member's log."""
        path = self.config.logs_dir / name
        lines = (
            [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
            if path.exists()
            else []
        )
        return lines[-1].strip()[:300] if lines else ""

    def server_log_tail(self) -> str:
        return ""
