"""What the SDK-boundary instrumentation costs per step: a workflow of N trivial `ctx.run` steps in
the SDK's local mode (no server, so the step path itself is what is measured), run in fresh
processes with and without the hooks, alternately, R rounds each.

    .venv/bin/python benchmarks/agent_overhead.py [--steps 200] [--rounds 7]

It prints the median wall time per step with and without the hooks and the difference; the ledger
records the hooks wrote are counted to show they fired. One process of either kind can also be
timed on its own: ``/usr/bin/time -v python benchmarks/agent_overhead.py --one --hooks``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def one(steps: int, hooks: bool) -> dict[str, float]:
    if hooks:
        from harness.agent import hooks as agent_hooks

        agent_hooks.install("worker")
    from resonate import Resonate

    resonate = Resonate.local()

    def step(_ctx: object, i: int) -> int:
        return i + 1

    @resonate.register
    def chain(ctx, n: int):  # type: ignore[no-untyped-def]
        total = 0
        for i in range(n):
            total += yield ctx.run(step, i)
        return total

    chain.run("warm-up", 10)  # local mode: run() blocks and returns the value
    t0 = time.perf_counter()
    value = chain.run("measured", steps)
    elapsed = time.perf_counter() - t0
    assert value == steps * (steps + 1) // 2, value
    return {"per_step_us": elapsed / steps * 1e6}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--one", action="store_true", help="run one process and print its figure")
    p.add_argument("--hooks", action="store_true", help="with --one: install the hooks first")
    args = p.parse_args()
    if args.one:
        print(json.dumps(one(args.steps, args.hooks)))
        sys.stdout.flush()
        os._exit(0)  # the local-mode SDK keeps threads alive
    runs: dict[bool, list[float]] = {False: [], True: []}
    records = 0
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for hooks in (False, True):
                env = {**os.environ, "HARNESS_LEDGER_DIR": tmp, "HARNESS_WORKER_ID": "bench"}
                cmd = [sys.executable, __file__, "--one", "--steps", str(args.steps)] + (
                    ["--hooks"] if hooks else []
                )
                out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=True)
                runs[hooks].append(json.loads(out.stdout.strip().splitlines()[-1])["per_step_us"])
        records = sum(len(f.read_text().splitlines()) for f in Path(tmp).glob("*.jsonl"))
    bare, hooked = statistics.median(runs[False]), statistics.median(runs[True])
    print(f"{args.steps} steps x {args.rounds} rounds, local mode, {os.cpu_count()} CPUs")
    print(f"without hooks: {bare:.1f} us/step (min {min(runs[False]):.1f}, max {max(runs[False]):.1f})")
    print(f"with hooks:    {hooked:.1f} us/step (min {min(runs[True]):.1f}, max {max(runs[True]):.1f})")
    print(f"overhead:      {hooked - bare:.1f} us/step ({(hooked / bare - 1) * 100:.0f}%); "
          f"{records} ledger records written")  # fmt: skip


if __name__ == "__main__":
    main()
