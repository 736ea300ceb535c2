"""What is specific to one Resonate generation (server flags, promise tags, value encoding).

Everything outside the agent goes through a Stack, so a second generation (the Rust server with the
async SDK) can plug in by adding a class here. Only the legacy stack exists today. Promise ids are
the app's business: the harness learns them from the run (harness.agent.hooks).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from harness import paths
from harness.errors import HarnessError

# the directory holding the harness package: a source checkout, or site-packages when installed
SERVER_BIN_ENV = "RESONATE_SERVER_BIN"
SETUP_HINT = "run `harness setup`"


def default_server_bin() -> Path:
    """The server `harness setup` installs (the per-user cache; a checkout's old .tools/bin build)."""
    return paths.tool_path("resonate")


@dataclass(frozen=True)
class Ports:
    api: int
    poll: int
    metrics: int


class LegacyStack:
    """resonate-sdk 0.6.x (generator API) with the Go server (REST API + SSE poll port)."""

    name = "legacy"
    sdk_package = "resonate-sdk"
    sdk_series = "0.6."
    # resonate-sdk 0.6.5+ subscribes with POST /promises/subscribe/{id}; servers that predate it
    # (v0.7.0, whose poll flag is --aio-sender-plugin-poll-addr) answer 404 and the SDK shuts down.
    required_serve_flags = ("--aio-poll-addr", "--api-http-addr", "--aio-store-sqlite-path")

    def __init__(self, server_bin: Path | str | None = None) -> None:
        self.server_bin = Path(server_bin or os.environ.get(SERVER_BIN_ENV) or default_server_bin())

    # --- versions and compatibility -------------------------------------------------------
    def sdk_version(self) -> str:
        try:
            return metadata.version(self.sdk_package)
        except metadata.PackageNotFoundError as e:
            raise HarnessError(
                f"{self.sdk_package} {self.sdk_series}x is not installed", hint="make setup"
            ) from e

    def server_version(self) -> str:
        if not self.server_bin.is_file() or not os.access(self.server_bin, os.X_OK):
            raise HarnessError(
                f"no Resonate server binary at {self.server_bin}",
                hint=f"{SETUP_HINT}, or pass --server-bin / set {SERVER_BIN_ENV}",
            )
        out = self._run("--version")
        m = re.search(r"(\d+\.\d+\.\d+)", out)
        if not m:
            raise HarnessError(
                "a Resonate server binary", seen=f"{self.server_bin} --version printed {out!r}"
            )
        return m.group(1)

    def check_compatible(self) -> dict[str, str]:
        """Versions of server and SDK; HarnessError if their protocols do not match."""
        sdk, server = self.sdk_version(), self.server_version()
        if not sdk.startswith(self.sdk_series):
            raise HarnessError(f"{self.sdk_package} {self.sdk_series}x for the legacy stack", seen=sdk)
        help_text = self._run("serve", "--help")
        missing = [f for f in self.required_serve_flags if f not in help_text]
        if missing:
            raise HarnessError(
                f"a legacy server speaking the protocol of {self.sdk_package} {sdk} (subscriptions, poll plugin)",
                seen=f"server {server} at {self.server_bin} lacks {', '.join(missing)}",
                hint=f"use server v0.8.2 ({SETUP_HINT}, and unset {SERVER_BIN_ENV})",
            )
        return {"server": server, "sdk": sdk}

    def _run(self, *args: str) -> str:
        try:
            res = subprocess.run([str(self.server_bin), *args], capture_output=True, text=True, timeout=20)
        except OSError as e:
            raise HarnessError(f"a runnable server binary at {self.server_bin}", seen=str(e)) from e
        return res.stdout + res.stderr

    # --- running the server -----------------------------------------------------------------
    def serve_args(self, ports: Ports, store: str, host: str = "127.0.0.1") -> list[str]:
        return [
            "serve",
            f"--api-http-addr={host}:{ports.api}",
            f"--aio-poll-addr={host}:{ports.poll}",
            f"--metrics-addr={host}:{ports.metrics}",
            "--api-grpc-enable=false",
            f"--aio-store-sqlite-path={store}",
            "--log-level=info",
        ]

    # --- reading promises -------------------------------------------------------------------
    @staticmethod
    def is_root(promise: dict[str, Any]) -> bool:
        return promise.get("tags", {}).get("resonate:scope") == "global"

    @staticmethod
    def root_of(promise: dict[str, Any]) -> str | None:
        return promise.get("tags", {}).get("resonate:root")

    @staticmethod
    def decode(value: dict[str, Any] | None) -> Any:
        """The JSON value a promise's param or value carries (base64 data)."""
        data = (value or {}).get("data")
        if not data:
            return None
        return json.loads(base64.b64decode(data))

    @classmethod
    def digest(cls, value: dict[str, Any] | None) -> str:
        """The digest of a stored value, comparable with the ledger's `vd` (harness.agent.hooks.encoded)."""
        canon = json.dumps(cls.decode(value), sort_keys=True, separators=(",", ":"))
        return hashlib.sha1(canon.encode()).hexdigest()[:16]


def position_key(pos: str) -> tuple[int | str, ...]:
    """Sort key of a step position: "2" < "4" < "4.1" < "10"."""
    return tuple(int(p) if p.isdigit() else p for p in pos.split(".")) if pos else ()


def is_under(pos: str, ancestor: str) -> bool:
    """Whether `pos` is `ancestor` or one of its sub-steps ("4.1" is under "4")."""
    return pos == ancestor or pos.startswith(ancestor + ".")


def get_stack(name: str = "legacy", server_bin: Path | str | None = None) -> LegacyStack:
    if name != "legacy":
        raise HarnessError("stack 'legacy' (the only one implemented)", seen=name)
    return LegacyStack(server_bin)
