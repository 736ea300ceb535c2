"""Faults (the nemesis): what can go wrong, aimed at "the worker running step k of job j".

Every fault is one function in FAULTS; each logs a `fault` event (and a `heal` event when it is
undone), so the checks and reports see exactly what was done, to whom and when. To add a fault
kind, add one function here and register it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

from harness.cluster.base import Cluster
from harness.errors import HarnessError
from harness.history import EventLog, LedgerTail
from harness.probe import FAILPOINT_SITES
from harness.waiting import wait_until


class Nemesis:
    def __init__(self, cluster: Cluster, events: EventLog) -> None:
        self.cluster = cluster
        self.events = events
        self._fp_seq = 0
        self.ledger = LedgerTail(cluster.config.ledger_dir)  # polled often: read incrementally
        self._pending: list[threading.Thread] = []

    # --- targeting through the ledger -------------------------------------------------------
    def in_flight(self, job_id: str, step: int) -> dict[str, Any] | None:
        """The newest execution of step `step` of job `job_id` that has started and not ended."""
        ledger = self.ledger.read()
        ended = {r["attempt"] for r in ledger if r["ev"] == "end"}
        starts = [
            r for r in ledger
            if r["ev"] == "start" and r["job"] == job_id and r["step"] == step and r["attempt"] not in ended
        ]  # fmt: skip
        live = set(self.cluster.live_workers())
        starts = [r for r in starts if r["worker"] in live]
        return starts[-1] if starts else None

    def wait_in_flight(self, job_id: str, step: int, timeout: float = 60) -> dict[str, Any]:
        return wait_until(
            lambda: self.in_flight(job_id, step),
            timeout=timeout,
            interval=0.02,
            expected=f"a worker running step {step} of job {job_id}",
            seen=lambda: f"{len(self.ledger.read())} ledger records, none in flight",
            hint="make steps longer (--step-seconds) so the harness can catch one",
        )

    def _log(self, fault: str, target: str, **fields: Any) -> dict[str, Any]:
        return self.events.append("fault", fault=fault, target=target, **fields)

    # --- fault kinds ------------------------------------------------------------------------
    def kill(self, job_id: str, step: int, timeout: float = 60) -> dict[str, Any]:
        """SIGKILL the worker running step `step` of job `job_id`, from outside."""
        rec = self.wait_in_flight(job_id, step, timeout)
        self.cluster.kill_worker(rec["worker"])
        return self._log("kill", rec["worker"], job=job_id, step=step, pid=rec["pid"], attempt=rec["attempt"])

    def pause(self, job_id: str, step: int, hold: float | None = None, timeout: float = 60) -> dict[str, Any]:
        """SIGSTOP the worker running the step; with `hold`, SIGCONT it that many seconds later."""
        rec = self.wait_in_flight(job_id, step, timeout)
        worker = rec["worker"]
        self.cluster.pause_worker(worker)
        ev = self._log(
            "pause", worker, job=job_id, step=step, pid=rec["pid"], attempt=rec["attempt"], hold=hold
        )
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

        def rerun() -> dict[str, Any] | None:
            for r in self.ledger.read():
                if (r["ev"] == "start" and r["job"] == fault["job"] and r["step"] == fault["step"]
                        and r["t"] > fault["t"] and r["attempt"] != fault.get("attempt")):  # fmt: skip
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

    def restart_worker(self, worker: str) -> dict[str, Any]:
        self.cluster.restart_worker(worker)
        return self.events.append("heal", fault="kill", target=worker)

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

    def _target(self, job_id: str | None, step: int | None, worker: str | None,
                timeout: float) -> tuple[str, dict[str, Any]]:  # fmt: skip
        """The worker to hit: a named one, or the one running step `step` of `job_id` (+ what it runs)."""
        if worker is not None:
            return worker, {}
        if job_id is None or step is None:
            raise HarnessError("a target: worker=NAME, or job_id and step", seen=f"job {job_id} step {step}")
        rec = self.wait_in_flight(job_id, step, timeout)
        return rec["worker"], {"job": job_id, "step": step, "pid": rec["pid"], "attempt": rec["attempt"]}

    def partition(self, job_id: str | None = None, step: int | None = None, hold: float | None = None, *,
                  worker: str | None = None, timeout: float = 60) -> dict[str, Any]:  # fmt: skip
        """Cut the worker running step `step` of `job_id` (or `worker`) off from the server: its
        connections are closed and new ones refused while the process runs on. With `hold`, heal
        the link that many seconds later."""
        target, hit = self._target(job_id, step, worker, timeout)
        self.cluster.partition_worker(target)
        ev = self._log("partition", target, hold=hold, **hit)
        if hold is not None:
            self._later(hold, lambda: self.heal(target), f"heal-{target}")
        return ev

    def heal(self, worker: str) -> dict[str, Any]:
        """Reconnect a partitioned worker's link."""
        self.cluster.heal_worker(worker)
        return self.events.append("heal", fault="partition", target=worker)

    def _toxic(self, kind: str, toxic: str, attributes: dict[str, int], job_id: str | None, step: int | None,
               worker: str | None, stream: str, toxicity: float, hold: float | None,
               timeout: float) -> dict[str, Any]:  # fmt: skip
        add = getattr(self.cluster, "add_link_toxic", None)
        if add is None:
            raise HarnessError(f"link faults ({kind})", seen=f"not supported by the {self.cluster.backend} backend",
                               hint="--backend process")  # fmt: skip
        target, hit = self._target(job_id, step, worker, timeout)
        name = add(target, toxic, attributes, stream=stream, toxicity=toxicity)
        ev = self._log(kind, target, toxic=name, attributes=attributes, stream=stream, toxicity=toxicity,
                       hold=hold, **hit)  # fmt: skip
        if hold is not None:
            self._later(hold, lambda: self.clear_link(target, name, kind), f"clear-{kind}-{target}")
        return ev

    def clear_link(self, worker: str, toxic: str | None = None, fault: str = "link") -> dict[str, Any]:
        """Remove one toxic (by the name its fault event carries) or all toxics from a worker's link."""
        self.cluster.remove_link_toxic(worker, toxic)  # type: ignore[attr-defined]
        return self.events.append("heal", fault=fault, target=worker, toxic=toxic)

    def latency(self, job_id: str | None = None, step: int | None = None, *, worker: str | None = None,
                ms: int = 1000, jitter_ms: int = 0, stream: str = "downstream", hold: float | None = None,
                timeout: float = 60) -> dict[str, Any]:  # fmt: skip
        """Delay the worker's traffic with the server by `ms` (+- `jitter_ms`) per direction in `stream`
        (downstream: server -> worker, upstream, or both)."""
        return self._toxic("latency", "latency", {"latency": ms, "jitter": jitter_ms}, job_id, step, worker,
                           stream, 1.0, hold, timeout)  # fmt: skip

    def bandwidth(self, job_id: str | None = None, step: int | None = None, *, worker: str | None = None,
                  rate_kb_s: int = 1, stream: str = "both", hold: float | None = None,
                  timeout: float = 60) -> dict[str, Any]:  # fmt: skip
        """Throttle the worker's link to `rate_kb_s` KB/s."""
        return self._toxic("bandwidth", "bandwidth", {"rate": rate_kb_s}, job_id, step, worker, stream, 1.0,
                           hold, timeout)  # fmt: skip

    def reset(self, job_id: str | None = None, step: int | None = None, *, worker: str | None = None,
              after_ms: int = 0, toxicity: float = 1.0, stream: str = "both", hold: float | None = None,
              timeout: float = 60) -> dict[str, Any]:  # fmt: skip
        """TCP-reset the worker's connections `after_ms` after data flows (existing ones included);
        `toxicity` < 1 resets only that share of the connections (a flaky link)."""
        return self._toxic("reset", "reset_peer", {"timeout": after_ms}, job_id, step, worker, stream, toxicity,
                           hold, timeout)  # fmt: skip

    def failpoint(self, job_id: str, step: int, at: str = "during", action: str = "crash") -> dict[str, Any]:
        """Arm an in-worker failpoint: exact placement inside step `step` of `job_id`."""
        if at not in FAILPOINT_SITES:
            raise ValueError(f"failpoint site {at!r} is not one of {FAILPOINT_SITES}")
        self._fp_seq += 1
        fp = {"id": f"fp{self._fp_seq}", "job": job_id, "step": step, "at": at, "action": action}
        path = self.cluster.config.run_dir / "failpoints" / "armed.json"
        armed = json.loads(path.read_text()) if path.exists() else []
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps([*armed, fp]))
        tmp.replace(path)  # workers never see a half-written file
        return self.events.append("armed", **fp)


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
