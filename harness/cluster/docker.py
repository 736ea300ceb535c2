"""The Docker backend: server, workers and gateway as containers on a per-run bridge network.

Layout of one run (``<p>`` = ``harness-<run id>``):

- network ``<p>``: a user-defined bridge; members reach each other by container name.
- ``<p>-server``: the server image (``images.ensure_server_image``); its sqlite store lives on the
  named volume ``<p>-store``, so a SIGKILLed server container restarts (``docker start``) on the
  same store. API, poll and metrics ports are published on 127.0.0.1 for the harness's own reads.
- ``<p>-worker-N``: the app image (``app_image.ensure_app_image``: the app's dependencies and files)
  running ``python -m harness.agent.worker <the app's worker script>`` in the app's directory.
- ``<p>-gateway``: the app image running ``python -m harness.gateway`` (``gateway_command``); its
  Lambda instances are subprocesses inside that container. Its HTTP port is published on 127.0.0.1.
- ``<p>-tool-N``: one-off containers of the app image for the app's tools (the offline replay).
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

Paths are the host's in every container, so ``ClusterConfig.member_env`` is the same on both
backends: the run directory is bind-mounted read-write at its own absolute path (the ledger, the
sink, the failpoints and the gateway's request log land where the process backend puts them, and
the checks are the same code), and the app's files are in the image at their own path. The
harness's own package (the agent and the gateway: standard library, the SDK and ``requests``) is
bind-mounted read-only from wherever it is installed at ``/opt/resonate-harness/harness``, with
``/opt/resonate-harness`` on PYTHONPATH; it is not part of the image.

Worker containers share the host's PID namespace. The SDK names a worker process
``<worker id>-<pid>`` and the server extends the lease of every task claimed under that name on
each heartbeat: in a private PID namespace the worker's pid is the same on every start, so a
restarted worker would keep the tasks of its killed predecessor leased for ever. Host pids make
that name unique again, as on the process backend. (docker-init runs as a child subreaper there,
and containerd kills the container's whole cgroup when it exits.)

Ownership labels and leftovers: ``harness.cluster.docker_resources``. ``stop()`` removes what the
cluster created; ``start()`` first removes what runs whose owner died left behind;
:func:`remove_leftovers` is what ``harness down`` calls.

Container logs are dumped to ``<run dir>/logs/<member>.log`` when a member is killed or stopped and
at ``stop()``; a container keeps its log across restarts, so each dump holds every incarnation.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
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

import harness
from harness.agent.ledger import LEDGER_ENV
from harness.cluster.app_image import ensure_app_image
from harness.cluster.base import Cluster, ClusterConfig
from harness.cluster.docker_resources import (
    API_TIMEOUT_S,
    DOWN_HINT,
    L_OWNER,
    L_ROLE,
    L_RUN,
    L_RUN_DIR,
    L_WORKER,
    established,
    log_name,
    note,
    owner_alive,
    owner_labels,
    remove_leftovers,
    remove_resources,
    shielded,
    tcp_table,
)
from harness.cluster.images import (
    TOXIPROXY_API_PORT,
    DockerUnavailable,
    docker_client,
    ensure_server_image,
    ensure_toxiproxy_image,
)
from harness.cluster.links import LINK_PORTS, Link, ProxiedLinks
from harness.errors import HarnessError, WaitTimeout
from harness.gateway import gateway_command
from harness.stack import Ports
from harness.toxiproxy import Toxiproxy
from harness.waiting import free_ports, wait_until

# Ports inside the containers (fixed: every member has its own network namespace).
SERVER_PORTS = Ports(api=8001, poll=8002, metrics=9090)
GATEWAY_PORT = 8080
LINK_PORT_BASE = 20000  # worker-1 proxies on 20000 (api), 20001 (poll); worker-2 on 20002, 20003; ...
STORE_DIR = "/var/lib/resonate"
STORE = f"{STORE_DIR}/resonate.db"
HARNESS_MOUNT = "/opt/resonate-harness"  # PYTHONPATH entry; the harness package is mounted under it
HARNESS_PACKAGE = Path(harness.__file__).resolve().parent  # the installed package, wherever it is

STOP_GRACE_S = 5  # SIGTERM -> SIGKILL at stop()
TOOL_NAME = "tool"  # the member id of an app tool (the offline replay)
# The harness's own variables forwarded from its environment (the process backend passes its whole
# environment): the agent's and gateway's knobs, e.g. HARNESS_LOG_LEVEL, HARNESS_TRACE_BODY; not the
# process backend's owner marks nor the image-build settings.
FORWARD_PREFIX = "HARNESS_"
NOT_FORWARDED = {"HARNESS_OWNER", "HARNESS_PARENT_PID", "HARNESS_BASE_IMAGE", "HARNESS_ALLOW_PULL",
                 "HARNESS_DEBIAN_SUITE", "HARNESS_DEBIAN_MIRROR", "HARNESS_WHEEL_PYTHON", "HARNESS_CACHE_DIR"}  # fmt: skip


# --- the cluster ----------------------------------------------------------------------------------
class DockerCluster(ProxiedLinks, Cluster):
    backend = "docker"

    def __init__(self, config: ClusterConfig) -> None:
        # absolute: the same path inside every container (member_env hands it to the members)
        super().__init__(dataclasses.replace(config, run_dir=Path(config.run_dir).absolute()))
        self.client = docker_client(timeout=API_TIMEOUT_S)
        self.run_id = uuid.uuid4().hex[:10]
        self.run_dir = self.config.run_dir
        self.prefix = f"harness-{self.run_id}"
        self.network_name = self.prefix
        self.volume_name = f"{self.prefix}-store"
        self.server_name = f"{self.prefix}-server"
        self.gateway_name = f"{self.prefix}-gateway"
        self.toxiproxy_name = f"{self.prefix}-toxiproxy"
        # host ports, fixed for the cluster's lifetime so a restarted server keeps its address
        self.api_port, self.poll_port, self.metrics_port, self.gateway_port, toxi = free_ports(5)
        self.toxiproxy_port = toxi if config.proxied else 0  # its HTTP API on 127.0.0.1
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
        self._tools = 0
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
            note(f"could not remove every leftover of dead runs: {e.oneline()}")
        else:
            if gone:
                note(f"removed {len(gone)} leftovers of dead harness runs: {', '.join(gone)}")
        builder = docker_client()  # image builds and imports may take minutes: a client with a long timeout
        try:
            self.server_image = ensure_server_image(builder, Path(self.config.stack.server_bin))
            self.app_image = ensure_app_image(builder, self.config.app, exclude=[self.run_dir])
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
        with shielded():
            try:
                self._teardown()
            except (docker.errors.DockerException, requests.RequestException, HarnessError, OSError) as e:
                note(f"teardown of run {self.run_id} incomplete ({e}); to clean up: {DOWN_HINT}")
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
            remove_resources(self.client, lambda labels: labels.get(L_RUN) != self.run_id, lambda _c: None)

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
        return self.config.failpoints_file.parent

    @property
    def logs_dir(self) -> Path:
        return self.config.logs_dir

    @property
    def ledger_dir(self) -> Path:
        return self.config.ledger_dir

    def worker_server(self, worker: str | None = None) -> tuple[str, int, int]:
        """Where a member reaches the server: (host, api port, poll port) on the run network.

        Every member's connection variables come from here. A worker of a proxied cluster dials its
        own pair of proxies in the toxiproxy container (made on first use); the gateway's Lambda
        instances and tools (worker None) and unproxied workers dial the server container by name.
        """
        if worker is not None and self.config.proxied:
            link = self.links.get(worker) or self._make_link(worker)
            return self.toxiproxy_name, link.ports["api"], link.ports["poll"]
        return self.server_name, SERVER_PORTS.api, SERVER_PORTS.poll

    def env(self, worker: str | None = None, member: str | None = None, **extra: str) -> dict[str, str]:
        """A container's environment: the harness's forwarded HARNESS_* knobs, ``member_env`` (as on
        the process backend) with the server as `worker` reaches it (see worker_server), and what
        the containers need besides. `member`: the member id (HARNESS_WORKER_ID), default `worker`."""
        host, api, poll = self.worker_server(worker)
        forwarded = {
            k: v for k, v in os.environ.items() if k.startswith(FORWARD_PREFIX) and k not in NOT_FORWARDED
        }
        return {
            **forwarded,
            **self.config.member_env(host, api, poll, worker=member or worker),
            "PYTHONPATH": HARNESS_MOUNT,  # the harness's agent and gateway (mounted read-only)
            "PYTHONDONTWRITEBYTECODE": "1",
            "HOME": "/tmp",
            **extra,
        }

    def tool_env(self) -> dict[str, str]:
        """What an app tool run on the host gets (an [effects] command): the host's view, the server
        at its published ports on 127.0.0.1."""
        return {**os.environ, **self.config.member_env("127.0.0.1", self.api_port, self.poll_port)}

    def _mounts(self) -> dict[str, dict[str, str]]:
        """The harness package (read-only, under HARNESS_MOUNT) and the run directory (read-write, at its own path)."""
        run_dir = str(self.run_dir)
        return {
            str(HARNESS_PACKAGE): {"bind": f"{HARNESS_MOUNT}/harness", "mode": "ro"},
            run_dir: {"bind": run_dir, "mode": "rw"},
        }

    def _app_container(self, name: str, command: list[str], role: str, **kwargs: Any) -> Container:
        """Create a container of the app image on the run network, as the invoking user, in the app's directory."""
        labels = self._labels(role, **kwargs.pop("labels", {}))
        try:
            return self.client.containers.create(
                self.app_image, command, name=name, labels=labels, network=self.network_name, init=True,
                volumes=self._mounts(), user=f"{os.getuid()}:{os.getgid()}", working_dir=str(self.config.app.root),
                **kwargs,
            )  # fmt: skip
        except docker.errors.APIError as e:
            raise HarnessError(f"container {name} to be created", seen=str(e), hint=DOWN_HINT) from e

    # --- the app's tools --------------------------------------------------------------------
    def run_app_tool(
        self, args: list[str], extra: dict[str, str] | None = None, timeout: float = 300
    ) -> tuple[int, str]:
        """``python ARGS`` in a one-off container of the app image on the run network, with the
        members' mounts and environment (member id "tool", no ledger): (exit code, stderr). The
        container is removed afterwards; 124 if it ran out of time."""
        if self._stopped:
            raise HarnessError("a running cluster for the app's tool", seen="it was stopped")
        self._network()
        with self._ids:
            self._tools += 1
            name = f"{self.prefix}-tool-{self._tools}"
        env = self.env(member=TOOL_NAME, **(extra or {}))
        env.pop(LEDGER_ENV, None)  # a tool writes nothing into the run's ledger
        container = self._app_container(name, ["python", *args], "tool", environment=env)
        try:
            with self._api(f"tool container {name} started"):
                container.start()
            try:
                code = int(self.client.api.wait(container.id, timeout=timeout)["StatusCode"])
            except requests.RequestException:
                with contextlib.suppress(docker.errors.APIError):
                    container.kill("SIGKILL")
                return 124, f"timed out after {timeout:g}s: {self._logs(container, stdout=False)}"
            return code, self._logs(container, stdout=False)
        finally:
            with contextlib.suppress(docker.errors.APIError, requests.RequestException):
                container.remove(force=True, v=True)

    def _logs(self, container: Container, stdout: bool = True) -> str:
        try:
            return container.logs(stdout=stdout, stderr=True).decode(errors="replace")
        except (docker.errors.APIError, requests.RequestException) as e:
            return f"(no log: {e})"

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
                           f"{SERVER_PORTS.poll}/tcp": ("127.0.0.1", self.poll_port),
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
                f"server container {self.server_name} to start on 127.0.0.1:{self.api_port}, :{self.poll_port} "
                f"and :{self.metrics_port}",
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
            f"{self.prefix}-{worker}", ["python", "-m", "harness.agent.worker", str(self.config.app.worker_script)],
            "worker", labels={L_WORKER: worker}, hostname=worker, environment=self.env(worker, TINI_SUBREAPER="1"),
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
        table = tcp_table(self.toxiproxy)
        return {kind: established(table, port) for kind, port in link.ports.items()}

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
        args = gateway_command(c.app.handler, resources=c.app.gateway_resources(), host="0.0.0.0", port=GATEWAY_PORT,
                               instances=c.gateway_instances, python="python", cwd=c.app.root,
                               timeout=c.gateway_timeout, log=self.logs_dir / "gateway-requests.jsonl")  # fmt: skip
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
            (self.logs_dir / log_name(labels)).write_bytes(container.logs())

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


__all__ = [
    "L_OWNER",
    "L_ROLE",
    "L_RUN",
    "DockerCluster",
    "DockerUnavailable",
    "owner_alive",
    "owner_labels",
    "remove_leftovers",
]
