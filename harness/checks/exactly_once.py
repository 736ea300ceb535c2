"""exactly_once: one root promise per accepted job, resolved; every checkpoint holds the value of one
recorded execution; the root's value equals the offline replay of the app's own workflow driven with
the server's checkpoints (and the app's declared oracle, if any); no duplicate effect."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from harness.checks.views import Verdict, completion_times, count, effect_rows, step_label, verdict
from harness.history import History


def root_problems(h: History, job: str) -> tuple[list[str], dict[str, Any] | None]:
    """Problems with a job's root promise, and the root (None if there is no usable one)."""
    roots = h.roots_of(job)
    if not roots:
        return [f"job {job}: accepted, but no Lambda instance dispatched a workflow for it"], None
    problems = []
    if len(roots) > 1:
        problems.append(f"job {job}: {len(roots)} root promises {roots[:4]}, expected one")
    root = h.promise.get(roots[0])
    if root is None:
        return [*problems, f"job {job}: no root promise {roots[0]} on the server"], None
    if root["state"] != "RESOLVED":
        return [*problems, f"job {job}: root promise {root['id']} is {root['state']}, not RESOLVED"], None
    return problems, root


def checkpoint_problems(h: History, job: str, root: dict[str, Any]) -> list[str]:
    """Every checkpoint holds the value of one recorded execution of its step."""
    stack = h.stack
    ended: dict[str, set[str]] = defaultdict(set)
    for x in h.executions(job):
        if x.root == root["id"] and x.vd is not None:
            ended[x.pos].add(x.vd)
    problems = []
    for child in h.children(root["id"]):
        pos = child["id"][len(root["id"]) + 1 :] if child["id"].startswith(root["id"] + ".") else child["id"]
        if child["state"] == "RESOLVED" and stack.digest(child.get("value")) not in ended.get(pos, set()):
            problems.append(f"job {job} {step_label(h, job, pos)}: checkpoint {child['id']} holds a value no "
                            f"recorded execution returned ({len(ended.get(pos, ()))} ended executions)")  # fmt: skip
    return problems


def replay_problems(h: History, job: str, root: dict[str, Any]) -> list[str]:
    """The determinism oracle: the offline replay asks for the steps that were checkpointed, in the
    same order, and returns the root's value."""
    rep = (h.replay.get("roots") or {}).get(root["id"])
    if rep is None:
        return [f"job {job}: no offline replay of root {root['id']}"] if h.replay else []
    if rep.get("plain"):
        return []
    steps = h.steps(job)
    problems = []

    def asks(node: dict[str, Any]) -> None:
        for a in node.get("asked", []):
            recorded = steps.get(a["pos"])
            if a["kind"] == "local" and recorded is not None and recorded != a["fn"]:
                problems.append(f"job {job} step {a['pos']}: on replay the workflow asks for {a['fn']} where "
                                f"{recorded} was checkpointed (a nondeterministic workflow body)")  # fmt: skip
        for sub in node.get("subs", {}).values():
            asks(sub)

    asks(rep)
    if rep.get("error"):
        problems.append(f"job {job}: the offline replay of {rep.get('fn')} raised {rep['error']}")
    elif rep.get("incomplete"):
        asked = rep["asked"][-1]["pos"] if rep.get("asked") else "?"
        problems.append(f"job {job}: resolved, but replaying {rep.get('fn')} needs a checkpoint at step {asked} "
                        f"that the server does not hold")  # fmt: skip
    elif rep.get("vd") != h.stack.digest(root.get("value")):
        problems.append(f"job {job}: root {root['id']} holds a value that differs from the offline replay of "
                        f"{rep.get('fn')} with the server's checkpoints")  # fmt: skip
    expected = (h.replay.get("expected") or {}).get(job)
    if expected is not None:
        if expected.get("error"):
            problems.append(f"job {job}: the app's oracle raised {expected['error']}")
        elif expected.get("vd") != h.stack.digest(root.get("value")):
            got, want = h.stack.decode(root.get("value")), expected.get("value")
            keys = (sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
                    if isinstance(got, dict) and isinstance(want, dict) else "the value")  # fmt: skip
            problems.append(f"job {job}: resolved with a value that differs from the app's oracle in {keys}")
    return problems


def effect_problems(h: History) -> tuple[list[str], str]:
    """Duplicate (and, if kinds are declared, missing) effects per job; and a summary."""
    declared = h.meta.get("app", {}).get("effects")
    if not declared:
        return [], "no effects declared by the app: duplicate effects not checked"
    if h.effects.get("error"):
        return [f"the app's effects could not be counted: {h.effects['error']}"], ""
    rows = effect_rows(h)
    counts = Counter((r["job"], r["effect"]) for r in rows)
    calls: dict[str, Counter[str]] = defaultdict(Counter)
    for r in h.records("effect"):
        job = h.job_of.get(r["root"])
        if job is not None:
            calls[job][r["pos"]] += 1
    problems = []
    for (job, kind), n in sorted(counts.items()):
        if n > 1 and job in h.jobs():
            pos = max(calls[job], key=lambda p: calls[job][p], default=None)
            where = f" {step_label(h, job, pos)}" if pos else ""
            problems.append(f"job {job}{where}: {n} '{kind}' effects, expected one")
    kinds = declared.get("kinds") or []
    for job in sorted(completion_times(h)):
        for kind in kinds:
            if counts[(job, kind)] == 0:
                problems.append(f"job {job}: completed but no '{kind}' effect")
    return problems, f"{len(rows)} effects, none duplicated"


def exactly_once(h: History) -> Verdict:
    problems: list[str] = []
    for job in sorted(h.accepted()):
        mine, root = root_problems(h, job)
        problems += mine
        if root is not None:
            problems += checkpoint_problems(h, job, root)
            problems += replay_problems(h, job, root)
    if h.replay.get("error"):
        problems.append(f"the offline replay could not run: {h.replay['error']}")
    effects, summary = effect_problems(h)
    oracle = "the offline replay" + (" and the app's oracle" if h.replay.get("expected") else "")
    return verdict(problems + effects, f"{count(len(h.accepted()), 'accepted job')}: each has one root promise, "
                                       f"resolved with the value of {oracle}; every checkpoint holds a "
                                       f"recorded execution's value; {summary}")  # fmt: skip
