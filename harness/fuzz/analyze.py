"""The fuzz verdict and per-case table, computed from a run directory alone: ``fuzz.json`` (what was
sent and answered, the status polls), the ledger (what each case's Lambda invocation dispatched, by its
submission mark) and the server's promises (``promises.json``, and the baseline taken before the corpus).

A rejection is never a problem by itself. These are:
- ``lost``: accepted (2xx), yet nothing dispatched, or no such promise on the server, or its status poll
  answers the app's [status] missing code;
- ``promise-for-rejected``: answered 4xx/5xx (or no answer), yet its dispatch created a promise;
- ``unexplained-promise``: a promise on the server that no accepted request explains;
- ``never-done``: accepted, dispatched, but its status never done within the deadline, or done while
  its promise is still PENDING on the server (the status read some other job's promise);
- ``hang``: no answer within the per-case timeout, or the gateway's 504 (the handler outran it);
- ``no-answer``: the connection failed; ``5xx``: any other server error.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from harness.fuzz.corpus import CATEGORIES, STATUS, SUBMIT
from harness.history import PROMISES, History, load_json

FUZZ_FILE = "fuzz.json"
BASELINE = Path("fuzz-baseline") / PROMISES
# worst first: what the verdict detail names first
KINDS = ("lost", "promise-for-rejected", "unexplained-promise", "never-done", "hang", "no-answer", "5xx")


def _ok(status: int | None) -> bool:
    return status is not None and 200 <= status < 300


class _Case:
    """One case's problems, collected in order."""

    def __init__(self, row: dict[str, Any]) -> None:
        self.row = row
        self.problems: dict[str, list[str]] = {}

    def add(self, kind: str, detail: str) -> None:
        self.problems.setdefault(kind, []).append(detail)


def analyze(run_dir: Path) -> dict[str, Any]:
    """{"rows": one per case, "verdict": the `fuzz` verdict, "figures", "unexplained": promise ids}."""
    run_dir = Path(run_dir)
    h = History.load(run_dir)
    data = json.loads((run_dir / FUZZ_FILE).read_text())
    baseline = set(data.get("baseline") or [p["id"] for p in load_json(run_dir / BASELINE, [])])
    cases = {row["id"]: _Case(row) for row in data["cases"]}
    dispatches: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for d in h.records("dispatch"):
        c = cases.get(d.get("job"))
        if c is not None and d.get("sub") == c.row["sub"]:
            dispatches[c.row["id"]].append(d)
    promises = h.promise
    stack = h.stack
    roots = {pid: stack.root_of(p) or pid for pid, p in promises.items()}
    explained = {d["id"] for cid, ds in dispatches.items() for d in ds
                 if _ok(cases[cid].row["status"]) and cases[cid].row["kind"] != STATUS}  # fmt: skip
    unexplained = sorted(pid for pid in promises if pid not in baseline and roots[pid] not in explained)
    scheme = (h.meta.get("app", {}).get("learned") or {}).get("scheme")
    named: set[str] = set()

    for cid, c in cases.items():
        row, mine = c.row, dispatches.get(cid, [])
        status = row["status"]
        if status is None:
            c.add("hang" if row.get("hang") else "no-answer", row.get("error") or "no answer")
        elif status == 504:
            c.add("hang", f"504 from the gateway: the handler did not answer within its "
                          f"{data.get('gateway_timeout_s', '?')}s timeout")  # fmt: skip
        elif status >= 500:
            c.add("5xx", f"{status} {row.get('answer', '')[:100]}".strip())
        created = [d["id"] for d in mine if d.get("created")]
        if row["kind"] == STATUS and created:
            c.add("unexplained-promise", f"a status read created promise {', '.join(created)}")
        elif not _ok(status) and created:
            c.add("promise-for-rejected", f"answered {status or 'nothing'}, yet its dispatch created promise "
                                          f"{', '.join(created)}")  # fmt: skip
        named.update(created)
        if _ok(status) and row["kind"] != STATUS:
            _accepted(c, mine, promises, data)

    # promises no accepted request explains, attributed to a case by the app's learned id scheme
    by_job = {c.row["job"]: c for c in reversed(cases.values()) if isinstance(c.row.get("job"), str)
              and c.row["kind"] != STATUS and not _ok(c.row["status"])}  # fmt: skip
    loose = []
    for pid in unexplained:
        root = roots[pid]
        if root in named or (pid != root and root in promises and root not in baseline):
            continue  # reported with its root
        c = next((by_job[j] for j in by_job if scheme and scheme.replace("{job}", j) == root), None)
        if c is None:
            loose.append(pid)
        else:
            c.add("unexplained-promise", f"the server holds {pid}, which no accepted request explains")
    rows = sorted((_row(c) for c in cases.values()), key=_case_order)
    return {"rows": rows, "verdict": _verdict(rows, loose), "figures": _figures(rows), "unexplained": loose}


def _accepted(c: _Case, mine: list[dict[str, Any]], promises: dict[str, Any], data: dict[str, Any]) -> None:
    row, status = c.row, c.row["status"]
    if not mine:
        if row["kind"] == SUBMIT:
            c.add("lost", f"answered {status}, but the handler dispatched nothing")
        return
    for d in mine:
        if d["id"] not in promises:
            why = f" (its dispatch failed: {d['error']})" if d.get("error") else ""
            c.add("lost", f"answered {status}, but the server has no promise {d['id']!r}{why}")
    poll = row.get("poll")
    if poll is None:  # no job id to poll: the server's promise says whether it completed
        pending = [d["id"] for d in mine if promises.get(d["id"], {}).get("state") == "PENDING"]
        if pending:
            c.add("never-done", f"promise {', '.join(pending)} still PENDING at the end")
        return
    last = poll.get("last") or {}
    seen = f"{last.get('http') or 'no answer'} {(last.get('answer') or last.get('error') or '')[:80]}".strip()
    if poll["done"]:  # the status said done: so must the server (else the status read another job's promise)
        pending = [d["id"] for d in mine if promises.get(d["id"], {}).get("state") == "PENDING"]
        if pending:
            c.add("never-done", f"its status poll {poll['path']} answered done, yet promise {', '.join(pending)} "
                                f"is still PENDING on the server (the status read another job?)")  # fmt: skip
    elif poll["lost"]:
        c.add("lost", f"its status poll {poll['path']} answered {data.get('missing_status')} "
                      f"{poll['missing']} times ({', '.join(d['id'] for d in mine)} dispatched)")  # fmt: skip
    elif poll["gave_up"]:
        c.add("never-done", f"its status poll {poll['path']} failed {poll['failed']} times in a row: {seen}")
    elif not poll["done"]:
        done = data.get("done") or {}
        c.add("never-done", f"status never {done.get('field')}={done.get('equals')!r} within "
                            f"{data.get('deadline_s')}s ({poll['polls']} polls of {poll['path']}); last: {seen}")  # fmt: skip


def _row(c: _Case) -> dict[str, Any]:
    r = c.row
    kinds = [k for k in KINDS if k in c.problems]
    return {"id": r["id"], "category": r["category"], "description": r["description"], "method": r["method"],
            "path": r["path"], "body": r.get("body_preview", ""), "status": r["status"], "latency": r.get("latency"),
            "expect": r["expect"], "problems": kinds,
            "detail": "; ".join(d for k in kinds for d in c.problems[k])}  # fmt: skip


def _case_order(r: dict[str, Any]) -> tuple[int, str]:
    """Cases in the order of their categories (valid and odd ids first), then by id."""
    return CATEGORIES.index(r["category"]) if r["category"] in CATEGORIES else len(CATEGORIES), r["id"]


def _verdict(rows: list[dict[str, Any]], loose: list[str]) -> dict[str, Any]:
    bad = [r for r in rows if r["problems"]]
    accepted = sum(1 for r in rows if _ok(r["status"]))
    rejected = sum(1 for r in rows if r["status"] is not None and 400 <= r["status"] < 500)
    if not bad and not loose:
        return {"ok": True, "detail": f"{len(rows)} cases: {accepted} accepted and done, {rejected} rejected (4xx); "
                                      f"no 5xx, no hang, no promise for a rejected request, no job lost"}  # fmt: skip
    parts = []
    for kind in KINDS:
        hit = [r for r in bad if kind in r["problems"]]
        if hit:
            names = ", ".join(f"{r['id']} {r['description']}" for r in hit[:3])
            parts.append(f"{kind} in {len(hit)} ({names}{', ...' if len(hit) > 3 else ''})")
    if loose:
        parts.append(
            f"{len(loose)} promises no accepted request explains ({', '.join(map(repr, loose[:3]))})"
        )
    return {"ok": False, "detail": f"{len(bad)} of {len(rows)} cases show problems: " + "; ".join(parts)}


def _figures(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def count(kind: str) -> int:
        return sum(1 for r in rows if kind in r["problems"])

    return {"fuzz_cases": len(rows), "fuzz_accepted": sum(1 for r in rows if _ok(r["status"])),
            "fuzz_rejected_4xx": sum(1 for r in rows if r["status"] is not None and 400 <= r["status"] < 500),
            "fuzz_valid_rejected": sum(1 for r in rows if r["expect"] == "accept" and not _ok(r["status"])),
            "fuzz_problem_cases": sum(1 for r in rows if r["problems"]),
            **{f"fuzz_{k.replace('-', '_')}": count(k) for k in KINDS}}  # fmt: skip


def print_report(results: dict[str, Any], run_dir: Path, out: Any = None, per_kind: int = 20) -> None:
    """The problem cases as a table (worst kind first, up to `per_kind` cases of each kind, so one
    kind's many cases do not hide the others), the summary line and the run directory."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(file=out, width=220)
    problem_rows = [r for r in results.get("fuzz", []) if r["problems"]]
    by_kind: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in problem_rows:
        by_kind[min(r["problems"], key=KINDS.index)].append(r)
    rows = [r for kind in KINDS for r in sorted(by_kind[kind], key=_case_order)[:per_kind]]
    if rows:
        t = Table(
            title=f"fuzz: {len(problem_rows)} problem cases (worst first, up to {per_kind} of each kind)"
        )
        widths = {
            "case": 18,
            "description": 34,
            "request": 30,
            "status": 6,
            "latency": 7,
            "problems": 24,
            "detail": 90,
        }
        for col, width in widths.items():
            t.add_column(col, no_wrap=True, overflow="ellipsis", max_width=width)
        for r in rows:
            t.add_row(r["id"], escape(r["description"]), escape(f"{r['method']} {r['path']}"), str(r["status"] or "-"),
                      f"{r['latency']:.2f}s" if r["latency"] is not None else "-", ", ".join(r["problems"]),
                      escape(r["detail"]))  # fmt: skip
        console.print(t)
        if len(problem_rows) > len(rows):
            console.print(
                f'... and {len(problem_rows) - len(rows)} more problem cases in results.json ("fuzz")'
            )
    f = results.get("figures", {})
    verdict = results["verdicts"].get("fuzz", {"ok": False, "detail": "no fuzz verdict"})
    for name, v in results["verdicts"].items():
        if name != "fuzz":
            print(f"{'PASS' if v['ok'] else 'FAIL'}  {name:13} {v['detail']}")
    print(f"{'PASS' if verdict['ok'] else 'FAIL'}  fuzz          {verdict['detail']}")
    print(f"fuzz: {f.get('fuzz_cases', 0)} cases, {f.get('fuzz_accepted', 0)} accepted, "
          f"{f.get('fuzz_rejected_4xx', 0)} rejected (4xx), {f.get('fuzz_5xx', 0)} 5xx, {f.get('fuzz_hang', 0)} hangs, "
          f"{f.get('fuzz_lost', 0)} lost, {f.get('fuzz_never_done', 0)} never done, "
          f"{f.get('fuzz_promise_for_rejected', 0) + f.get('fuzz_unexplained_promise', 0)} stray promises; "
          f"problems in {f.get('fuzz_problem_cases', 0)} cases")  # fmt: skip
    print(f"run directory: {run_dir}")
