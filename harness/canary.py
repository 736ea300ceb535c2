"""The start-up canary: one job through the whole app before the scenario starts.

It proves the instrumentation fires in every kind of app process (an unsupported SDK, or hooks that
see nothing, stop the run with exit 2 instead of an empty ledger and a green run), and it teaches
the harness what it must not assume: the app's promise-id scheme (the Lambda's dispatch of the
canary's job id), the workflow it dispatches, and the steps it runs (positions, functions, which
of them make effects). Its events carry ``canary: true`` and are left out of the verdicts.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import quote

import requests

from harness.cluster.base import Cluster
from harness.errors import HarnessError, WaitTimeout
from harness.history import EventLog, LedgerTail
from harness.load import Client
from harness.stack import position_key
from harness.waiting import wait_until

HINT = "look at logs/ in the run directory; the ledger/ files show what the instrumentation saw"


@dataclass
class Learned:
    """What the run learned of the app from its canary job (run.json and results.json "app")."""

    job: str
    root: str
    scheme: str | None  # "doc/{job}", or None when the promise id does not contain the job id
    workflow: str | None
    target: str | None
    steps: list[dict[str, Any]] = field(default_factory=list)  # [{"pos", "fn", "kind", "effect"}]
    sdk: dict[str, str] = field(default_factory=dict)  # role -> resonate-sdk version
    ttl: int | None = None  # the lease ttl the workers' clients run with

    def leaf_steps(self) -> list[str]:
        """Positions of the functions run through ctx.run (not generator sub-steps)."""
        return [s["pos"] for s in self.steps if s["kind"] == "fn"]

    def effect_steps(self) -> list[str]:
        return [s["pos"] for s in self.steps if s["effect"]]

    def fn(self, pos: str) -> str:
        return next((s["fn"] for s in self.steps if s["pos"] == pos), "?")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def scheme_of(promise_id: str, job: str) -> str | None:
    return promise_id.replace(job, "{job}") if promise_id.count(job) == 1 else None


def _hellos(records: list[dict[str, Any]], role: str) -> list[dict[str, Any]]:
    return [r for r in records if r["ev"] == "hello" and r.get("role") == role]


def check_hooks(records: list[dict[str, Any]], role: str) -> dict[str, Any]:
    """The instrumentation is in: a `hello` from that kind of process, and no refusal."""
    hellos = _hellos(records, role)
    refused = [r for r in hellos if not r.get("ok")]
    if refused:
        r = refused[0]
        raise HarnessError(f"the harness's instrumentation in the app's {role} processes ({r.get('supported')})",
                           seen="; ".join(r.get("problems") or ["refused"]),
                           hint="install a supported resonate-sdk in the app's environment")  # fmt: skip
    if not hellos:
        raise HarnessError(f"the instrumentation to start in the app's {role} processes",
                           seen="no hello record in the ledger", hint=HINT)  # fmt: skip
    return hellos[0]


def run_canary(cluster: Cluster, events: EventLog, timeout: float) -> Learned:
    app = cluster.config.app
    client = Client(cluster.gateway_url, events, app, mark={"canary": True})
    job = {"jobId": f"canary-{uuid.uuid4().hex[:8]}"}
    events.append("phase", name="canary", job=job["jobId"], canary=True)
    answer = client.submit(job)
    tail = LedgerTail(cluster.config.ledger_dir)
    check_hooks(tail.read(), "lambda")
    if not 200 <= answer["status"] < 300:
        raise HarnessError(f"the app to accept the canary job ({app.submit_method} {job['path']})",
                           seen=f"{answer['status']} {str(answer['body'])[:160]}",
                           hint=f"check [submit] in {app.config}, and logs/gateway.log")  # fmt: skip

    def dispatched() -> dict[str, Any] | None:
        return next((r for r in tail.read() if r["ev"] == "dispatch" and r.get("job") == job["jobId"]), None)

    try:
        dispatch = wait_until(dispatched, timeout=5, expected="a dispatch of the canary job")
    except WaitTimeout:
        raise HarnessError("the Lambda handler to dispatch a workflow (begin_rpc, rpc or run) for the canary job",
                           seen=f"it answered {answer['status']}, but the instrumentation saw no dispatch",
                           hint=HINT) from None  # fmt: skip
    if dispatch.get("error"):
        raise HarnessError("the canary's dispatch to reach the server", seen=dispatch["error"], hint=HINT)
    state: dict[str, str] = {}

    def completed() -> bool:
        """The root promise is completed on the server (the app's status route is not needed here)."""
        try:
            res = requests.get(f"{cluster.server_api}/promises/{quote(dispatch['id'], safe='/')}", timeout=5)
            state["now"] = (
                res.json().get("state", f"HTTP {res.status_code}") if res.ok else f"HTTP {res.status_code}"
            )
        except (requests.RequestException, ValueError) as e:
            state["now"] = str(e)
        return state["now"] not in ("PENDING", "") and not state["now"].startswith("HTTP")

    try:
        wait_until(
            completed,
            timeout=timeout,
            interval=0.1,
            expected=f"the canary's root promise {dispatch['id']} done",
        )
    except WaitTimeout:
        seen = [r for r in tail.read() if r.get("root") == dispatch["id"] and r["ev"] in ("start", "body")]
        raise HarnessError(f"the canary job done within {timeout:g}s",
                           seen=f"its root promise is {state.get('now')}; the instrumentation saw {len(seen)} "
                                f"step/body records of {dispatch['id']}", hint=HINT) from None  # fmt: skip
    records = tail.read()
    check_hooks(records, "worker")
    mine = [r for r in records if r.get("root") == dispatch["id"]]
    if not any(r["ev"] == "body" for r in mine):
        raise HarnessError("the instrumentation to see the canary's workflow run on a worker",
                           seen=f"{dispatch['id']} completed, but no worker recorded its body", hint=HINT)  # fmt: skip
    effects = {r["pos"] for r in mine if r["ev"] == "effect"}
    declared = app.effects.function if app.effects else None
    if declared and not any(r["ev"] == "effect-hooked" for r in records):
        raise HarnessError(f"[effects] function = {declared!r} to be imported by the app's workers",
                           seen="the canary job completed, but no worker process imported that module",
                           hint="name a function of a module the workers import (not the worker script itself, "
                                "which runs as __main__), or remove `function`")  # fmt: skip
    steps: dict[str, dict[str, Any]] = {}
    for r in mine:
        if r["ev"] == "start" or (r["ev"] == "body" and r["id"] != r["root"]):
            kind = "fn" if r["ev"] == "start" else "gen"
            steps.setdefault(
                r["pos"], {"pos": r["pos"], "fn": r["fn"], "kind": kind, "effect": r["pos"] in effects}
            )
    clients = [r for r in records if r["ev"] == "client" and r["worker"].startswith("worker")]
    learned = Learned(
        job=job["jobId"], root=dispatch["id"], scheme=scheme_of(dispatch["id"], job["jobId"]),
        workflow=dispatch.get("fn"), target=dispatch.get("target"),
        steps=sorted(steps.values(), key=lambda s: position_key(s["pos"])),
        sdk={role: _hellos(records, role)[0]["sdk"] for role in ("lambda", "worker")},
        ttl=clients[0]["ttl"] if clients else None,
    )  # fmt: skip
    events.append("canary", canary=True, **learned.as_dict())
    return learned
