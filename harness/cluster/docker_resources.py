"""The Docker backend's resources outside the cluster object: the labels every container, network
and volume of a run carries, who owns them, removing what dead runs left behind (``harness down``),
container logs, and reading a container's TCP table.

Everything is labelled with the run id and the owner (harness pid, its start time and host): a
resource whose owner process is gone on this host is a leftover.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests
from docker.models.containers import Container
from docker.models.networks import Network

from harness.cluster.images import docker_client
from harness.cluster.process import pid_alive
from harness.errors import HarnessError
from harness.waiting import wait_until

# --- labels every container, network and volume of a run carries ---------------------------------
L_RUN = "harness.run"  # the run id (the name prefix is harness-<run id>)
L_OWNER = "harness.owner"  # pid of the harness process that created it
L_OWNER_START = "harness.owner-start"  # that process's start time (clock ticks since boot): pid reuse
L_HOST = "harness.owner-host"  # hostname of that process: only its own host can judge if it is alive
L_ROLE = "harness.role"  # server | worker | gateway | tool | toxiproxy | network | store
L_WORKER = "harness.worker"  # worker id, on worker containers
L_RUN_DIR = "harness.run-dir"

API_TIMEOUT_S = 60  # Docker API calls (container stop adds its own grace period on top)
DOWN_HINT = "harness down (removes what crashed runs left behind)"


def note(msg: str) -> None:
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
def remove_resources(
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
        return remove_resources(client, (lambda _: False) if all_ else owner_alive, _dump_leftover_logs)
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
    (Path(run_dir) / "logs" / log_name(labels)).write_bytes(full.logs())


def log_name(labels: dict[str, str]) -> str:
    role = labels.get(L_ROLE, "container")
    return f"{labels[L_WORKER]}.log" if role == "worker" and L_WORKER in labels else f"{role}.log"


def tcp_table(container: Container) -> list[str]:
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


def established(table: list[str], port: int) -> int:
    """ESTABLISHED sockets whose local port is `port` in a /proc/net/tcp table (connections accepted there)."""
    want = f":{port:04X}"
    return sum(1 for line in table if len(f := line.split()) > 3 and f[1].endswith(want) and f[3] == "01")


@contextlib.contextmanager
def shielded() -> Iterator[None]:
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
            note("interrupt received during teardown; teardown finished first")
            signal.raise_signal(got[0])
