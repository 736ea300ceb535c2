"""Faults (the nemesis): what can go wrong, aimed at "the worker running step k of job j".

Every fault is one function in FAULTS; each logs a `fault` event (and a `heal` event when it is
undone), so the checks and reports see exactly what was done, to whom and when. To add a fault
kind, add one function here and register it.

Targeting works on any app, whatever its step durations: `strike(job, k)` arms a `hold` failpoint
at the start of step k of the job (harness.agent.failpoints; the job's root promise id comes from
the Lambda's dispatch records or the id scheme learned from the canary), and the fault waits until
a worker holds there, then strikes that worker; a hold is released after a pause or a partition
so the struck execution goes on when the worker does. Step k is the step's position under the
root ("3", or "4.1" for a generator's sub-step).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

from harness.agent.failpoints import ACTIONS, SITES
from harness.cluster.base import Cluster
from harness.errors import HarnessError
from harness.history import EventLog, LedgerTail
from harness.waiting import wait_until

HOLD_S = 60.0  # a hold waits at most this long for its strike


class Nemesis:
    def __init__(self, cluster: Cluster, events: EventLog, scheme: str | None = None) -> None:
        self.cluster = cluster
        self.events = events
        self.scheme = scheme  # the app's promise-id scheme learned from the canary, e.g. "doc/{job}"
        self._fp_seq = 0
        self._holds: dict[tuple[str, str], dict[str, Any]] = {}
        self.ledger = LedgerTail(cluster.config.ledger_dir)  # polled often: read incrementally
        self._pending: list[threading.Thread] = []

    # --- targeting through the ledger -------------------------------------------------------
    def root_of(self, job_id: str, timeout: float = 30) -> str:
        """The job's root promise id: predicted from the learned scheme, else from its dispatch."""
        if self.scheme is not None:
            return self.scheme.replace("{job}", job_id)

        def dispatched() -> str | None:
            return next((r["id"] for r in self.ledger.read() if r["ev"] == "dispatch" and r.get("job") == job_id
                         and r.get("error") is None), None)  # fmt: skip

        return wait_until(dispatched, timeout=timeout, expected=f"a dispatch of job {job_id} in the ledger",
                          hint="the app's promise ids do not contain the job id, so a strike can be armed "
                               "only after the job was submitted")  # fmt: skip

    def in_flight(self, job_id: str, step: str) -> dict[str, Any] | None:
        """The newest execution of step `step` of job `job_id` that has started and not ended."""
        ledger = self.ledger.read()
        root = self.root_of(job_id)
        ended = {r["exec"] for r in ledger if r["ev"] == "end"}
        live = set(self.cluster.live_workers())
        starts = [r for r in ledger if r["ev"] == "start" and r["root"] == root and r["pos"] == str(step)
                  and r["exec"] not in ended and r["worker"] in live]  # fmt: skip
        return starts[-1] if starts else None

    def busy_workers(self) -> list[str]:
        """Live workers with a step execution started and not ended, in name order."""
        ledger = self.ledger.read()
        ended = {r["exec"] for r in ledger if r["ev"] == "end"}
        live = set(self.cluster.live_workers())
        return sorted({r["worker"] for r in ledger if r["ev"] == "start" and r["exec"] not in ended
                       and r["worker"] in live})  # fmt: skip

    def wait_in_flight(self, job_id: str, step: str, timeout: float = 60) -> dict[str, Any]:
        return wait_until(
            lambda: self.in_flight(job_id, step),
            timeout=timeout,
            interval=0.02,
            expected=f"a worker running step {step} of job {job_id}",
            seen=lambda: f"{len(self.ledger.read())} ledger records, none in flight",
            hint="use strike() before submitting the job: a hold failpoint keeps the step in flight",
        )

    def strike(
        self, job_id: str, step: str | int, at: str = "during", seconds: float = HOLD_S
    ) -> dict[str, Any]:
        """Arm a hold at step `step` of the job (idempotent until it fires): the next fault aimed at
        that step waits for a worker held there. Arm it before the job is submitted."""
        key = (job_id, str(step))
        if key not in self._holds or self._fired(self._holds[key]) is not None:
            self._holds[key] = self.arm(job_id, str(step), at=at, action="hold", seconds=seconds)
        return self._holds[key]

    def _fired(self, fp: dict[str, Any]) -> dict[str, Any] | None:
        return next(
            (r for r in self.ledger.read() if r["ev"] == "failpoint" and r.get("fp") == fp["id"]), None
        )

    def held(self, job_id: str, step: str | int, timeout: float = 60) -> dict[str, Any]:
        """Wait until a worker holds at the struck step; the ledger's failpoint record (worker, pid, exec)."""
        fp = self._holds.get((job_id, str(step))) or self.strike(job_id, step)
        rec = wait_until(lambda: self._fired(fp), timeout=timeout, interval=0.01, expected=f"a worker held at step {step} of job {job_id}",
                         seen=lambda: f"{len(self.ledger.read())} ledger records, the hold {fp['id']} not reached",
                         hint="is the job submitted, and does its workflow reach that step? (see the canary's steps "
                              "in run.json)")  # fmt: skip
        return {**rec, "fp_spec": fp}

    def release(self, fp: dict[str, Any]) -> None:
        """Let a held execution go on (idempotent)."""
        (self.cluster.config.failpoints_file.parent / f"{fp['id']}.release").touch()

    def _log(self, fault: str, target: str, **fields: Any) -> dict[str, Any]:
        return self.events.append("fault", fault=fault, target=target, **fields)

    # --- fault kinds ------------------------------------------------------------------------
    def _hit(self, rec: dict[str, Any], job_id: str) -> dict[str, Any]:
        return {
            "job": job_id,
            "step": rec["pos"],
            "pid": rec["pid"],
            "attempt": rec.get("exec"),
            "site": rec["at"],
        }

    def kill(self, job_id: str, step: str | int, timeout: float = 60) -> dict[str, Any]:
        """SIGKILL the worker running step `step` of job `job_id`, from outside."""
        rec = self.held(job_id, step, timeout)
        self.cluster.kill_worker(rec["worker"])
        return self._log("kill", rec["worker"], **self._hit(rec, job_id))

    def pause(
        self, job_id: str, step: str | int, hold: float | None = None, timeout: float = 60
    ) -> dict[str, Any]:
        """SIGSTOP the worker running the step; with `hold`, SIGCONT it that many seconds later. The
        step goes on from where it was held when the worker resumes."""
        rec = self.held(job_id, step, timeout)
        worker = rec["worker"]
        self.cluster.pause_worker(worker)
        self.release(rec["fp_spec"])
        ev = self._log("pause", worker, hold=hold, **self._hit(rec, job_id))
        if hold is not None:
            thread = threading.Thread(target=lambda: (time.sleep(hold), self.resume(worker)), daemon=True,
                                      name=f"resume-{worker}")  # fmt: skip
            thread.start()
            self._pending.append(thread)
        return ev

    def resume(self, worker: str) -> dict[str, Any]:
        self.cluster.resume_worker(worker)
        return self.events.append("heal", fault="pause", target=worker)

    def wait_rerun(self, fault: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Wait until another execution of the faulted step has started (a takeover)."""

        root = self.root_of(fault["job"])

        def rerun() -> dict[str, Any] | None:
            for r in self.ledger.read():
                if (r["ev"] == "start" and r["root"] == root and r["pos"] == str(fault["step"])
                        and r["t"] > fault["t"] and r["exec"] != fault.get("attempt")):  # fmt: skip
                    return r
            return None

        return wait_until(rerun, timeout=timeout, expected=f"step {fault['step']} of {fault['job']} taken over",
                          hint="the lease (ttl) must expire and the server re-dispatch the task")  # fmt: skip

    def wait_healed(self, timeout: float) -> None:
        """Wait until every fault scheduled to heal in the background (pauses, links) has healed."""
        for thread in self._pending:
            wait_until(lambda t=thread: not t.is_alive(), timeout=timeout, expected=f"{thread.name} to run",
                       hint="a paused worker is resumed after its hold time")  # fmt: skip

    def kill_worker(self, worker: str) -> dict[str, Any]:
        """SIGKILL a named worker, whatever it is doing."""
        self.cluster.kill_worker(worker)
        return self._log("kill", worker)

    def restart_worker(self, worker: str, after: str = "kill") -> dict[str, Any]:
        """Start a dead worker again; `after` names what killed it (a kill, a failpoint's crash)."""
        self.cluster.restart_worker(worker)
        return self.events.append("heal", fault=after, target=worker)

    def crash_server(self, down: float = 1.0) -> dict[str, Any]:
        """kill -9 the server, keep it down `down` seconds, restart it on the same store and ports."""
        self.cluster.kill_server()
        ev = self._log("server-crash", "server", down=down)
        time.sleep(down)
        self.cluster.start_server()
        self.events.append("heal", fault="server-crash", target="server")
        return ev

    # --- link faults: a worker's connections to the server (proxied process cluster) -----------
    def _later(self, hold: float, heal: Callable[[], Any], name: str) -> None:
        thread = threading.Thread(target=lambda: (time.sleep(hold), heal()), daemon=True, name=name)
        thread.start()
        self._pending.append(thread)

    def _target(self, job_id: str | None, step: str | int | None, worker: str | None,
                timeout: float) -> tuple[str, dict[str, Any], dict[str, Any] | None]:  # fmt: skip
        """The worker to hit: a named one, or the one held at step `step` of `job_id` (+ what it runs,
        and the hold to release once the fault is in place)."""
        if worker is not None:
            return worker, {}, None
        if job_id is None or step is None:
            raise HarnessError("a target: worker=NAME, or job_id and step", seen=f"job {job_id} step {step}")
        rec = self.held(job_id, step, timeout)
        return rec["worker"], self._hit(rec, job_id), rec["fp_spec"]

    def partition(self, job_id: str | None = None, step: str | int | None = None, hold: float | None = None, *,
                  worker: str | None = None, timeout: float = 60, release: bool = True) -> dict[str, Any]:  # fmt: skip
        """Cut the worker running step `step` of `job_id` (or `worker`) off from the server: its
        connections are closed and new ones refused while the process runs on. With `hold`, heal
        the link that many seconds later."""
        target, hit, fp = self._target(job_id, step, worker, timeout)
        self.cluster.partition_worker(target)
        if fp is not None and release:
            self.release(fp)
        ev = self._log("partition", target, hold=hold, **hit, **({"fp": fp["id"]} if fp else {}))
        if hold is not None:
            self._later(hold, lambda: self.heal(target), f"heal-{target}")
        return ev

    def heal(self, worker: str) -> dict[str, Any]:
        """Reconnect a partitioned worker's link."""
        self.cluster.heal_worker(worker)
        return self.events.append("heal", fault="partition", target=worker)

    def _toxic(self, kind: str, toxic: str, attributes: dict[str, int], job_id: str | None, step: str | int | None,
               worker: str | None, stream: str, toxicity: float, hold: float | None,
               timeout: float) -> dict[str, Any]:  # fmt: skip
        add = getattr(self.cluster, "add_link_toxic", None)
        if add is None:
            raise HarnessError(f"link faults ({kind})", seen=f"not supported by the {self.cluster.backend} backend",
                               hint="--backend process")  # fmt: skip
        target, hit, fp = self._target(job_id, step, worker, timeout)
        name = add(target, toxic, attributes, stream=stream, toxicity=toxicity)
        if fp is not None:
            self.release(fp)
        ev = self._log(kind, target, toxic=name, attributes=attributes, stream=stream, toxicity=toxicity,
                       hold=hold, **hit)  # fmt: skip
        if hold is not None:
            self._later(hold, lambda: self.clear_link(target, name, kind), f"clear-{kind}-{target}")
        return ev

    def clear_link(self, worker: str, toxic: str | None = None, fault: str = "link") -> dict[str, Any]:
        """Remove one toxic (by the name its fault event carries) or all toxics from a worker's link."""
        self.cluster.remove_link_toxic(worker, toxic)  # type: ignore[attr-defined]
        return self.events.append("heal", fault=fault, target=worker, toxic=toxic)

    def latency(self, job_id: str | None = None, step: str | int | None = None, *, worker: str | None = None,
                ms: int = 1000, jitter_ms: int = 0, stream: str = "downstream", hold: float | None = None,
                timeout: float = 60) -> dict[str, Any]:  # fmt: skip
        """Delay the worker's traffic with the server by `ms` (+- `jitter_ms`) per direction in `stream`
        (downstream: server -> worker, upstream, or both)."""
        return self._toxic("latency", "latency", {"latency": ms, "jitter": jitter_ms}, job_id, step, worker,
                           stream, 1.0, hold, timeout)  # fmt: skip

    def bandwidth(self, job_id: str | None = None, step: str | int | None = None, *, worker: str | None = None,
                  rate_kb_s: int = 1, stream: str = "both", hold: float | None = None,
                  timeout: float = 60) -> dict[str, Any]:  # fmt: skip
        """Throttle the worker's link to `rate_kb_s` KB/s."""
        return self._toxic("bandwidth", "bandwidth", {"rate": rate_kb_s}, job_id, step, worker, stream, 1.0,
                           hold, timeout)  # fmt: skip

    def reset(self, job_id: str | None = None, step: str | int | None = None, *, worker: str | None = None,
              after_ms: int = 0, toxicity: float = 1.0, stream: str = "both", hold: float | None = None,
              timeout: float = 60) -> dict[str, Any]:  # fmt: skip
        """TCP-reset the worker's connections `after_ms` after data flows (existing ones included);
        `toxicity` < 1 resets only that share of the connections (a flaky link)."""
        return self._toxic("reset", "reset_peer", {"timeout": after_ms}, job_id, step, worker, stream, toxicity,
                           hold, timeout)  # fmt: skip

    def arm(self, job_id: str, step: str | int, at: str = "during", action: str = "crash",
            seconds: float | None = None) -> dict[str, Any]:  # fmt: skip
        """Arm an in-worker failpoint at an exact site of step `step` of `job_id` (see
        harness.agent.failpoints); `after_effect` needs an app that declares its effect function."""
        if at not in SITES:
            raise HarnessError(f"a failpoint site, one of {', '.join(SITES)}", seen=at)
        if action not in ACTIONS:
            raise HarnessError(f"a failpoint action, one of {', '.join(ACTIONS)}", seen=action)
        if at == "after_effect" and not (
            self.cluster.config.app.effects and self.cluster.config.app.effects.function
        ):
            raise HarnessError("an app that declares its effect function ([effects] function) for after_effect",
                               seen=str(self.cluster.config.app.config))  # fmt: skip
        self._fp_seq += 1
        fp = {"id": f"fp{self._fp_seq}", "job": job_id, "root": self.root_of(job_id), "pos": str(step), "at": at,
              "action": action, **({"seconds": seconds} if seconds is not None else {})}  # fmt: skip
        path = self.cluster.config.failpoints_file
        path.parent.mkdir(parents=True, exist_ok=True)
        armed = json.loads(path.read_text()) if path.exists() else []
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps([*armed, fp]))
        tmp.replace(path)  # workers never see a half-written file
        return self.events.append("armed", **fp)

    def failpoint(
        self, job_id: str, step: str | int, at: str = "during", action: str = "crash"
    ) -> dict[str, Any]:
        """An in-worker crash (or hang) at an exact site of a step: the process does it to itself."""
        return self.arm(job_id, step, at=at, action=action)


FAULTS: dict[str, Callable[..., dict[str, Any]]] = {
    "kill": Nemesis.kill,
    "pause": Nemesis.pause,
    "kill-worker": Nemesis.kill_worker,
    "server-crash": Nemesis.crash_server,
    "failpoint": Nemesis.failpoint,
    "partition": Nemesis.partition,
    "latency": Nemesis.latency,
    "bandwidth": Nemesis.bandwidth,
    "reset": Nemesis.reset,
}
