"""The scenario suite: each scenario runs on the real server and asserts its verdicts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.history import History
from harness.runner import load_scenarios, run

SCENARIOS = load_scenarios()
pytestmark = pytest.mark.server


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario(
    name: str, backend: str, tmp_path: Path, server_ready: None, request: pytest.FixtureRequest
) -> None:
    if SCENARIOS[name].settings.proxied:
        request.getfixturevalue("toxiproxy_bin")
    res = run(name, backend=backend, seed=7, out=tmp_path / "run")
    results = res.results
    print(f"\n{name} [{backend}] figures: {json.dumps(results['figures'])}")
    for fault in results["faults"]:
        print(f"  fault: {fault}")
    assert set(results["verdicts"]) == set(SCENARIOS[name].verdicts), (
        "a verdict the scenario does not exercise"
    )
    failed = {k: v["detail"] for k, v in results["verdicts"].items() if not v["ok"]}
    assert not failed, failed
    assert results["jobs"]["completed"] == results["jobs"]["unique"]


def test_crash_recovery_hits_every_step_and_the_gaps(
    backend: str, tmp_path: Path, server_ready: None
) -> None:
    res = run("crash-recovery", backend=backend, seed=11, out=tmp_path / "run")
    faults = res.results["faults"]
    kills = sorted(f["step"] for f in faults if f["kind"] == "kill")
    assert kills == [1, 2, 3, 4, 5]
    sites = {(f["step"], f.get("site")) for f in faults if f["kind"] == "failpoint-crash"}
    assert sites == {(3, "before"), (4, "after_effect")}
    assert res.ok, res.results["verdicts"]
    print("recovery figures:", {k: v for k, v in res.results["figures"].items() if "recovery" in k})


def test_zombie_shows_the_extra_execution(backend: str, tmp_path: Path, server_ready: None) -> None:
    res = run("zombie", backend=backend, seed=7, out=tmp_path / "run")
    v = res.results["verdicts"]
    assert v["exactly_once"]["ok"] and "none duplicated" in v["exactly_once"]["detail"]
    assert v["replay"]["ok"] and "the paused attempt of" in v["replay"]["detail"], v["replay"]


def test_concurrent_duplicates_land_on_different_lambda_instances(
    backend: str, tmp_path: Path, server_ready: None
) -> None:
    res = run("dedup-burst", backend=backend, seed=3, out=tmp_path / "run")
    assert res.ok, res.results["verdicts"]
    h = History.load(res.run_dir)
    served: dict[str, set[str]] = {}
    for e in h.of_kind("response"):
        if e["mode"] in ("unique", "dup"):
            served.setdefault(e["job_id"], set()).add(e["instance"])
    assert len(served) == 20
    assert all(len(instances) >= 2 for instances in served.values()), served


def test_a_seed_repeats_the_job_mix(tmp_path: Path, server_ready: None) -> None:
    def job_ids(seed: int, out: str) -> list[str]:
        res = run("smoke", seed=seed, out=tmp_path / out)
        return sorted(History.load(res.run_dir).jobs())

    first = job_ids(5, "a")
    assert job_ids(5, "b") == first
    assert job_ids(6, "c") != first
