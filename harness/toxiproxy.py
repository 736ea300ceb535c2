"""Toxiproxy: TCP proxies between workers and the server, to cut, slow down or reset one link.

The kernel the harness runs on has no `tc netem`, so link faults are made in user space by
Toxiproxy (Shopify, Go; installed by `harness setup`). This module starts and stops
a `toxiproxy-server` process on a free loopback port and talks to its small HTTP API:

- a proxy listens on one address and forwards to an upstream; disabling it closes its listener
  and every connection through it (the peer sees a reset/EOF, new connects are refused);
- a toxic degrades the traffic of an enabled proxy in one direction (`downstream`: upstream to
  client, `upstream`: client to upstream): `latency` (ms, jitter ms), `bandwidth` (rate KB/s),
  `reset_peer` (reset each connection `timeout` ms after data arrives), `timeout` (stop the data,
  close after `timeout` ms; 0: hold the connection open and drop data for ever, a black hole).

No SDK imports and no third-party Toxiproxy client: the API is a handful of JSON endpoints.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from harness import paths
from harness.errors import HarnessError
from harness.waiting import free_port, wait_until

BIN_ENV = "TOXIPROXY_SERVER_BIN"
INSTALL_HINT = f"run `harness setup`, or set {BIN_ENV} to a toxiproxy-server binary"
STREAMS = ("downstream", "upstream")
# toxic type -> the attributes it takes (all integers, milliseconds or KB/s)
TOXIC_TYPES: dict[str, tuple[str, ...]] = {
    "latency": ("latency", "jitter"),
    "bandwidth": ("rate",),
    "reset_peer": ("timeout",),
    "timeout": ("timeout",),
    "slow_close": ("delay",),
    "limit_data": ("bytes",),
}


def server_bin(path: Path | str | None = None) -> Path:
    """The toxiproxy-server binary to run; HarnessError (exit 2 in the CLI) if there is none."""
    binary = Path(path or os.environ.get(BIN_ENV) or paths.tool_path("toxiproxy-server"))
    if not binary.is_file() or not os.access(binary, os.X_OK):
        raise HarnessError(f"a toxiproxy-server binary at {binary} (for link faults)", hint=INSTALL_HINT)
    return binary


def server_version(path: Path | str | None = None) -> str:
    binary = server_bin(path)
    try:
        out = subprocess.run([str(binary), "-version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise HarnessError(f"a runnable toxiproxy-server at {binary}", seen=str(e), hint=INSTALL_HINT) from e
    m = re.search(r"version (\S+)", out.stdout + out.stderr)
    return m.group(1) if m else "unknown"


# --- the HTTP client ----------------------------------------------------------------------
class Toxiproxy:
    """A client of one toxiproxy-server's HTTP API. Every call is bounded by `timeout` seconds."""

    def __init__(self, url: str, timeout: float = 5) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._http = requests.Session()

    def _call(self, method: str, path: str, expected: str, body: dict[str, Any] | None = None,
              ok: tuple[int, ...] = (200, 201, 204)) -> Any:  # fmt: skip
        try:
            res = self._http.request(method, f"{self.url}{path}", json=body, timeout=self.timeout)
        except requests.RequestException as e:
            raise HarnessError(expected, seen=f"toxiproxy at {self.url} unreachable: {e}",
                               hint="look at toxiproxy.log in the run directory") from e  # fmt: skip
        if res.status_code not in ok:
            try:
                err = res.json().get("error", res.text)
            except ValueError:
                err = res.text
            raise HarnessError(expected, seen=f"{method} {path} answered {res.status_code}: {err.strip()}")
        if res.status_code == 204 or not res.content:
            return None
        try:
            return res.json()
        except ValueError:
            return res.text

    def version(self) -> str:
        got = self._call("GET", "/version", "toxiproxy's version")
        return got.get("version", "") if isinstance(got, dict) else str(got).strip()

    def ready(self) -> bool:
        try:
            return self._http.get(f"{self.url}/version", timeout=1).ok
        except requests.RequestException:
            return False

    # proxies
    def proxies(self) -> dict[str, dict[str, Any]]:
        return self._call("GET", "/proxies", "toxiproxy's proxy list") or {}

    def proxy(self, name: str) -> dict[str, Any]:
        return self._call("GET", f"/proxies/{name}", f"toxiproxy proxy {name!r}")

    def create_proxy(self, name: str, upstream: str, listen: str = "127.0.0.1:0",
                     enabled: bool = True) -> dict[str, Any]:  # fmt: skip
        """Create a proxy; with port 0 Toxiproxy picks a free one (read it from `listen`)."""
        body = {"name": name, "listen": listen, "upstream": upstream, "enabled": enabled}
        return self._call("POST", "/proxies", f"a toxiproxy proxy {name!r} -> {upstream}", body)

    def set_enabled(self, name: str, enabled: bool) -> dict[str, Any]:
        """Disable: close the listener and every connection through it. Enable: listen again (same port)."""
        return self._call("PATCH", f"/proxies/{name}", f"toxiproxy proxy {name!r} {'en' if enabled else 'dis'}abled",
                          {"enabled": enabled})  # fmt: skip

    def delete_proxy(self, name: str) -> None:
        self._call("DELETE", f"/proxies/{name}", f"toxiproxy proxy {name!r} deleted")

    def reset(self) -> None:
        """Enable every proxy and remove every toxic."""
        self._call("POST", "/reset", "toxiproxy reset")

    # toxics
    def toxics(self, proxy: str) -> list[dict[str, Any]]:
        return self._call("GET", f"/proxies/{proxy}/toxics", f"the toxics of proxy {proxy!r}") or []

    def add_toxic(self, proxy: str, type: str, attributes: dict[str, int] | None = None, *,
                  name: str | None = None, stream: str = "downstream", toxicity: float = 1.0) -> dict[str, Any]:  # fmt: skip
        """Add a toxic to a proxy's `stream`; returns it (its name is `name` or `<type>_<stream>`)."""
        if type not in TOXIC_TYPES:
            raise HarnessError(f"a toxic type, one of {', '.join(TOXIC_TYPES)}", seen=type)
        if stream not in STREAMS:
            raise HarnessError(f"a toxic stream, one of {', '.join(STREAMS)}", seen=stream)
        attributes = dict(attributes or {})
        unknown = sorted(set(attributes) - set(TOXIC_TYPES[type]))
        if unknown:
            want = ", ".join(TOXIC_TYPES[type])
            raise HarnessError(f"attributes of a {type} toxic ({want})", seen=", ".join(unknown))
        body = {"name": name or f"{type}_{stream}", "type": type, "stream": stream, "toxicity": toxicity,
                "attributes": attributes}  # fmt: skip
        return self._call("POST", f"/proxies/{proxy}/toxics", f"a {type} toxic on proxy {proxy!r}", body)

    def remove_toxic(self, proxy: str, name: str) -> None:
        self._call("DELETE", f"/proxies/{proxy}/toxics/{name}", f"toxic {name!r} off proxy {proxy!r}")

    # convenience
    def latency(self, proxy: str, ms: int, jitter_ms: int = 0, stream: str = "downstream") -> dict[str, Any]:
        return self.add_toxic(proxy, "latency", {"latency": ms, "jitter": jitter_ms}, stream=stream)

    def bandwidth(self, proxy: str, rate_kb_s: int, stream: str = "downstream") -> dict[str, Any]:
        return self.add_toxic(proxy, "bandwidth", {"rate": rate_kb_s}, stream=stream)

    def reset_peer(self, proxy: str, timeout_ms: int = 0, stream: str = "downstream") -> dict[str, Any]:
        return self.add_toxic(proxy, "reset_peer", {"timeout": timeout_ms}, stream=stream)

    def timeout(self, proxy: str, timeout_ms: int = 0, stream: str = "downstream") -> dict[str, Any]:
        return self.add_toxic(proxy, "timeout", {"timeout": timeout_ms}, stream=stream)


def listen_port(proxy: dict[str, Any]) -> int:
    """The port a proxy (as the API returns it) listens on."""
    return int(str(proxy["listen"]).rsplit(":", 1)[1])


# --- the server process -------------------------------------------------------------------
@dataclass
class ToxiproxyServer:
    """One toxiproxy-server process on a free loopback port, logging into `log_path`.

    `env` is the child's whole environment (the process backend passes its own, which carries
    HARNESS_OWNER so `harness down` and reap_orphans find a leftover toxiproxy too).
    """

    log_path: Path
    env: dict[str, str] | None = None
    binary: Path | str | None = None
    host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.client: Toxiproxy | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 15) -> Toxiproxy:
        if self.running():
            raise HarnessError("toxiproxy to be down before it is started", seen=f"pid {self.pid} running")
        binary = server_bin(self.binary)
        self.port = free_port(self.host)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(self.env if self.env is not None else os.environ)
        env.setdefault("LOG_LEVEL", "info")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [str(binary), "-host", self.host, "-port", str(self.port)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            )  # fmt: skip
        client = Toxiproxy(self.url)

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise HarnessError("toxiproxy-server to start", seen=f"it exited with {self.proc.returncode}: "
                                   f"{self.log_tail()}", hint=f"look at {self.log_path}")  # fmt: skip
            return client.ready()

        wait_until(ready, timeout=timeout, expected=f"toxiproxy answering at {self.url}",
                   seen=self.log_tail, hint=f"look at {self.log_path}")  # fmt: skip
        self.client = client
        return client

    def stop(self, timeout: float = 5) -> None:
        """Terminate (then kill) the process; safe to call twice."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def log_tail(self) -> str:
        lines = self.log_path.read_text(errors="replace").splitlines()[-3:] if self.log_path.exists() else []
        return " | ".join(lines) or "no toxiproxy output"

    def __enter__(self) -> Toxiproxy:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()
