"""The SDK-boundary instrumentation, on real resonate-sdk workflows (an in-process Resonate.local()
store, so no server is needed), each in a subprocess started by the real worker launcher: what it
records, that its records survive kill -9, that failpoints fire once at their site, and that it
refuses an SDK it does not support."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from harness.agent.hooks import encoded
from harness.history import read_ledger

APP = """
import sys
from resonate import Resonate
import effects_mod

resonate = Resonate.local(ttl=10)

def double(ctx, x):
    return 2 * x

def note(ctx, x):
    effects_mod.write(x)
    return f"noted {x}"

def sub(ctx, x):
    a = yield ctx.run(double, x)
    b = yield ctx.run(double, a)
    return a + b

def helper(ctx, x):
    return x + 1

def fmt(value):
    return dict(value)

@resonate.register
def wf(ctx, x):
    y = yield ctx.run(double, x)
    z = yield ctx.run(sub, y)
    w = helper(ctx, z)   # a step function called directly: no checkpoint
    n = yield ctx.run(note, w)
    return fmt({"y": y, "z": z, "n": n})

if __name__ == "__main__":
    print(resonate.run(sys.argv[1] if len(sys.argv) > 1 else "wf-1", wf, 3))
"""


def make_app(tmp_path: Path) -> Path:
    app = tmp_path / "app"
    app.mkdir()
    (app / "worker.py").write_text(APP)
    (app / "effects_mod.py").write_text("def write(x):\n    return None\n")
    return app


def launch(
    app: Path, tmp_path: Path, *args: str, worker: str = "worker-1", **env: str
) -> subprocess.CompletedProcess[str]:
    full = {
        **os.environ, "HARNESS_LEDGER_DIR": str(tmp_path / "ledger"), "HARNESS_APP_ROOT": str(app),
        "HARNESS_APP_PATH": str(app), "HARNESS_EFFECT_FUNCTION": "effects_mod:write", "HARNESS_TTL": "3",
        "HARNESS_WORKER_ID": worker, "HARNESS_FAILPOINTS": str(tmp_path / "fp" / "armed.json"), **env,
    }  # fmt: skip
    return subprocess.run([sys.executable, "-m", "harness.agent.worker", str(app / "worker.py"), *args],
                          env=full, cwd=app, capture_output=True, text=True, timeout=60)  # fmt: skip


def arm(tmp_path: Path, *fps: dict[str, Any]) -> None:
    (tmp_path / "fp").mkdir(exist_ok=True)
    (tmp_path / "fp" / "armed.json").write_text(json.dumps(list(fps)))


def test_the_hooks_record_steps_sub_steps_bodies_effects_and_direct_calls(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    res = launch(app, tmp_path)
    assert res.returncode == 0, res.stderr
    records = read_ledger(tmp_path / "ledger")
    hello = next(r for r in records if r["ev"] == "hello")
    assert hello["ok"] and hello["role"] == "worker" and hello["sdk"].startswith("0.6.")
    client = next(r for r in records if r["ev"] == "client")
    assert (client["ttl"], client["app_ttl"]) == (3, 10)  # the harness's lease replaces the app's
    steps = [(r["pos"], r["fn"]) for r in records if r["ev"] == "start"]
    assert steps == [("1", "double"), ("2.1", "double"), ("2.2", "double"), ("3", "note")]
    ends = {r["pos"]: r["value"] for r in records if r["ev"] == "end"}
    assert ends == {"1": 6, "2.1": 12, "2.2": 24, "3": "noted 37"}
    bodies = [(r["pos"], r["fn"]) for r in records if r["ev"] == "body"]
    assert bodies == [("", "wf"), ("2", "sub")]
    assert [r["pos"] for r in records if r["ev"] == "effect"] == ["3"]
    calls = [(r["fn"], r["ctx_arg"], r["after"]) for r in records if r["ev"] == "call"]
    assert calls == [("helper", True, "wf-1.2"), ("fmt", False, "wf-1.3")]
    end = next(r for r in records if r["ev"] == "body-end" and r["pos"] == "")
    assert end["vd"] == encoded({"y": 6, "z": 36, "n": "noted 37"})[1]
    asks = [(r["pos"], r["fn"]) for r in records if r["ev"] == "ask"]
    assert asks == [("1", "double"), ("2", "sub"), ("2.1", "double"), ("2.2", "double"), ("3", "note")]


def test_a_start_record_survives_sigkill_during_the_step(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    arm(tmp_path, {"id": "fp1", "root": "wf-1", "pos": "2.1", "at": "during", "action": "crash"})
    res = launch(app, tmp_path)
    assert res.returncode == -9
    records = [r for r in read_ledger(tmp_path / "ledger") if r["ev"] in ("start", "end", "failpoint")]
    assert [(r["ev"], r["pos"]) for r in records] == [("start", "1"), ("end", "1"), ("start", "2.1"),
                                                       ("failpoint", "2.1")]  # fmt: skip
    assert records[-1]["exec"] == records[-2]["exec"]


def test_a_failpoint_fires_once_then_the_next_process_completes(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    arm(tmp_path, {"id": "fp1", "root": "wf-1", "pos": "3", "at": "after_effect", "action": "crash"})
    assert launch(app, tmp_path, worker="worker-1").returncode == -9
    assert launch(app, tmp_path, worker="worker-2").returncode == 0
    effects = [
        (r["ev"], r["worker"]) for r in read_ledger(tmp_path / "ledger") if r["ev"] in ("effect", "failpoint")
    ]
    assert effects == [("effect", "worker-1"), ("failpoint", "worker-1"), ("effect", "worker-2")]


def test_a_failpoint_for_another_root_or_site_does_not_fire(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    arm(tmp_path, {"id": "fp1", "root": "other", "pos": "1", "at": "during", "action": "crash"},
        {"id": "fp2", "root": "wf-1", "pos": "9", "at": "before", "action": "crash"})  # fmt: skip
    assert launch(app, tmp_path).returncode == 0


def test_a_hold_waits_until_released(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    arm(tmp_path, {"id": "fp1", "root": "wf-1", "pos": "1", "at": "before", "action": "hold", "seconds": 30})
    (tmp_path / "fp" / "fp1.release").touch()  # released already: it goes on at once
    res = launch(app, tmp_path)
    assert res.returncode == 0
    evs = [r["ev"] for r in read_ledger(tmp_path / "ledger") if r["ev"] in ("failpoint", "released", "start")]
    assert evs[:3] == ["failpoint", "released", "start"]


def test_an_unwritable_ledger_never_breaks_the_app(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    blocker = tmp_path / "ledger"
    blocker.write_text("a file where the ledger directory should be")
    res = launch(app, tmp_path)
    assert res.returncode == 0 and "noted 37" in res.stdout
    assert res.stderr.count("harness-agent") == 1  # logged once, never raised


def test_an_unsupported_sdk_is_refused_and_the_app_runs_unhooked(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    meta = app / "resonate_sdk-0.5.0.dist-info"
    meta.mkdir()
    (meta / "METADATA").write_text("Metadata-Version: 2.1\nName: resonate-sdk\nVersion: 0.5.0\n")
    res = launch(app, tmp_path)
    assert res.returncode == 0
    records = read_ledger(tmp_path / "ledger")
    assert [r["ev"] for r in records] == ["hello"]
    assert not records[0]["ok"] and "0.5.0 is not supported" in records[0]["problems"][0]


def test_the_offline_replay_drives_the_workflow_with_stored_values(tmp_path: Path) -> None:
    """replay.py on a run directory whose promises say step 1 returned 100 (not 6): the workflow is
    driven with the stored values, never running a step."""
    app = make_app(tmp_path)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    from tests.histories import encode

    def promise(pid: str, value: Any, root: str = "wf-1", scope: str = "local") -> dict[str, Any]:
        return {"id": pid, "state": "RESOLVED", "timeout": 0, "createdOn": 0, "param": {}, "value": encode(value),
                "tags": {"resonate:root": root, "resonate:scope": scope}}  # fmt: skip

    root = promise("wf-1", {"y": 100, "z": 600, "n": "noted 601"}, scope="global")
    root["param"] = encode({"func": "wf", "args": [3], "kwargs": {}, "version": 1})
    promises = [root, promise("wf-1.1", 100), promise("wf-1.2", 600), promise("wf-1.2.1", 200),
                promise("wf-1.2.2", 400), promise("wf-1.3", "noted 601")]  # fmt: skip
    (run_dir / "promises.json").write_text(json.dumps(promises))
    env = {**os.environ, "HARNESS_APP_PATH": str(app)}
    res = subprocess.run([sys.executable, "-m", "harness.agent.replay", str(run_dir), str(app / "worker.py")],
                         env=env, cwd=app, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert res.returncode == 0, res.stderr
    out = json.loads((run_dir / "replay.json").read_text())["roots"]["wf-1"]
    assert out["value"] == {"y": 100, "z": 600, "n": "noted 601"} and out["error"] is None
    assert [(a["pos"], a["fn"]) for a in out["asked"]] == [("1", "double"), ("2", "sub"), ("3", "note")]
    assert [(a["pos"], a["fn"]) for a in out["subs"]["wf-1.2"]["asked"]] == [
        ("2.1", "double"),
        ("2.2", "double"),
    ]
    assert out["subs"]["wf-1.2"]["value"] == 600


def test_the_lambda_runtime_installs_the_hooks_before_the_handler_module(tmp_path: Path) -> None:
    app = tmp_path / "fn"
    app.mkdir()
    (app / "handler.py").write_text(
        textwrap.dedent("""
        import resonate.scheduler
        HOOKED = getattr(resonate.scheduler.Lfnc.__post_init__, "__name__", "") == "lfnc_post_init"
        def go(event, context):
            return {"statusCode": 200, "body": str(HOOKED)}
    """)
    )
    env = {**os.environ, "HARNESS_APP_PATH": str(app), "HARNESS_LEDGER_DIR": str(tmp_path / "ledger")}
    req = json.dumps({"id": "r1", "event": {"httpMethod": "GET", "path": "/"}, "harness": {"sub": 1}})
    res = subprocess.run([sys.executable, "-m", "harness.agent.lambda_runtime", "--handler", "handler:go"],
                         input=req + "\n", env=env, cwd=app, capture_output=True, text=True, timeout=60)  # fmt: skip
    replies = [json.loads(line) for line in res.stdout.splitlines()]
    assert replies[0]["type"] == "ready"
    assert replies[1]["response"]["body"] == "True"
    assert read_ledger(tmp_path / "ledger")[0]["role"] == "lambda"


def test_an_effect_function_run_as_a_step_is_both_a_step_and_an_effect(tmp_path: Path) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (app / "worker.py").write_text(
        "import sys\nfrom resonate import Resonate\nfrom effects_mod import persist\n"
        "resonate = Resonate.local()\n"
        "@resonate.register\ndef wf(ctx, x):\n    y = yield ctx.run(persist, x)\n    return y\n"
        "if __name__ == '__main__':\n    print(resonate.run('wf-9', wf, 4))\n"
    )
    (app / "effects_mod.py").write_text("def persist(ctx, x):\n    return x + 1\n")
    res = launch(app, tmp_path, HARNESS_EFFECT_FUNCTION="effects_mod:persist")
    assert res.returncode == 0, res.stderr
    records = read_ledger(tmp_path / "ledger")
    assert [(r["pos"], r["fn"]) for r in records if r["ev"] == "start"] == [("1", "persist")]
    assert [(r["pos"], r["effect"]) for r in records if r["ev"] == "effect"] == [("1", "persist")]
    assert [r["target"] for r in records if r["ev"] == "effect-hooked"] == ["effects_mod:persist"]
