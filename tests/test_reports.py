"""Reports render a saved run directory (and only that) into report.html and report.md."""

from __future__ import annotations

import base64
import json
import re
import struct
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.runner import check_run
from reports import render
from reports.model import load
from reports.timeline import DPI, MAX_HEIGHT_IN
from tests.histories import EFFECT_STEP, STEPS, FakeRun, digest, encode, step_value

VERDICTS = ["exactly_once", "dedup", "replay", "liveness", "no_loss"]
EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.IGNORECASE)
IMAGE = re.compile(r"""<img[^>]+src="data:image/png;base64,([A-Za-z0-9+/=]+)\"""")


def late_end(run: FakeRun, job: dict, pos: str, worker: str, pid: int, ex: str) -> None:
    """The end record of an execution a fault struck, written later (a zombie, a step across a crash)."""
    root, value = run.root(job), step_value(job["jobId"], pos)
    run.record("end", worker, pid, root=root, id=f"{root}.{pos}", pos=pos, fn=STEPS[pos], exec=ex, value=value,
               vd=digest(value))  # fmt: skip


def faulted_run() -> tuple[FakeRun, dict[str, str]]:
    """Four jobs: a clean one, one killed during step 3, one paused during step 4 (a zombie), one that
    lives through a server crash; each fault's job by kind."""
    run = FakeRun(verdicts=VERDICTS)
    jobs = [run.new_job() for _ in range(4)]
    for job in jobs:
        run.submit(job)
    run.submit(jobs[0], mode="dup")
    run.run_job(jobs[0])

    killed = jobs[1]
    for step in (1, 2):
        run.execute(killed, step, "worker-2", 22)
    ex = run.execute(killed, 3, "worker-2", 22, end=False)
    run.fault("kill", "worker-2", job=killed["jobId"], step="3", pid=22, attempt=ex)
    run.event("heal", fault="kill", target="worker-2")
    run.enter(killed, "worker-1", 11)
    for step in (3, 4, 5):
        run.execute(killed, step, "worker-1", 11)
    run.finish(killed)

    paused = jobs[2]
    for step in (1, 2, 3):
        run.execute(paused, step, "worker-3", 33)
    ex = run.execute(paused, 4, "worker-3", 33, end=False)
    run.fault("pause", "worker-3", job=paused["jobId"], step="4", pid=33, attempt=ex, hold=1.0)
    run.enter(paused, "worker-1", 11)
    run.execute(paused, 4, "worker-1", 11)  # the takeover
    run.event("heal", fault="pause", target="worker-3")
    late_end(run, paused, "4", "worker-3", 33, ex)  # it finishes late
    run.execute(paused, 5, "worker-1", 11)
    run.finish(paused)

    crashed = jobs[3]
    run.execute(crashed, 1, "worker-1", 11)
    ex = run.execute(crashed, 2, "worker-1", 11, end=False)
    run.fault("server-crash", "server", down=1.0)
    run.event("heal", fault="server-crash", target="server")
    late_end(run, crashed, "2", "worker-1", 11, ex)
    root = run.root(crashed)
    run.promises[f"{root}.2"] = {
        "id": f"{root}.2", "state": "RESOLVED", "param": {}, "value": encode(step_value(crashed["jobId"], "2")),
        "completedOn": int(run.tick() * 1000), "tags": {"resonate:scope": "local", "resonate:root": root},
    }  # fmt: skip
    for step in (3, 4, 5):
        run.execute(crashed, step, "worker-1", 11)
    run.finish(crashed)
    return run, {"kill": killed["jobId"], "pause": paused["jobId"], "server-crash": crashed["jobId"]}


def app_summary(run: FakeRun) -> dict:
    """run.json's "app" as `harness run` writes it: the spec's summary, what the canary learned."""
    steps = [{"pos": p, "fn": fn, "kind": "fn", "effect": p == EFFECT_STEP} for p, fn in STEPS.items()]
    learned = {"job": "canary-1", "root": "wf/canary-1", "scheme": "wf/{job}", "workflow": "wf",
               "target": "poll://any", "steps": steps, "sdk": {"worker": "0.6.7"}, "ttl": 2}  # fmt: skip
    return {"dir": "/apps/synthetic", "config": "/apps/synthetic/harness.toml", "handler": "api:handle",
            "worker": "worker.py", "oracle": None, "missing_status": 404, **run.meta["app"],
            "learned": learned}  # fmt: skip


def save(run: FakeRun, run_dir: Path, *, promises: bool = True, results: bool = True) -> Path:
    """Write a FakeRun as `harness run` leaves a run directory, and check it (results.json)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    meta = {**run.meta, "app": app_summary(run), "backend": "process", "seed": 7,
            "versions": {"server": "0.8.2", "sdk": "0.6.7"},
            "settings": {"workers": 3, "ttl": 2, "liveness_deadline_s": 30, "server_args": []},
            "command": "harness run synthetic --backend process --workers 3 --seed 7"}  # fmt: skip
    (run_dir / "run.json").write_text(json.dumps(meta))
    (run_dir / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in run.events))
    (run_dir / "ledger").mkdir(exist_ok=True)
    by_file: dict[str, list[str]] = {}
    for r in run.ledger:
        by_file.setdefault(f"{r['worker']}.{r['pid']}.jsonl", []).append(json.dumps(r) + "\n")
    for name, lines in by_file.items():
        (run_dir / "ledger" / name).write_text("".join(lines))
    if promises:
        (run_dir / "promises.json").write_text(
            json.dumps(sorted(run.promises.values(), key=lambda p: p["id"]))
        )
    (run_dir / "effects.json").write_text(json.dumps({"rows": run.effects, "error": None, "declared": True}))
    (run_dir / "replay.json").write_text(json.dumps(run.replay))
    (run_dir / "logs").mkdir(exist_ok=True)
    (run_dir / "logs" / "worker-1.log").write_text("started\n")
    if results:
        check_run(run_dir)
    return run_dir


def rendered(run_dir: Path) -> tuple[str, str]:
    paths = render(run_dir)
    assert sorted(p.name for p in paths) == ["report.html", "report.md"]
    assert all(p.parent == run_dir and p.exists() for p in paths)
    return (run_dir / "report.html").read_text(), (run_dir / "report.md").read_text()


def embedded_png(page: str) -> bytes:
    match = IMAGE.search(page)
    assert match, "the timeline image is not embedded"
    data = base64.b64decode(match.group(1))
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    return data


def png_size(data: bytes) -> tuple[int, int]:
    return struct.unpack(">II", data[16:24])


def test_report_of_a_faulted_run(tmp_path: Path) -> None:
    run, faulted = faulted_run()
    run_dir = save(run, tmp_path / "run")
    results = json.loads((run_dir / "results.json").read_text())
    assert all(v["ok"] for v in results["verdicts"].values()), results["verdicts"]
    page, md = rendered(run_dir)

    assert not EXTERNAL.search(page), "report.html must not load anything from elsewhere"
    assert "<style>" in page and "stylesheet" not in page
    embedded_png(page)
    for name in results["verdicts"]:
        assert name in page and f"| {name} |" in md
    for job in faulted.values():
        assert job in page
    for fault in results["faults"]:
        if "job" in fault:
            assert fault["job"] in page and fault["job"] in md
    assert "| verdict | ok | detail |" in md
    assert results["command"] in page and results["command"] in md
    assert "0.8.2" in page and "seed 7" in page
    # the app under test, from run.json: its config, and what the canary learned of it
    assert "<code>api:handle</code>" in page and "<code>wf/{job}</code>" in page
    assert "<code>4</code> save (effect)" in page
    assert "handler `api:handle`" in md and "promise ids `wf/{job}`" in md and "steps: 1 fetch, 2 parse" in md


def test_fault_rows_say_when_the_step_restarted_and_the_job_finished(tmp_path: Path) -> None:
    run, faulted = faulted_run()
    view = load(save(run, tmp_path / "run"))
    rows = {r.kind: r for r in view.fault_rows}
    kill = rows["kill"]
    assert (kill.job, kill.step, kill.victim, kill.restart_worker) == (
        faulted["kill"],
        "3",
        "worker-2",
        "worker-1",
    )
    assert kill.restart_s is not None and kill.restart_s > 0 and kill.done_s is not None and kill.done_s > 0
    assert kill.at is not None and kill.at > 0
    assert rows["pause"].restart_worker == "worker-1" and "still finished" in rows["pause"].note
    assert rows["server-crash"].restart_s is None and "not re-run" in rows["server-crash"].note


def test_timeline_tells_interrupted_executions_apart(tmp_path: Path) -> None:
    run, faulted = faulted_run()
    view = load(save(run, tmp_path / "run"))
    lanes = {ln.job: ln for ln in view.lanes}
    assert len(lanes) == 4
    fates = {job: [(x.step, x.fate) for x in lanes[job].executions] for job in faulted.values()}
    assert ("3", "cut") in fates[faulted["kill"]] and ("3", "ok") in fates[faulted["kill"]]
    assert ("4", "late") in fates[faulted["pause"]] and ("4", "ok") in fates[faulted["pause"]]
    assert ("2", "late") in fates[faulted["server-crash"]]
    cut = next(x for x in lanes[faulted["kill"]].executions if x.fate == "cut")
    assert cut.end is None and cut.drawn_end == next(r.at for r in view.fault_rows if r.kind == "kill")
    pause = next(m for m in view.marks if m.kind == "pause")
    assert pause.until is not None and pause.until > pause.t and pause.jobs == [faulted["pause"]]
    assert view.workers == ["worker-1", "worker-2", "worker-3"]


def test_a_run_without_promises_still_renders(tmp_path: Path) -> None:
    run, faulted = faulted_run()
    run_dir = save(run, tmp_path / "run", promises=False)
    page, md = rendered(run_dir)
    embedded_png(page)
    assert "promises.json" in page and faulted["kill"] in page
    assert "| verdict | ok | detail |" in md


def test_a_run_without_faults_still_renders(tmp_path: Path) -> None:
    run = FakeRun(verdicts=["exactly_once", "liveness", "no_loss"])
    for _ in range(2):
        job = run.new_job()
        run.submit(job)
        run.run_job(job)
    page, md = rendered(save(run, tmp_path / "run"))
    embedded_png(page)
    assert "No faults were injected" in page and "No faults were injected" in md
    assert "exactly_once" in page and "| exactly_once | yes |" in md


def test_a_run_that_stopped_early_and_was_never_checked(tmp_path: Path) -> None:
    run = FakeRun(verdicts=["liveness"])
    job = run.new_job()
    run.submit(job)
    run.execute(job, 1, end=False)
    run.event("error", error="gateway: connection refused", trace="Traceback ...")
    run_dir = save(run, tmp_path / "run", promises=False, results=False)
    page, md = rendered(run_dir)
    assert "stopped early" in page and "connection refused" in page and "NOT CHECKED" in page
    embedded_png(page)  # the one interrupted execution is still drawn
    assert "NOT CHECKED" in md

    check_run(run_dir)  # checked later: the stop is a failing verdict
    page, md = rendered(run_dir)
    assert "FAIL" in page and "| run | **NO** |" in md


def test_results_with_keys_the_report_does_not_know(tmp_path: Path) -> None:
    run, _ = faulted_run()
    run_dir = save(run, tmp_path / "run")
    results = json.loads((run_dir / "results.json").read_text())
    results["benchmark"] = {"throughput_jobs_per_s": 12.5}
    results["dedup_jobs"] = [{"job": "j1", "submissions": {"unique": 1, "dup": 9}, "ok": True}]
    results["histogram"] = {"buckets": [1, 2, 3]}
    del results["figures"]
    (run_dir / "results.json").write_text(json.dumps(results))
    page, md = rendered(run_dir)
    assert "throughput_jobs_per_s" in page and "12.5" in page
    assert "<th>submissions</th>" in page and "unique=1, dup=9" in page
    assert "buckets" in page
    assert "| verdict | ok | detail |" in md


def test_fault_kinds_the_report_does_not_know_yet(tmp_path: Path) -> None:
    """A fault that lasts (a partition, healed later) and one of a kind added after this report."""
    run = FakeRun(verdicts=["liveness"])
    job = run.new_job()
    run.submit(job)
    run.execute(job, 1, "worker-1", 11)
    attempt = run.execute(job, 2, "worker-1", 11, end=False)
    run.fault("partition", "worker-1", job=job["jobId"], step="2", pid=11, attempt=attempt, hold=1.0)
    run.event("heal", fault="partition", target="worker-1")
    run.fault("clock-skew", "worker-2", skew_s=3)
    for step in range(2, 6):
        run.execute(job, step, "worker-2", 22)
    run.finish(job)
    run_dir = save(run, tmp_path / "run")
    view = load(run_dir)
    partition = next(m for m in view.marks if m.kind == "partition")
    assert partition.until is not None and partition.jobs == [job["jobId"]]
    assert [r.kind for r in view.fault_rows] == ["partition", "clock-skew"]
    page, md = rendered(run_dir)
    embedded_png(page)
    assert "clock-skew" in page and "partition" in md


def test_only_results_json(tmp_path: Path) -> None:
    """No run.json, no history: the verdicts and the faults results.json lists, no timeline."""
    run, faulted = faulted_run()
    run_dir = save(run, tmp_path / "run")
    for name in ("run.json", "events.jsonl", "promises.json"):
        (run_dir / name).unlink()
    page, md = rendered(run_dir)
    assert faulted["kill"] in page and "No timeline" in page and not IMAGE.search(page)
    assert "| replay |" in md


@pytest.mark.parametrize("n", [60, 250])
def test_many_jobs_keep_the_timeline_bounded(tmp_path: Path, n: int) -> None:
    run = FakeRun(verdicts=["liveness"])
    jobs = [run.new_job() for _ in range(n)]
    for i, job in enumerate(jobs):
        run.submit(job)
        if i == n // 2:
            run.execute(job, 1, "worker-2", 22, end=False)
            run.fault("kill", "worker-2")
        run.run_job(job, worker=f"worker-{1 + i % 3}", pid=10 + i % 3)
    page, _ = rendered(save(run, tmp_path / "run"))
    width, height = png_size(embedded_png(page))
    assert height <= (MAX_HEIGHT_IN + 0.5) * DPI and width < 2000
    assert jobs[n // 2]["jobId"] in page


def test_a_directory_that_is_no_run_is_refused(tmp_path: Path) -> None:
    with pytest.raises(HarnessError):
        render(tmp_path / "missing")
    with pytest.raises(HarnessError):
        render(tmp_path)
    assert not (tmp_path / "report.html").exists()
