"""`harness bench`: the open-loop schedule and its latency math on a no-op endpoint, --compare, and
one tiny real benchmark point. Speed figures go to the output; the asserts here are sanity only."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from harness import bench
from harness.cli import main
from harness.load import OpenLoop, Shot, constant_rate_schedule


def test_schedule_is_evenly_spaced_and_independent_of_answers() -> None:
    s = constant_rate_schedule(10, 2)
    assert len(s) == 20 and s[0] == 0 and s[-1] == pytest.approx(1.9)
    assert all(b - a == pytest.approx(0.1) for a, b in itertools.pairwise(s))
    shot = Shot(0, intended=10.0, sent=10.5, answered=10.75, status=202)
    assert shot.latency == 0.75 and shot.service_time == 0.25 and shot.lag == 0.5
    with pytest.raises(ValueError):
        constant_rate_schedule(0, 1)


def test_open_loop_against_a_noop_endpoint() -> None:
    with bench.noop_server() as url:
        res = OpenLoop(url, connections=8).run(constant_rate_schedule(200, 1.0), lambda i: b"{}")
    assert len(res.shots) == 200 and all(s.status == 202 for s in res.shots)
    assert all(s.answered >= s.sent >= s.intended - 0.001 for s in res.shots)
    intended = [s.intended - res.start for s in res.shots]
    assert intended == pytest.approx(constant_rate_schedule(200, 1.0))
    st = bench.load_stats(res, 200, 1.0, lambda s: s == 202)
    assert st.answered_ok == 200 and not st.errors and st.achieved_rate > 100  # sanity, not a speed test


def test_coordinated_omission_correction_shows_a_stalled_server() -> None:
    """The server stalls 1 s at its 50th request. Measured from the actual send (what a closed-loop
    client sees), only the few requests in flight look slow; measured from the intended send time,
    every request due during the stall carries its share of it."""
    stall = 1.0
    with bench.noop_server(stall_after=50, stall_for=stall) as url:
        res = OpenLoop(url, connections=2).run(constant_rate_schedule(100, 2.0), lambda i: b"{}")
    assert all(s.status == 202 for s in res.shots)
    corrected = [s.latency for s in res.shots]
    uncorrected = [s.service_time for s in res.shots]
    slow_corrected = sum(1 for v in corrected if v >= stall / 2)
    slow_uncorrected = sum(1 for v in uncorrected if v >= stall / 2)
    assert max(corrected) >= 0.8 * stall
    assert slow_uncorrected <= 2  # at most one per connection was on the wire during the stall
    assert slow_corrected >= 25  # ~100 requests were due during the stall; about half waited > 0.5 s
    st = bench.load_stats(res, 100, 2.0, lambda s: s == 202)
    p90_corrected = bench.summarize(st.accept, (90,))["p90"]
    p90_uncorrected = bench.summarize(st.service, (90,))["p90"]
    assert p90_corrected > 10 * p90_uncorrected
    assert (
        bench.summarize(st.lag)["max"] >= 0.5 * stall * 1000
    )  # requests left late: the schedule lag shows it


def test_ceiling_reports_each_rate() -> None:
    c = bench.ceiling([100, 200], 0.5, 4)
    assert [p["offered_rate"] for p in c["points"]] == [100, 200]
    assert all(p["requests"] == p["answered_ok"] > 0 for p in c["points"])
    assert "no-op" in c["target"]


def _point(workers: int, rate: float, completed: float, accept_p99: float, behind: bool = False) -> dict:
    return {"workers": workers, "offered_rate": rate, "achieved_rate": rate, "completed_per_s": completed,
            "processed_per_s": completed, "accept_ms": {"p50": 10.0, "p95": 20.0, "p99": accept_p99, "max": 99.0},
            "completion_ms": {"p50": 300.0, "p99": 900.0, "max": 1000.0}, "errors": {}, "behind": behind,
            "lag_ms": {"p99": 1.0}, "cpu": {"machine_busy_cores": 1.0, "cores": 2, "by_component_cores": {},
                                            "others_cores": 0.0}, "why_behind": ""}  # fmt: skip


def _bench_file(path: Path, points: list[dict]) -> Path:
    data = {"kind": "harness-bench", "created": "now", "config": {"step_seconds": "0.01"}, "environment": {},
            "ceiling": None, "points": points, "summary": bench.summarize_sweep(points)}  # fmt: skip
    path.write_text(json.dumps(data))
    return path


def test_compare_two_bench_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = _bench_file(tmp_path / "a.json", [_point(1, 5, 5, 40), _point(1, 10, 6, 80, behind=True)])
    (tmp_path / "b").mkdir()
    _bench_file(tmp_path / "b" / "bench.json",
                    [_point(1, 5, 5, 20), _point(1, 10, 9.5, 40), _point(2, 10, 10, 30)])  # fmt: skip
    rows = bench.compare(bench.load_bench(a), bench.load_bench(tmp_path / "b"))
    by_key = {(r[0], r[1]): r for r in rows}
    assert by_key[("1", "10")][2:5] == ["6", "9.5", "+58%"] and by_key[("1", "10")][-1] == "B/-"
    assert by_key[("1", "5")][5:8] == ["40", "20", "-50%"]
    assert by_key[("2", "10")][2] == "-"  # only in B
    assert by_key[("1", "capacity")][2:5] == ["6", "9.5", "+58%"]
    assert main(["bench", "--compare", str(a), str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "+58%" in out and "A completed/s" in out
    assert main(["bench", "--compare", str(a), str(tmp_path / "missing.json")]) == 2


def test_summary_knee_and_efficiency() -> None:
    pts = [_point(1, 5, 5, 1), _point(1, 10, 7, 1, behind=True), _point(2, 5, 5, 1), _point(2, 10, 10, 1),
           _point(2, 20, 12, 1, behind=True)]  # fmt: skip
    s = bench.summarize_sweep(pts)
    assert s["1"]["knee_offered_rate"] == 10 and s["1"]["capacity_jobs_per_s"] == 7
    assert s["2"]["knee_offered_rate"] == 20 and s["2"]["speedup"] == pytest.approx(12 / 7, abs=0.01)
    assert s["2"]["scaling_efficiency"] == pytest.approx(12 / 14, abs=0.01)


@pytest.mark.server
def test_a_tiny_real_bench_point(tmp_path: Path, server_ready: None) -> None:
    out = tmp_path / "bench"
    rc = main(
        ["bench", "--workers", "1", "--rates", "3", "--duration", "2", "--no-ceiling", "--out", str(out)]
    )
    assert rc == 0
    data = json.loads((out / "bench.json").read_text())
    (p,) = data["points"]
    assert p["workers"] == 1 and p["offered_rate"] == 3 and p["requests"] == 6
    assert p["answered_ok"] + sum(p["errors"].values()) == 6
    assert p["completed"] == p["answered_ok"] and p["accept_ms"]["p50"] is not None
    assert (
        p["completion_ms"]["p50"] >= p["accept_ms"]["p50"]
    )  # done after accepted, both from the intended send
    assert data["config"]["step_seconds"] == bench.DEFAULT_STEP_SECONDS and "1" in data["summary"]
    assert data["app"]["promise_id_scheme"] == "doc/{job}"
    assert f"WORKFLOW_STEP_SECONDS={bench.DEFAULT_STEP_SECONDS}s" in data["method"]["work"]
    assert data["environment"]["cpus"] >= 1 and "by_component_cores" in p["cpu"]
    for name in ("summary.md", "throughput.png", "latency.png", "scaling.png"):
        assert (out / name).stat().st_size > 0
    print("\ntiny bench point:", bench._point_line(p))


APPS = Path(__file__).resolve().parent / "apps"


@pytest.mark.server
def test_a_tiny_real_bench_point_on_another_app(tmp_path: Path, server_ready: None) -> None:
    """The orders app: its own route (POST /orders), body and promise ids (order-<job>), learned
    from the canary; no --step-seconds (the reference app's knob) reaches it."""
    out = tmp_path / "bench"
    rc = main(["bench", "--app", str(APPS / "orders"), "--workers", "1", "--rates", "3", "--duration", "2",
               "--no-ceiling", "--out", str(out)])  # fmt: skip
    assert rc == 0
    data = json.loads((out / "bench.json").read_text())
    (p,) = data["points"]
    assert p["requests"] == 6 and p["answered_ok"] == 6 and p["completed"] == 6, p
    assert p["completion_ms"]["p50"] >= p["accept_ms"]["p50"]
    app = data["app"]
    assert app["promise_id_scheme"] == "order-{job}" and app["roots_from"] == "scheme"
    assert app["workflow"] == "fulfil" and app["steps"] and data["config"]["step_seconds"] is None
    work = data["method"]["work"]
    assert work.startswith("app orders, workflow fulfil: ") and "WORKFLOW_STEP_SECONDS" not in work
    summary = (out / "summary.md").read_text()
    assert f"Work per job: {work}" in summary and "ship [effect]" in work
    sent = [json.loads(line) for line in (out / "cluster-w1" / "logs" / "gateway-requests.jsonl").open()]
    # the canary, the warm-up (6) and the point (6): all the app's own route, none the reference app's
    assert len(sent) == 13 and {(e["method"], e["path"]) for e in sent} == {("POST", "/orders")}
    print("\ntiny bench point (orders):", bench._point_line(p))


@pytest.mark.server
def test_bench_finds_roots_by_the_ledger_when_promise_ids_do_not_carry_the_job(
    tmp_path: Path, server_ready: None
) -> None:
    """An app dispatching under random promise ids: no scheme to search by, so each job's root is
    the one the ledger's dispatch records name for its job mark."""
    out = tmp_path / "bench"
    rc = main(["bench", "--app", str(APPS / "broken_random_id"), "--workers", "1", "--rates", "2",
               "--duration", "1", "--no-ceiling", "--out", str(out)])  # fmt: skip
    assert rc == 0
    data = json.loads((out / "bench.json").read_text())
    (p,) = data["points"]
    assert data["app"]["promise_id_scheme"] is None and data["app"]["roots_from"] == "ledger"
    assert p["answered_ok"] == 2 and p["completed"] == 2 and p["drained"], p
