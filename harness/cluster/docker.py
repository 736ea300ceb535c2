"""The Docker backend: server, workers and gateway as containers on a per-run bridge network.

Layout of one run (``<p>`` = ``harness-<run id>``):

- network ``<p>``: a user-defined bridge; members reach each other by container name.
- ``<p>-server``: the server image (``images.ensure_server_image``); its sqlite store lives on the
  named volume ``<p>-store``, so a SIGKILLed server container restarts (``docker start``) on the
  same store. API and metrics ports are published on 127.0.0.1 for the harness's own reads.
- ``<p>-worker-N``: the app image running ``python -m workflow.worker``.
- ``<p>-gateway``: the app image running ``python -m harness.gateway``; its Lambda instances are
  subprocesses inside that container. Its HTTP port is published on 127.0.0.1.
- ``<p>-toxiproxy`` (proxied clusters only, ``ClusterConfig.proxied``): the toxiproxy image
  (``images.ensure_toxiproxy_image``) on the run network, its HTTP API published on 127.0.0.1 for
  the harness. Each worker gets its own pair of proxies, ``<worker>-api`` and ``<worker>-poll``,
  listening on fixed ports of that container and forwarding to the server container's REST API and
  SSE poll port; the worker dials them (``worker_server(worker)``), the gateway and the harness reach
  the server directly. ``partition_worker`` then disables the worker's proxies, which closes its
  connections (the server drops it from the group at once) and refuses new ones, exactly as on the
  proxied process backend; link toxics (latency, bandwidth, resets) go on the same proxies. Without
  ``proxied``, ``partition_worker`` disconnects the worker's container from the run network: a
  silent partition in which no connection is closed.

The run directory is bind-mounted at the same absolute path in every container, so the ledger,
the sink, the failpoints and the gateway's request log are where the process backend puts them
and the checks are the same code. The project tree is bind-mounted read-only at its own path and
put first on PYTHONPATH (as the process backend does), so swapped-in SUT modules such as
``tests.broken.*`` import in containers too.

Worker containers share the host's PID namespace. The SDK names a worker process
``<worker id>-<pid>`` and the server extends the lease of every task claimed under that name on
each heartbeat: in a private PID namespace the worker's pid is the same on every start, so a
restarted worker would keep the tasks of its killed predecessor leased for ever. Host pids make
that name unique again, as on the process backend. (docker-init runs as a child subreaper there,
and containerd kills the container's whole cgroup when it exits.)

Everything is labelled with the run id and the owner (harness pid, its start time and host).
``stop()`` removes what the cluster created; ``start()`` first removes what runs whose owner died
left behind; :func:`remove_leftovers` is what ``harness down`` calls.

Container logs are dumped to ``<run dir>/logs/<member>.log`` when a member is killed or stopped and
at ``stop()``; a container keeps its log across restarts, so each dump holds every incarnation.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import sys
import tarfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests
from docker.models.containers import Container
from docker.models.networks import Network
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_fixed

from harness.cluster.base import Cluster, ClusterConfig
from harness.cluster.images import (
    TOXIPROXY_API_PORT,
    DockerUnavailable,
    docker_client,
    ensure_app_image,
    ensure_server_image,
    ensure_toxiproxy_image,
)
from harness.cluster.links import LINK_PORTS, Link, ProxiedLinks
from harness.cluster.process import pid_alive
from harness.errors import HarnessError, WaitTimeout
from harness.stack import PROJECT_ROOT, Ports
from harness.toxiproxy import Toxiproxy
from harness.waiting import free_port, wait_until

# --- labels every container, network and volume of a run carries ---------------------------------
L_RUN = "harness.run"  # the run id (the name prefix is harness-<run id>)
L_OWNER = "harness.owner"  # pid of the harness process that created it
L_OWNER_START = "harness.owner-start"  # that process's start time (clock ticks since boot): pid reuse
L_HOST = "harness.owner-host"  # hostname of that process: only its own host can judge if it is alive
L_ROLE = "harness.role"  # server | worker | gateway | toxiproxy | network | store
L_WORKER = "harness.worker"  # worker id, on worker containers
L_RUN_DIR = "harness.run-dir"

# Ports inside the containers (fixed: every member has its own network namespace).
SERVER_PORTS = Ports(api=8001, poll=8002, metrics=9090)
GATEWAY_PORT = 8080
LINK_PORT_BASE = 20000  # worker-1 proxies on 20000 (api), 20001 (poll); worker-2 on 20002, 20003; ...
STORE_DIR = "/var/lib/resonate"
STORE = f"{STORE_DIR}/resonate.db"

STOP_GRACE_S = 5  # SIGTERM -> SIGKILL at stop()
API_TIMEOUT_S = 60  # Docker API calls (container stop adds its own grace period on top)
DOWN_HINT = "harness down (removes what crashed runs left behind)"
# Environment variables of the harness's own process forwarded to the containers (the process
# backend passes its whole environment; only the SUT's and harness's knobs make sense here).
FORWARD_PREFIXES = ("HARNESS_", "WORKFLOW_", "RESONATE_")
NOT_FORWARDED = {"HARNESS_OWNER"}  # the process backend's orphan reaper matches on it in /proc


def _log(msg: str) -> None:
    print(f"harness[docker]: {msg}", file=sys.stderr, flush=True)


# --- ownership ----------------------------------------------------------------------------------
def _start_time(pid: int) -> str:
    """Start time of a process in clock ticks since boot ('' if unknown): tells a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]


def owner_labels() -> dict[str, str]:
    pid = os.getpid()
    return {L_OWNER: str(pid), L_OWNER_START: _start_time(pid), L_HOST: socket.gethostname()}


def owner_alive(labels: dict[str, str]) -> bool:
    """Whether the harness process that created a resource still runs (True if it cannot tell)."""
    if labels.get(L_HOST) != socket.gethostname():
        return True  # another machine's harness on a shared daemon: not ours to judge
    try:
        pid = int(labels.get(L_OWNER, ""))
    except ValueError:
        return False
    if not pid_alive(pid):
        return False
    started = labels.get(L_OWNER_START)
    return not started or _start_time(pid) in ("", started)


# --- leftovers ----------------------------------------------------------------------------------
def _remove_resources(
    client: docker.DockerClient, keep: Callable[[dict[str, str]], bool], logs_for: Callable[[Container], None]
) -> list[str]:
    """Remove harness-labelled containers, then networks, then volumes, unless keep(labels).

    Goes on past a resource it cannot remove; raises HarnessError naming those at the end.
    """
    removed: list[str] = []
    failed: list[str] = []
    flt = {"label": L_RUN}

    def remove(what: str, call: Callable[[], None]) -> None:
        try:
            call()
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as e:
            if "already in progress" not in str(e):  # else another harness is removing it right now
                failed.append(f"{what} ({e})")
            return
        except HarnessError as e:
            failed.append(f"{what} ({e})")
            return
        removed.append(what)

    for c in client.containers.list(all=True, filters=flt, sparse=True):
        labels = c.attrs.get("Labels") or {}
        if keep(labels):
            continue
        with contextlib.suppress(docker.errors.APIError, requests.RequestException, OSError):
            logs_for(c)
        name = (c.attrs.get("Names") or [c.id])[0].lstrip("/")
        remove(f"container {name}", lambda c=c: c.remove(force=True, v=True))
    for n in client.networks.list(filters=flt):
        if not keep(n.attrs.get("Labels") or {}):
            remove(f"network {n.name}", lambda n=n: _remove_network(n))
    for v in client.volumes.list(filters=flt):
        if not keep(v.attrs.get("Labels") or {}):
            remove(
                f"volume {v.name}",
                lambda v=v: _retry_api(lambda: v.remove(force=True), f"removal of {v.name}"),
            )
    if failed:
        raise HarnessError(
            "every leftover container, network and volume removed",
            seen=f"removed {len(removed)}; could not remove {'; '.join(failed)}",
            hint="docker ps -a / docker network ls / docker volume ls --filter label=harness.run",
        )
    return removed


def _remove_network(network: Network) -> None:
    """Disconnect whatever is still attached, then remove the network."""
    with contextlib.suppress(docker.errors.APIError):
        network.reload()
        for c in network.attrs.get("Containers") or {}:
            with contextlib.suppress(docker.errors.APIError):
                network.disconnect(c, force=True)
    _retry_api(network.remove, f"removal of network {network.name}")


def _retry_api(call: Callable[[], Any], what: str, timeout: float = 15) -> None:
    """Retry a removal the daemon refuses while a just-removed container is still being torn down."""
    last: list[str] = []

    def attempt() -> bool:
        try:
            call()
        except docker.errors.NotFound:
            return True
        except docker.errors.APIError as e:
            last[:] = [str(e)]
            return False
        return True

    wait_until(attempt, timeout=timeout, interval=0.2, expected=what, seen=lambda: last[0] if last else "",
               hint=DOWN_HINT)  # fmt: skip


def remove_leftovers(all_: bool = False, client: docker.DockerClient | None = None) -> list[str]:
    """Remove harness containers, networks and volumes whose owner process is dead.

    Returns what was removed, e.g. ``["container harness-1a2b-server", "network harness-1a2b"]``.
    Resources of live harness processes (parallel runs, pytest-xdist workers) are left alone,
    unless ``all_``: then every harness-labelled resource goes, running runs included. Before a
    container is removed its log is saved into its run directory's logs/ if that still exists.
    """
    own = client is None
    client = client or docker_client(timeout=API_TIMEOUT_S)
    try:
        return _remove_resources(client, (lambda _: False) if all_ else owner_alive, _dump_leftover_logs)
    finally:
        if own:
            client.close()


def _dump_leftover_logs(container: Container) -> None:
    """Save a dead run's container log into its run directory's logs/ (if that still exists)."""
    labels = container.attrs.get("Labels") or {}
    run_dir = labels.get(L_RUN_DIR)
    if not run_dir or not (Path(run_dir) / "logs").is_dir():
        return
    full = container.client.containers.get(container.id)
    (Path(run_dir) / "logs" / _log_name(labels)).write_bytes(full.logs())


def _log_name(labels: dict[str, str]) -> str:
    role = labels.get(L_ROLE, "container")
    return f"{labels[L_WORKER]}.log" if role == "worker" and L_WORKER in labels else f"{role}.log"


def _tcp_table(container: Container) -> list[str]:
    """The lines of /proc/net/tcp and /proc/net/tcp6 in a running container's network namespace.

    Read through the container's init process on this host when the daemon is local (no exec),
    else with `docker exec cat`. [] if the container is not running.
    """
    try:
        container.reload()
    except (docker.errors.APIError, requests.RequestException):
        return []
    pid = int(container.attrs.get("State", {}).get("Pid") or 0)
    if container.status != "running" or pid <= 0:
        return []
    try:  # the pid is this container's only if it sits in the container's cgroup on this host
        if container.id in Path(f"/proc/{pid}/cgroup").read_text():
            return [line for t in ("tcp", "tcp6") if (f := Path(f"/proc/{pid}/net/{t}")).exists()
                    for line in f.read_text().splitlines()[1:]]  # fmt: skip
    except OSError:
        pass
    try:
        res = container.exec_run(["cat", "/proc/net/tcp", "/proc/net/tcp6"])
    except (docker.errors.APIError, requests.RequestException):
        return []
    return [
        line
        for line in res.output.decode(errors="replace").splitlines()
        if not line.lstrip().startswith("sl")
    ]


def _established(table: list[str], port: int) -> int:
    """ESTABLISHED sockets whose local port is `port` in a /proc/net/tcp table (connections accepted there)."""
    want = f":{port:04X}"
    return sum(1 for line in table if len(f := line.split()) > 3 and f[1].endswith(want) and f[3] == "01")


@contextlib.contextmanager
def _shielded() -> Iterator[None]:
    """Defer SIGINT/SIGTERM while tearing down, so a second Ctrl-C cannot strand containers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []
    old = {s: signal.signal(s, lambda n, _f: got.append(n)) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        if got:  # deliver it now that everything is removed
            _log("interrupt received during teardown; teardown finished first")
            signal.raise_signal(got[0])


# --- the cluster ----------------------------------------------------------------------------------
class DockerCluster(ProxiedLinks, Cluster):
    backend = "docker"

    def __init__(self, config: ClusterConfig) -> None:
        super().__init__(config)
        self.client = docker_client(timeout=API_TIMEOUT_S)
        self.run_id = uuid.uuid4().hex[:10]
        self.run_dir = Path(config.run_dir).resolve()  # absolute: the same path inside every container
        self.prefix = f"harness-{self.run_id}"
        self.network_name = self.prefix
        self.volume_name = f"{self.prefix}-store"
        self.server_name = f"{self.prefix}-server"
        self.gateway_name = f"{self.prefix}-gateway"
        self.toxiproxy_name = f"{self.prefix}-toxiproxy"
        # host ports, fixed for the cluster's lifetime so a restarted server keeps its address
        self.api_port, self.metrics_port, self.gateway_port = free_port(), free_port(), free_port()
        self.toxiproxy_port = free_port() if config.proxied else 0  # its HTTP API on 127.0.0.1
        self.server_api = f"http://127.0.0.1:{self.api_port}"
        self.metrics_url = f"http://127.0.0.1:{self.metrics_port}"
        self.gateway_url = f"http://127.0.0.1:{self.gateway_port}"
        self.server_image = ""
        self.app_image = ""
        self.network: Network | None = None
        self.server: Container | None = None
        self.gateway: Container | None = None
        self.toxiproxy: Container | None = None  # proxied clusters only
        self.toxiproxy_image = ""
        self.toxiproxy_client: Toxiproxy | None = None
        self.toxiproxy_version = ""
        self.links: dict[str, Link] = {}  # worker -> its proxies (proxied clusters)
        self.workers: dict[str, Container] = {}
        self._next_worker = 1
        self._ids = threading.Lock()
        self._links_lock = threading.Lock()
        self._downed: set[str] = set()  # workers the harness took down on purpose
        self._partitioned: set[str] = set()
        self._stopped = False
        self.timings: dict[str, float] = {}  # start-up phases, seconds

    # --- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        t0 = time.monotonic()
        try:  # other runs' debris must not stop this one
            gone = remove_leftovers(client=self.client)
        except HarnessError as e:
            _log(f"could not remove every leftover of dead runs: {e.oneline()}")
        else:
            if gone:
                _log(f"removed {len(gone)} leftovers of dead harness runs: {', '.join(gone)}")
        builder = docker_client()  # image builds and imports may take minutes: a client with a long timeout
        try:
            self.server_image = ensure_server_image(builder, Path(self.config.stack.server_bin))
            self.app_image = ensure_app_image(builder, PROJECT_ROOT)
            if self.config.proxied:
                self.toxiproxy_image = ensure_toxiproxy_image(builder)
        finally:
            builder.close()
        self.timings["images_s"] = time.monotonic() - t0
        for d in (self.run_dir, self.ledger_dir, self.logs_dir, self.failpoints_dir):
            d.mkdir(parents=True, exist_ok=True)
        t = time.monotonic()
        with self._api(f"network {self.network_name} and volume {self.volume_name} created"):
            self.network = self.client.networks.create(
                self.network_name, driver="bridge", labels=self._labels("network"), check_duplicate=True
            )
            self.client.volumes.create(self.volume_name, labels=self._labels("store"))
        if self.config.proxied:
            t_proxy = time.monotonic()
            self._start_toxiproxy()
            self.timings["toxiproxy_s"] = time.monotonic() - t_proxy
        self.start_server()
        self.timings["server_s"] = time.monotonic() - t
        t = time.monotonic()
        self._add_workers(self.config.workers)
        self.timings["workers_s"] = time.monotonic() - t
        t = time.monotonic()
        self._start_gateway()
        self.timings["gateway_s"] = time.monotonic() - t
        self.timings["total_s"] = time.monotonic() - t0

    def stop(self) -> None:
        """Stop every member (SIGTERM, SIGKILL after a grace period), save logs, remove everything."""
        if self._stopped:
            return
        self._stopped = True
        with _shielded():
            try:
                self._teardown()
            except (docker.errors.DockerException, requests.RequestException, HarnessError, OSError) as e:
                _log(f"teardown of run {self.run_id} incomplete ({e}); to clean up: {DOWN_HINT}")
            finally:
                self.client.close()

    def _teardown(self) -> None:
        members = self._run_containers()
        for c in members:  # a frozen process cannot act on SIGTERM
            if c.status == "paused":
                with contextlib.suppress(docker.errors.APIError):
                    c.unpause()
        running = [c for c in members if c.status in ("running", "paused")]
        for c in running:
            with contextlib.suppress(docker.errors.APIError):
                c.kill("SIGTERM")
        deadline = time.monotonic() + STOP_GRACE_S
        for c in running:
            try:
                self.client.api.wait(c.id, timeout=max(0.5, deadline - time.monotonic()))
            except (requests.RequestException, docker.errors.APIError):
                with contextlib.suppress(docker.errors.APIError):
                    c.kill("SIGKILL")
        try:
            for c in members:
                self._dump_logs(c)
            self._save_store()
            self._write_inventory(members)
        finally:  # whatever could not be saved, remove everything
            _remove_resources(self.client, lambda labels: labels.get(L_RUN) != self.run_id, lambda _c: None)

    def _run_containers(self) -> list[Container]:
        """This run's containers, found by label (also those a start() interrupted mid-call made)."""
        found = self.client.containers.list(all=True, filters={"label": f"{L_RUN}={self.run_id}"})
        return list(found)

    def _labels(self, role: str, **extra: str) -> dict[str, str]:
        return {
            L_RUN: self.run_id,
            L_ROLE: role,
            L_RUN_DIR: str(self.run_dir),
            **owner_labels(),
            **extra,
        }

    # --- environment ----------------------------------------------------------------------
    @property
    def failpoints_dir(self) -> Path:
        return self.run_dir / "failpoints"

    @property
    def logs_dir(self) -> Path:
        return self.run_dir / self.config.logs_dir.relative_to(self.config.run_dir)

    @property
    def ledger_dir(self) -> Path:
        return self.run_dir / self.config.ledger_dir.relative_to(self.config.run_dir)

    def worker_server(self, worker: str | None = None) -> tuple[str, int, int]:
        """Where a member reaches the server: (host, api port, poll port) on the run network.

        Every member's RESONATE_* variables come from here. A worker of a proxied cluster dials its
        own pair of proxies in the toxiproxy container (made on first use); the gateway's Lambda
        instances (worker None) and unproxied workers dial the server container by name.
        """
        if worker is not None and self.config.proxied:
            link = self.links.get(worker) or self._make_link(worker)
            return self.toxiproxy_name, link.ports["api"], link.ports["poll"]
        return self.server_name, SERVER_PORTS.api, SERVER_PORTS.poll

    def env(self, worker: str | None = None, **extra: str) -> dict[str, str]:
        """The same variables ProcessCluster.env() sets, with the server reached by container name
        (or, for a worker of a proxied cluster, through its proxies: see worker_server)."""
        c, run_dir = self.config, self.run_dir
        host, api, poll = self.worker_server(worker)
        forwarded = {
            k: v for k, v in os.environ.items() if k.startswith(FORWARD_PREFIXES) and k not in NOT_FORWARDED
        }
        return {
            **forwarded,
            "PYTHONPATH": str(PROJECT_ROOT),
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",  # the project is mounted read-only
            "HOME": "/tmp",
            "HARNESS_RUN_DIR": str(run_dir),
            "HARNESS_LEDGER_DIR": str(self.ledger_dir),
            "HARNESS_FAILPOINTS": str(run_dir / "failpoints" / "armed.json"),
            "HARNESS_WORKFLOW_MODULE": c.workflow_module,
            "HARNESS_LAMBDA_MODULE": c.lambda_module,
            "RESONATE_HOST": f"http://{host}",
            "RESONATE_STORE_PORT": str(api),
            "RESONATE_MSG_PORT": str(poll),
            "WORKFLOW_TTL": str(c.ttl),
            "WORKFLOW_STEP_SECONDS": c.step_seconds,
            "WORKFLOW_SINK": str(run_dir / "sink.db"),
            **c.extra_env,
            **extra,
        }

    def _mounts(self) -> dict[str, dict[str, str]]:
        """The project (read-only) and the run directory (read-write), each at its own path."""
        run_dir = str(self.run_dir)
        return {
            str(PROJECT_ROOT): {"bind": str(PROJECT_ROOT), "mode": "ro"},
            run_dir: {"bind": run_dir, "mode": "rw"},
        }

    def _app_container(self, name: str, command: list[str], role: str, **kwargs: Any) -> Container:
        """Create a container of the app image on the run network, as the invoking user."""
        labels = self._labels(role, **kwargs.pop("labels", {}))
        try:
            return self.client.containers.create(
                self.app_image, command, name=name, labels=labels, network=self.network_name, init=True,
                volumes=self._mounts(), user=f"{os.getuid()}:{os.getgid()}", working_dir=str(PROJECT_ROOT),
                **kwargs,
            )  # fmt: skip
        except docker.errors.APIError as e:
            raise HarnessError(f"container {name} to be created", seen=str(e), hint=DOWN_HINT) from e

    # --- server ---------------------------------------------------------------------------
    def start_server(self) -> None:
        if self.server is None:
            args = [
                *self.config.stack.serve_args(SERVER_PORTS, STORE, host="0.0.0.0"),
                *self.config.server_args,
            ]
            with self._api(f"server container {self.server_name} created"):
                self.server = self.client.containers.create(
                    self.server_image, args, name=self.server_name, labels=self._labels("server"),
                    network=self.network_name, init=True, volumes={self.volume_name: {"bind": STORE_DIR, "mode": "rw"}},
                    ports={f"{SERVER_PORTS.api}/tcp": ("127.0.0.1", self.api_port),
                           f"{SERVER_PORTS.metrics}/tcp": ("127.0.0.1", self.metrics_port)},
                )  # fmt: skip
        else:
            self.server.reload()
            if self.server.status in ("running", "paused", "restarting"):
                raise HarnessError(
                    "the server to be down before it is started",
                    seen=f"container {self.server.name} {self.server.status}",
                )
        try:
            self.server.start()  # same container: same volume (store) and the same published ports
        except docker.errors.APIError as e:
            raise HarnessError(
                f"server container {self.server_name} to start on 127.0.0.1:{self.api_port} and :{self.metrics_port}",
                seen=str(e),
                hint="another process may have taken the port meanwhile; run again",
            ) from e
        self._wait_member(self.server, "server.log", self._server_answers, timeout=30,
                          expected=f"the Resonate server answering at {self.server_api}")  # fmt: skip

    def _server_answers(self) -> bool:
        try:
            return requests.get(f"{self.server_api}/promises?id=__ready__&limit=1", timeout=1).ok
        except requests.RequestException:
            return False

    def kill_server(self) -> None:
        if self.server is None:
            return
        self._kill(self.server)
        self._dump_logs(self.server)

    def server_log_tail(self) -> str:
        return self._log_tail(self.server) if self.server is not None else "no server container"

    def _save_store(self) -> None:
        """Copy the server's sqlite store out of its volume into <run dir>/server/, as on the process backend."""
        if self.server is None:
            return
        try:
            stream, _ = self.server.get_archive(STORE_DIR)
            data = b"".join(stream)
        except (docker.errors.APIError, requests.RequestException):
            return
        out = self.run_dir / "server"
        out.mkdir(exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for member in tar.getmembers():
                name = Path(member.name).name
                if member.isfile() and name.startswith("resonate.db"):
                    src = tar.extractfile(member)
                    if src is not None:
                        (out / name).write_bytes(src.read())

    # --- workers --------------------------------------------------------------------------
    def _new_worker_id(self) -> str:
        with self._ids:
            worker = f"worker-{self._next_worker}"
            self._next_worker += 1
            return worker

    def add_worker(self) -> str:
        return self._add_workers(1)[0]

    def _add_workers(self, n: int) -> list[str]:
        """Create and start n workers (concurrently) and wait until all of them are connected."""
        ids = [self._new_worker_id() for _ in range(n)]
        before = self.poll_connections()
        with ThreadPoolExecutor(max_workers=min(4, n)) as pool:
            for worker, container in zip(ids, pool.map(self._create_worker, ids), strict=True):
                self.workers[worker] = container
            list(pool.map(lambda w: self.workers[w].start(), ids))
        self._wait_connected(ids, before + n)
        return ids

    def _create_worker(self, worker: str) -> Container:
        return self._app_container(
            f"{self.prefix}-{worker}", ["python", "-m", "workflow.worker"], "worker",
            labels={L_WORKER: worker}, hostname=worker,
            environment=self.env(worker, HARNESS_WORKER_ID=worker, TINI_SUBREAPER="1"),
            pid_mode="host",  # unique pids across restarts: see the module docstring
        )  # fmt: skip

    def _wait_connected(self, workers: list[str], at_least: int) -> None:
        timeout = 30 + 5 * len(workers)

        last_check = [0.0]

        def connected() -> bool:
            if time.monotonic() - last_check[0] > 0.5:  # one Docker API call, twice a second
                last_check[0] = time.monotonic()
                states = self._worker_states()
                for w in workers:
                    if states.get(w, {}).get("State") in ("exited", "dead"):
                        self._fail_if_exited(self.workers[w], f"{w}.log")
            return self.poll_connections() >= at_least

        try:
            wait_until(connected, timeout=timeout, interval=0.1,
                       expected=f"{at_least} SSE connections to the server's poll port (after starting {', '.join(workers)})",
                       seen=lambda: f"{self.poll_connections()} connected",
                       hint=f"look at {self.logs_dir}/{workers[0]}.log; a slow machine may need fewer --workers")  # fmt: skip
        except WaitTimeout:
            for w in workers:
                self._dump_logs(self.workers[w])
            raise

    def restart_worker(self, worker: str) -> None:
        """Start the worker's container again (its id, mounts and log carry over); a fresh one if it is gone."""
        container = self._container(worker)
        try:
            container.reload()
        except docker.errors.NotFound:
            container = None
        if container is not None and container.status in ("running", "paused", "restarting"):
            raise HarnessError(
                f"{worker} to be down before it is restarted", seen=f"container {container.status}"
            )
        self._downed.discard(worker)
        before = self.poll_connections()
        if container is None:
            container = self.workers[worker] = self._create_worker(worker)
        container.start()
        if worker not in self._partitioned:  # a worker restarted while cut off cannot connect before heal
            self._wait_connected([worker], before + 1)

    def _container(self, worker: str) -> Container:
        try:
            return self.workers[worker]
        except KeyError:
            raise HarnessError(f"a worker named one of {sorted(self.workers)}", seen=worker) from None

    def stop_worker(self, worker: str) -> None:
        c = self._container(worker)
        self._downed.add(worker)
        c.reload()
        if c.status == "paused":
            c.unpause()
        c.stop(timeout=10)
        self._dump_logs(c)

    def kill_worker(self, worker: str) -> None:
        c = self._container(worker)
        self._downed.add(worker)
        self._kill(c)
        self._dump_logs(c)

    def pause_worker(self, worker: str) -> None:
        """docker pause: the cgroup freezer stops every process of the container (no signal to catch).

        The cgroup v1 freezer sometimes gives up ("unable to freeze") while a task is between
        states; runc leaves the container running then, so the pause is simply tried again."""
        for attempt in Retrying(stop=stop_after_attempt(5), wait=wait_fixed(0.3), reraise=True,
                                retry=retry_if_exception(lambda e: "unable to freeze" in str(e))):  # fmt: skip
            with attempt, self._api(f"{worker} paused"):
                self._container(worker).pause()

    def resume_worker(self, worker: str) -> None:
        with self._api(f"{worker} resumed"):
            self._container(worker).unpause()

    def partition_worker(self, worker: str) -> None:
        """Cut the worker off from the server; its process runs on.

        Proxied cluster: both its proxies are disabled, which closes its connections (the server
        drops it from the group at once) and refuses new ones, as on the proxied process backend.
        Otherwise its container is disconnected from the run network: a silent partition, packets
        are dropped and no connection is closed, so the server keeps the worker's SSE connection
        (as for a paused worker) until TCP gives up on it.
        """
        c = self._container(worker)
        if worker in self._partitioned:
            raise HarnessError(
                f"{worker} to be connected before it is partitioned", seen="it is cut off already"
            )
        if self.config.proxied:
            self.set_link(worker, up=False)
        else:
            with self._api(f"{worker} disconnected from network {self.network_name}"):
                self._network().disconnect(c, force=True)
        self._partitioned.add(worker)

    def heal_worker(self, worker: str) -> None:
        """Undo partition_worker: its proxies listen again (same ports), or its container is connected
        to the run network again. The worker's SDK reconnects on its own retry schedule."""
        c = self._container(worker)
        if worker not in self._partitioned:
            raise HarnessError(f"{worker} to be partitioned before it is healed", seen="it is connected")
        if self.config.proxied:
            self.set_link(worker, up=True)
        else:
            with self._api(f"{worker} connected to network {self.network_name} again"):
                self._network().connect(c)
        self._partitioned.discard(worker)

    # --- links (proxied clusters): toxics between one worker and the server ------------------
    def _start_toxiproxy(self) -> None:
        """The toxiproxy container on the run network, its API published on 127.0.0.1 for the harness."""
        with self._api(f"toxiproxy container {self.toxiproxy_name} created and started"):
            self.toxiproxy = self.client.containers.create(
                self.toxiproxy_image, ["-host", "0.0.0.0", "-port", str(TOXIPROXY_API_PORT)],
                name=self.toxiproxy_name, labels=self._labels("toxiproxy"), network=self.network_name, init=True,
                environment={"LOG_LEVEL": "info"},
                ports={f"{TOXIPROXY_API_PORT}/tcp": ("127.0.0.1", self.toxiproxy_port)},
            )  # fmt: skip
            self.toxiproxy.start()
        client = Toxiproxy(f"http://127.0.0.1:{self.toxiproxy_port}")
        self._wait_member(self.toxiproxy, "toxiproxy.log", client.ready, timeout=30,
                          expected=f"toxiproxy answering at {client.url}")  # fmt: skip
        self.toxiproxy_client = client
        self.toxiproxy_version = client.version()

    def _toxiproxy_client(self) -> Toxiproxy | None:
        return self.toxiproxy_client

    def _make_link(self, worker: str) -> Link:
        """The worker's proxies: <worker>-api and <worker>-poll, on the next two fixed ports of the
        toxiproxy container, forwarding to the server container by name (resolved per connection,
        so a restarted server is found again)."""
        tp = self._toxiproxy()
        upstream = {"api": SERVER_PORTS.api, "poll": SERVER_PORTS.poll}
        with self._links_lock:
            if worker in self.links:
                return self.links[worker]
            first = LINK_PORT_BASE + len(LINK_PORTS) * len(self.links)
            proxies, ports = {}, {}
            for i, kind in enumerate(LINK_PORTS):
                name = f"{worker}-{kind}"
                tp.create_proxy(name, f"{self.server_name}:{upstream[kind]}", listen=f"0.0.0.0:{first + i}")
                proxies[kind], ports[kind] = name, first + i
            link = self.links[worker] = Link(worker, proxies, ports)
        return link

    def link_connections(self, worker: str) -> dict[str, int]:
        """Open TCP connections through each of the worker's proxies ("api", "poll"): 0 while cut,
        and "poll" back to 1 once the worker's SDK has reconnected its SSE stream.

        Counted as on the process backend: ESTABLISHED sockets on the proxy's listening port, read
        from the TCP table of the toxiproxy container's network namespace.
        """
        link = self.link(worker)
        if self.toxiproxy is None:
            return {kind: -1 for kind in link.ports}
        table = _tcp_table(self.toxiproxy)
        return {kind: _established(table, port) for kind, port in link.ports.items()}

    def versions(self) -> dict[str, str]:
        """Versions of what this cluster runs besides the stack's server and SDK, for results.json:
        {"toxiproxy": "v2.12.0"} for a proxied cluster (as the runner records for the process
        backend), {} otherwise. Known once start() has returned; also in logs/containers.json."""
        return {"toxiproxy": self.toxiproxy_version} if self.toxiproxy_version else {}

    def _network(self) -> Network:
        if self.network is None:
            raise HarnessError("a started cluster", seen="no run network yet", hint="call start() first")
        return self.network

    @contextlib.contextmanager
    def _api(self, what: str) -> Iterator[None]:
        """Turn a Docker API refusal into a HarnessError that says what was tried."""
        try:
            yield
        except docker.errors.APIError as e:
            raise HarnessError(
                what, seen=str(e), hint="docker ps -a / docker network ls show the state"
            ) from e

    def _worker_states(self) -> dict[str, dict[str, Any]]:
        """One Docker API call: each worker container's summary (State: running, paused, exited, ...)."""
        rows = self.client.api.containers(
            all=True, filters={"label": [f"{L_RUN}={self.run_id}", f"{L_ROLE}=worker"]}
        )
        return {r["Labels"].get(L_WORKER, ""): r for r in rows}

    def live_workers(self) -> list[str]:
        states = self._worker_states()
        return [w for w in self.workers if states.get(w, {}).get("State") in ("running", "paused")]

    def unexpected_exits(self) -> dict[str, int]:
        """Exit codes as the process backend reports them: -N for a worker killed by signal N.

        docker-init exits with 128+N when its child dies of signal N (a failpoint's self-SIGKILL: 137).
        """
        out: dict[str, int] = {}
        for w, row in self._worker_states().items():
            if w in self.workers and w not in self._downed and row.get("State") in ("exited", "dead"):
                code = int(self.client.api.inspect_container(row["Id"])["State"]["ExitCode"])
                out[w] = 128 - code if 128 < code < 128 + 65 else code
        return out

    def worker_container(self, worker: str) -> Container:
        """The worker's container (tests inspect its state)."""
        c = self._container(worker)
        c.reload()
        return c

    # --- gateway --------------------------------------------------------------------------
    def _start_gateway(self) -> None:
        c = self.config
        args = [
            "python", "-m", "harness.gateway",
            "--host", "0.0.0.0", "--port", str(GATEWAY_PORT),
            "--instances", str(c.gateway_instances), "--module", c.lambda_module,
            "--log", str(self.logs_dir / "gateway-requests.jsonl"),
        ]  # fmt: skip
        self.gateway = self._app_container(
            self.gateway_name, args, "gateway", environment=self.env(),
            ports={f"{GATEWAY_PORT}/tcp": ("127.0.0.1", self.gateway_port)},
        )  # fmt: skip
        self.gateway.start()

        def ready() -> bool:
            try:
                return requests.get(f"{self.gateway_url}/_gateway/instances", timeout=1).ok
            except requests.RequestException:
                return False

        self._wait_member(self.gateway, "gateway.log", ready, timeout=60,
                          expected=f"the gateway answering at {self.gateway_url}")  # fmt: skip

    # --- container helpers ----------------------------------------------------------------
    def _wait_member(
        self, container: Container, log_name: str, probe: Callable[[], bool], *, timeout: float, expected: str
    ) -> None:
        """Wait until probe() holds; fail at once (with its log tail) if the container exits."""
        last_check = [0.0]

        def ready() -> bool:
            if time.monotonic() - last_check[0] > 0.5:
                last_check[0] = time.monotonic()
                self._fail_if_exited(container, log_name)
            return probe()

        try:
            wait_until(ready, timeout=timeout, interval=0.1, expected=expected,
                       seen=lambda: f"container {container.name}: {self._log_tail(container)}",
                       hint=f"look at {self.logs_dir / log_name}")  # fmt: skip
        except WaitTimeout:
            self._dump_logs(container)
            raise

    def _fail_if_exited(self, container: Container, log_name: str) -> None:
        container.reload()
        if container.status in ("exited", "dead"):
            self._dump_logs(container)
            code = container.attrs["State"]["ExitCode"]
            raise HarnessError(
                f"container {container.name} to keep running",
                seen=f"it exited with {code}: {self._log_tail(container)}",
                hint=f"look at {self.logs_dir / log_name}",
            )

    def _kill(self, container: Container) -> None:
        """SIGKILL a container and wait until Docker reports it exited."""
        container.reload()
        paused = container.status == "paused"
        try:
            container.kill("SIGKILL")
        except docker.errors.APIError as e:
            if "is not running" not in str(e):
                raise HarnessError(f"container {container.name} killed", seen=str(e)) from e
        if paused:  # the kill is delivered when the cgroup thaws
            with contextlib.suppress(docker.errors.APIError):
                container.unpause()
        try:
            self.client.api.wait(container.id, timeout=10)
        except requests.RequestException as e:
            raise HarnessError(
                f"container {container.name} to exit within 10s of SIGKILL",
                seen=str(e),
                hint="check the dockerd log",
            ) from e

    def _log_tail(self, container: Container, lines: int = 3) -> str:
        try:
            text = container.logs(tail=lines).decode(errors="replace").strip()
        except (docker.errors.APIError, requests.RequestException):
            return "no log"
        return " | ".join(text.splitlines()) or "no output"

    def _dump_logs(self, container: Container) -> None:
        """Write a container's whole log (every incarnation) to logs/<member>.log."""
        labels = container.labels
        with contextlib.suppress(docker.errors.APIError, requests.RequestException, OSError):
            (self.logs_dir / _log_name(labels)).write_bytes(container.logs())

    def _write_inventory(self, members: list[Container]) -> None:
        """logs/containers.json: what ran, from which image, and how each container ended."""
        rows = []
        for c in members:
            with contextlib.suppress(docker.errors.APIError):
                c.reload()
                st = c.attrs["State"]
                rows.append({"name": c.name, "id": c.id[:12], "image": c.attrs["Config"]["Image"],
                             "role": c.labels.get(L_ROLE), "status": st["Status"], "exit_code": st["ExitCode"],
                             "oom_killed": st["OOMKilled"], "restarts": c.attrs.get("RestartCount", 0)})  # fmt: skip
        with contextlib.suppress(OSError):
            (self.logs_dir / "containers.json").write_text(
                json.dumps(
                    {
                        "run": self.run_id,
                        "network": self.network_name,
                        "volume": self.volume_name,
                        "timings": self.timings,
                        "versions": self.versions(),
                        "containers": rows,
                    },
                    indent=1,
                )
            )


__all__ = ["DockerCluster", "DockerUnavailable", "owner_alive", "remove_leftovers"]
