"""The embedded default backend: server, workers and gateway as local processes on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import requests

from harness.agent.lifecycle import PARENT_PID_ENV
from harness.cluster.base import Cluster, ClusterConfig
from harness.cluster.links import LINK_PORTS, Link, ProxiedLinks
from harness.errors import HarnessError
from harness.gateway import gateway_command
from harness.stack import Ports
from harness.toxiproxy import Toxiproxy, ToxiproxyServer, listen_port
from harness.waiting import free_ports, wait_until

OWNER_ENV = "HARNESS_OWNER"  # every process we start carries the harness's pid here


class ProcessCluster(ProxiedLinks, Cluster):
    backend = "process"

    def __init__(self, config: ClusterConfig) -> None:
        super().__init__(config)
        api, poll, metrics, gateway = free_ports(4)
        self.ports = Ports(api=api, poll=poll, metrics=metrics)
        self.server_api = f"http://127.0.0.1:{self.ports.api}"
        self.metrics_url = f"http://127.0.0.1:{self.ports.metrics}"
        self.gateway_port = gateway
        self.gateway_url = f"http://127.0.0.1:{self.gateway_port}"
        self.server: subprocess.Popen[bytes] | None = None
        self.gateway: subprocess.Popen[bytes] | None = None
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self._next_worker = 1
        self._downed: set[str] = set()  # workers the harness took down on purpose
        self._stopped = False
        self.toxiproxy: ToxiproxyServer | None = None  # proxied clusters only
        self.links: dict[str, Link] = {}

    # --- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        reap_orphans()
        for d in (self.config.run_dir, self.config.ledger_dir, self.config.logs_dir, self.failpoints_dir):
            d.mkdir(parents=True, exist_ok=True)
        (self.config.run_dir / "server").mkdir(exist_ok=True)
        if self.config.proxied:
            self.toxiproxy = ToxiproxyServer(self.config.logs_dir / "toxiproxy.log", env=self.env())
            self.toxiproxy.start()
        self.start_server()
        for _ in range(self.config.workers):
            self.add_worker()
        self._start_gateway()

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        toxiproxy = self.toxiproxy.proc if self.toxiproxy is not None else None
        procs = [p for p in (self.gateway, *self.workers.values(), self.server, toxiproxy) if p is not None]
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGCONT)  # a paused process cannot act on SIGTERM
                p.terminate()
        deadline = time.monotonic() + 5
        for p in procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)
        if self.toxiproxy is not None:
            self.toxiproxy.stop()
        reap_orphans(owner=os.getpid())

    # --- environment ----------------------------------------------------------------------
    @property
    def failpoints_dir(self) -> Path:
        return self.config.failpoints_file.parent

    def env(self, member: dict[str, str] | None = None) -> dict[str, str]:
        """The harness's environment, the owner marks the reaper and watchdogs look for, and (for an
        app process) the member environment shared with the docker backend."""
        return {**os.environ, OWNER_ENV: str(os.getpid()), PARENT_PID_ENV: str(os.getpid()), **(member or {})}

    def _spawn(self, args: list[str], log_name: str, env: dict[str, str] | None = None,
               cwd: Path | None = None) -> subprocess.Popen[bytes]:  # fmt: skip
        if self._stopped:  # a fault thread must not start processes after the teardown
            raise HarnessError("a running cluster", seen="it was stopped", hint="stop fault threads first")
        log = open(self.config.logs_dir / log_name, "ab")  # noqa: SIM115 - owned by the child
        try:
            return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=env or self.env(), cwd=cwd)  # fmt: skip
        finally:
            log.close()

    def tool_env(self) -> dict[str, str]:
        return self.env(self.config.member_env("127.0.0.1", self.ports.api, self.ports.poll))

    def run_app_tool(
        self, args: list[str], extra: dict[str, str] | None = None, timeout: float = 300
    ) -> tuple[int, str]:
        env = {**self.env(self.config.member_env("127.0.0.1", self.ports.api, self.ports.poll, worker="tool")),
               **(extra or {})}  # fmt: skip
        env.pop("HARNESS_LEDGER_DIR", None)  # a tool writes nothing into the run's ledger
        try:
            res = subprocess.run([self.config.python, *args], env=env, cwd=self.config.app.root, capture_output=True,
                                 text=True, timeout=timeout, check=False)  # fmt: skip
        except subprocess.TimeoutExpired as e:
            return 124, f"timed out after {timeout:g}s: {e.stderr or ''}"
        return res.returncode, res.stderr

    # --- server ---------------------------------------------------------------------------
    def start_server(self) -> None:
        if self.server is not None and self.server.poll() is None:
            raise HarnessError(
                "the server to be down before it is started", seen=f"pid {self.server.pid} running"
            )
        store = str(self.config.run_dir / "server" / "resonate.db")
        args = [
            str(self.config.stack.server_bin),
            *self.config.stack.serve_args(self.ports, store),
            *self.config.server_args,
        ]
        self.server = self._spawn(args, "server.log")
        self.wait_server_ready()

    def kill_server(self) -> None:
        if self.server is not None:
            self.server.kill()
            self.server.wait(timeout=10)

    def server_log_tail(self) -> str:
        path = self.config.logs_dir / "server.log"
        lines = path.read_text(errors="replace").splitlines()[-3:] if path.exists() else []
        return " | ".join(lines) or "no server output"

    # --- workers --------------------------------------------------------------------------
    def add_worker(self) -> str:
        worker = f"worker-{self._next_worker}"
        self._next_worker += 1
        self._start_worker(worker)
        return worker

    def restart_worker(self, worker: str) -> None:
        proc = self.workers.get(worker)
        if proc is not None and proc.poll() is None:
            raise HarnessError(f"{worker} to be down before it is restarted", seen=f"pid {proc.pid} running")
        self._start_worker(worker)

    def _start_worker(self, worker: str) -> None:
        self._downed.discard(worker)
        api, poll = self.ports.api, self.ports.poll
        link = None
        if self.config.proxied:  # the worker dials its own proxies; the harness reads the server directly
            link = self.links.get(worker) or self._make_link(worker)
            api, poll = link.ports["api"], link.ports["poll"]
        before = self.poll_connections()
        app = self.config.app
        args = [self.config.python, "-m", "harness.agent.worker", str(app.worker_script)]
        member = self.config.member_env("127.0.0.1", api, poll, worker=worker)
        self.workers[worker] = self._spawn(args, f"{worker}.log", self.env(member), cwd=app.root)
        if link is None or not link.cut:  # a worker (re)started behind a cut link cannot connect yet
            self.wait_connections(before + 1)

    def _proc(self, worker: str) -> subprocess.Popen[bytes]:
        try:
            return self.workers[worker]
        except KeyError:
            raise HarnessError(f"a worker named one of {sorted(self.workers)}", seen=worker) from None

    def worker_pid(self, worker: str) -> int:
        return self._proc(worker).pid

    def stop_worker(self, worker: str) -> None:
        p = self._proc(worker)
        self._downed.add(worker)
        p.terminate()
        p.wait(timeout=10)

    def kill_worker(self, worker: str) -> None:
        p = self._proc(worker)
        self._downed.add(worker)
        p.kill()
        p.wait(timeout=10)

    def pause_worker(self, worker: str) -> None:
        os.kill(self._proc(worker).pid, signal.SIGSTOP)

    def resume_worker(self, worker: str) -> None:
        os.kill(self._proc(worker).pid, signal.SIGCONT)

    # --- links (proxied clusters): partitions and toxics between one worker and the server -----
    def _toxiproxy_client(self) -> Toxiproxy | None:
        return self.toxiproxy.client if self.toxiproxy is not None else None

    def _make_link(self, worker: str) -> Link:
        tp = self._toxiproxy()
        upstream = {"api": self.ports.api, "poll": self.ports.poll}
        proxies, ports = {}, {}
        for kind in LINK_PORTS:
            name = f"{worker}-{kind}"
            ports[kind] = listen_port(tp.create_proxy(name, f"127.0.0.1:{upstream[kind]}"))
            proxies[kind] = name
        link = self.links[worker] = Link(worker, proxies, ports)
        return link

    def link_connections(self, worker: str) -> dict[str, int]:
        """Open TCP connections through each of the worker's proxies ("api", "poll"): 0 while cut,
        and "poll" back to 1 once the worker's SDK has reconnected its SSE stream."""
        link = self.link(worker)
        return {kind: established_to(port) for kind, port in link.ports.items()}

    def partition_worker(self, worker: str) -> None:
        """Cut the worker off from the server: both its proxies stop listening and drop their connections."""
        self.set_link(worker, up=False)

    def heal_worker(self, worker: str) -> None:
        """Reconnect the worker's link (its SDK reconnects on its own retry schedule)."""
        self.set_link(worker, up=True)

    def live_workers(self) -> list[str]:
        return [w for w, p in self.workers.items() if p.poll() is None]

    def unexpected_exits(self) -> dict[str, int]:
        return {
            w: p.returncode for w, p in self.workers.items() if p.poll() is not None and w not in self._downed
        }

    # --- gateway --------------------------------------------------------------------------
    def _start_gateway(self) -> None:
        c = self.config
        args = [*gateway_command(c.app.handler, resources=c.app.gateway_resources(), port=self.gateway_port,
                                 instances=c.gateway_instances, python=c.python, cwd=c.app.root, timeout=c.gateway_timeout,
                                 log=c.logs_dir / "gateway-requests.jsonl"), "--exit-with-parent"]  # fmt: skip
        member = c.member_env("127.0.0.1", self.ports.api, self.ports.poll)
        self.gateway = self._spawn(args, "gateway.log", self.env(member))

        def ready() -> bool:
            if self.gateway is not None and self.gateway.poll() is not None:
                raise HarnessError("the gateway to start", seen=f"it exited with {self.gateway.returncode}",
                                   hint=f"look at {c.logs_dir / 'gateway.log'}")  # fmt: skip
            try:
                return requests.get(f"{self.gateway_url}/_gateway/instances", timeout=1).ok
            except requests.RequestException:
                return False

        wait_until(ready, timeout=60, expected=f"the gateway answering at {self.gateway_url}",
                   hint=f"look at {c.logs_dir / 'gateway.log'}")  # fmt: skip


def established_to(port: int) -> int:
    """ESTABLISHED TCP connections accepted on a local IPv4 port (read from /proc/net/tcp)."""
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return -1
    want = f":{port:04X}"
    return sum(1 for line in lines if (f := line.split()) and f[1].endswith(want) and f[3] == "01")


def _owner_of(pid: int) -> int | None:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    for item in environ:
        if item.startswith(OWNER_ENV.encode() + b"="):
            with contextlib.suppress(ValueError):
                return int(item.split(b"=", 1)[1])
    return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_orphans(owner: int | None = None) -> list[int]:
    """SIGKILL processes the harness started: those of `owner`, or (default) those whose owner died."""
    killed = []
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        pid = int(entry.name)
        got = _owner_of(pid)
        if got is None or got == pid:
            continue
        if (owner is not None and got == owner) or (owner is None and not pid_alive(got)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
    return killed
