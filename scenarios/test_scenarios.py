"""The scenario suite: each scenario runs on the real server and asserts its verdicts, on the
reference app (every scenario) and on a second app of another shape (tests/apps/orders). It uses
the same pytest fixtures a team uses for its own scenarios (harness.pytest_plugin): `backend`
(once per --backend) and `harness_scenario`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness.history import History
from harness.pytest_plugin import Verdicts
from harness.runner import load_scenarios

SCENARIOS = load_scenarios()
ORDERS = Path(__file__).resolve().parent.parent / "tests" / "apps" / "orders"
ON_ORDERS = ("smoke", "crash-recovery", "dedup-burst", "chaos", "zombie")
CASES = [pytest.param("reference", n, id=n) for n in sorted(SCENARIOS)] + [
    pytest.param("orders", n, id=f"orders-{n}") for n in ON_ORDERS
]
pytestmark = pytest.mark.server
Scenario = Callable[..., Verdicts]


def crash_recovery_hits_every_step_and_the_gaps(res: Verdicts) -> None:
    faults, steps = res.results["faults"], res.results["app"]["steps"]
    leaves = [s["pos"] for s in steps if s["kind"] == "fn"]
    kills = sorted(str(f["step"]) for f in faults if f["kind"] == "kill")
    assert kills == sorted(leaves), (kills, leaves)
    sites = {(str(f["step"]), f.get("site")) for f in faults if f["kind"] == "failpoint-crash"}
    expected = {(leaves[len(leaves) // 2], "before"), (leaves[0], "after")}
    effects = [s["pos"] for s in steps if s["effect"]]
    if effects and res.results["app"].get("effects", {}).get("function"):
        expected.add((effects[0], "after_effect"))
    assert sites == expected
    print("recovery figures:", {k: v for k, v in res.results["figures"].items() if "recovery" in k})


def zombie_shows_the_extra_execution(res: Verdicts) -> None:
    v = res.results["verdicts"]
    assert (
        "none duplicated" in v["exactly_once"]["detail"]
        or "no effects declared" in v["exactly_once"]["detail"]
    )
    assert "the paused attempt of" in v["replay"]["detail"], v["replay"]


def concurrent_duplicates_land_on_different_lambda_instances(res: Verdicts) -> None:
    served: dict[str, set[str]] = {}
    for e in History.load(res.run_dir).of_kind("response"):
        if e["mode"] in ("unique", "dup"):
            served.setdefault(e["job_id"], set()).add(e["instance"])
    assert len(served) == res.results["jobs"]["unique"]
    assert all(len(instances) >= 2 for instances in served.values()), served


MORE: dict[str, Callable[[Verdicts], Any]] = {
    "crash-recovery": crash_recovery_hits_every_step_and_the_gaps,
    "zombie": zombie_shows_the_extra_execution,
    "dedup-burst": concurrent_duplicates_land_on_different_lambda_instances,
}


@pytest.mark.parametrize(("app", "name"), CASES)
def test_scenario(app: str, name: str, backend: str, harness_scenario: Scenario) -> None:
    res = harness_scenario(name, seed=7, app=ORDERS if app == "orders" else None)
    results = res.results
    print(f"\n{name} [{app}, {backend}] figures: {json.dumps(results['figures'])}")
    for fault in results["faults"]:
        print(f"  fault: {fault}")
    assert set(results["verdicts"]) == set(SCENARIOS[name].verdicts), (
        "a verdict the scenario does not exercise"
    )
    failed = {k: v["detail"] for k, v in results["verdicts"].items() if not v["ok"]}
    assert not failed, failed
    assert results["jobs"]["completed"] == results["jobs"]["unique"]
    if app == "orders":
        assert results["app"]["promise_id_scheme"] == "order-{job}", results["app"]
    if name in MORE:
        MORE[name](res)


@pytest.mark.harness(backends=["process"])
def test_a_seed_repeats_the_job_mix(harness_scenario: Scenario) -> None:
    def job_ids(seed: int) -> list[str]:
        return sorted(History.load(harness_scenario("smoke", seed=seed).run_dir).jobs())

    first = job_ids(5)
    assert job_ids(5) == first
    assert job_ids(6) != first
