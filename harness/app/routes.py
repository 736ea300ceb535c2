"""What a Lambda handler module answers, read statically for `harness init`: the routes (path,
resource and method literals it compares), the request-body fields it reads, its "done" answer."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from typing import Any

from harness.app.scan import DISPATCH_CALLS, Dispatch, Module, dotted, literal, reach, str_seq

HTTP_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
DONE_WORDS = ("done", "completed", "succeeded", "finished", "complete", "success", "resolved")
DONE_FLAGS = ("done", "finished", "completed", "complete")
RESULT_KEYS = ("result", "output", "value", "data", "results", "response", "payload")
_REGEX_LITERAL = re.compile(r"\^?(/[\w/-]*)")


@dataclass
class Route:
    literal: str
    kind: str  # exact, prefix (startswith) or template (a resource such as /status/{jobId})
    method: str | None
    line: int
    nodes: list[ast.AST] = field(default_factory=list)
    also: list[str] = field(default_factory=list)  # literals merged into this route

    @property
    def key(self) -> tuple[str, bool]:
        return (self.literal.split("{")[0], True) if self.kind != "exact" else (self.literal, False)


@dataclass
class Field:
    name: str
    line: int
    default: str | None = None
    numeric: bool = False


@dataclass
class Done:
    field: str
    equals: Any
    result: str | None
    line: int


def _consts(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
    if isinstance(node, ast.IfExp):
        return _consts(node.body) + _consts(node.orelse)
    return []


def _paths(test: ast.AST) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for n in ast.walk(test):
        if isinstance(n, ast.Compare) and any(isinstance(op, ast.Eq | ast.In) for op in n.ops):
            for c in (c for side in (n.left, *n.comparators) for c in _consts(side)):
                if c.startswith("/"):
                    out.append((c, "template" if "{" in c else "exact"))
        elif isinstance(n, ast.Call) and n.args and isinstance(n.func, ast.Attribute):
            if n.func.attr == "startswith":
                out += [(c, "prefix") for c in _consts(n.args[0]) if c.startswith("/")]
            elif dotted(n.func) in ("re.match", "re.fullmatch", "re.search"):
                m = next((_REGEX_LITERAL.match(c) for c in _consts(n.args[0])), None)
                if m and m.group(1) != "/":
                    out.append((m.group(1), "prefix" if m.end() < len(_consts(n.args[0])[0]) else "exact"))
    return out


def _methods(node: ast.AST, ops: tuple[type, ...] = (ast.Eq, ast.In)) -> list[str]:
    found = []
    for n in ast.walk(node):
        if isinstance(n, ast.Compare) and any(isinstance(op, ops) for op in n.ops):
            found += [(n.lineno, c.upper()) for side in (n.left, *n.comparators) for c in _consts(side)
                      if c.upper() in HTTP_METHODS]  # fmt: skip
    return [m for _, m in sorted(found)]


def _visit(stmts: list[ast.stmt], method: str | None, out: list[Route]) -> None:
    for s in stmts:
        if isinstance(s, ast.If):
            methods = _methods(s.test)
            m = methods[0] if methods else method
            paths = [(lit, kind) for lit, kind in _paths(s.test) if lit != "/" or kind == "exact"]
            inner = (
                next(iter(_methods(ast.Module(body=s.body, type_ignores=[]), (ast.cmpop,))), None)
                if paths
                else None
            )
            out += [Route(lit, kind, m or inner, s.lineno, list(s.body)) for lit, kind in paths]
            _visit(s.body, m, out)
            _visit(s.orelse, method, out)
        elif isinstance(s, ast.Match):
            for case in s.cases:
                lits = [
                    n.value
                    for n in ast.walk(case.pattern)
                    if isinstance(n, ast.Constant) and isinstance(n.value, str)
                ]
                m = next((x.upper() for x in lits if x.upper() in HTTP_METHODS), method)
                out += [Route(x, "template" if "{" in x else "exact", m, case.pattern.lineno, list(case.body))
                        for x in lits if x.startswith("/")]  # fmt: skip
                _visit(case.body, m, out)
        else:
            for name in ("body", "orelse", "finalbody"):
                child = getattr(s, name, None)
                if isinstance(child, list):
                    _visit([c for c in child if isinstance(c, ast.stmt)], method, out)
            for h in getattr(s, "handlers", []):
                _visit(h.body, method, out)


def routes(mod: Module) -> list[Route]:
    """The routes the module compares, merged by path (a resource /x/{id} and a prefix /x/ are one)."""
    found: list[Route] = []
    _visit(mod.tree.body, None, found)
    for stmt in mod.tree.body:  # route tables: {"/jobs": create} or {("POST", "/jobs"): create}
        if isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Dict):
            for k, v in zip(stmt.value.keys, stmt.value.values, strict=True):
                lits = _consts(k) if k is not None else []
                path = next((x for x in lits if x.startswith("/")), None)
                if path:
                    m = next((x.upper() for x in lits if x.upper() in HTTP_METHODS), None)
                    found.append(Route(path, "template" if "{" in path else "exact", m, stmt.lineno, [v]))
    merged: list[Route] = []
    for r in found:
        same = next((m for m in merged if m.key == r.key and (None in (m.method, r.method) or m.method == r.method)),
                    None)  # fmt: skip
        if same is None:
            merged.append(r)
            continue
        same.nodes += r.nodes
        same.method = same.method or r.method
        if r.kind == "template" and same.kind != "template":  # the resource names the path parameter
            same.also.append(same.literal)
            same.literal, same.kind = r.literal, r.kind
        else:
            same.also.append(r.literal)
            if same.kind == "template" and r.kind != "template":  # report the routing test's line
                same.line = r.line
    return merged


def features(mod: Module, nodes: list[ast.AST]) -> set[str]:
    """What the code reachable from `nodes` does: dispatch, get (reads a promise), params, query."""
    feats: set[str] = set()
    for top in reach(mod, nodes):
        for n in ast.walk(top):
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute):
                if n.func.attr in DISPATCH_CALLS and any(d.line == n.lineno for d in mod.dispatches):
                    feats.add("dispatch")
                if n.func.attr == "get" and dotted(n.func.value) in mod.client_vars:
                    feats.add("get")
            elif isinstance(n, ast.Constant) and n.value in ("pathParameters", "queryStringParameters"):
                feats.add("params" if n.value == "pathParameters" else "query")
    return feats


def param_keys(mod: Module, what: str = "pathParameters") -> list[str]:
    """Keys read from event["pathParameters"] (directly, or through a name bound to it)."""
    holders = {t.id for n in ast.walk(mod.tree) if isinstance(n, ast.Assign)
               for t in n.targets if isinstance(t, ast.Name) and what in _consts_in(n.value)}  # fmt: skip
    keys: list[str] = []
    for n in ast.walk(mod.tree):
        base, key = _read(n)
        if (
            key
            and base is not None
            and (dotted(base) in holders or what in _consts_in(base))
            and key not in keys
        ):
            keys.append(key)
    return keys


def _consts_in(node: ast.AST) -> set[str]:
    return {n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)}


def _read(n: ast.AST) -> tuple[ast.AST | None, str | None]:
    """(container, key) of `x["key"]` or `x.get("key")`."""
    if isinstance(n, ast.Subscript) and isinstance(n.slice, ast.Constant) and isinstance(n.slice.value, str):
        return n.value, n.slice.value
    if (isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "get" and n.args
            and isinstance(n.args[0], ast.Constant) and isinstance(n.args[0].value, str)):  # fmt: skip
        return n.func.value, n.args[0].value
    return None, None


def _loads(value: ast.AST, loaders: set[str]) -> bool:
    return any(isinstance(n, ast.Call) and (dotted(n.func).split(".")[-1] == "loads" or dotted(n.func) in loaders)
               for n in ast.walk(value))  # fmt: skip


def body_fields(mod: Module) -> list[Field]:
    """The request-body fields the module reads from what json.loads returned, in source order."""
    loaders = {name for name, f in mod.funcs.items()
               if any(isinstance(r, ast.Return) and r.value is not None and _loads(r.value, set()) for r in ast.walk(f))}  # fmt: skip
    scopes: list[list[ast.stmt]] = [
        [s for s in mod.tree.body if not isinstance(s, ast.FunctionDef | ast.ClassDef)]
    ]
    scopes += [f.body for f in ast.walk(mod.tree) if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)]
    found: dict[str, Field] = {}
    for body in scopes:
        nodes = [n for s in body for n in ast.walk(s)]
        names = {t.id for n in nodes if isinstance(n, ast.Assign) and _loads(n.value, loaders)
                 for t in n.targets if isinstance(t, ast.Name)}  # fmt: skip
        if not names:
            continue
        parent = {id(c): n for n in nodes for c in ast.iter_child_nodes(n)}
        for n in sorted((n for n in nodes if hasattr(n, "lineno")), key=lambda n: (n.lineno, n.col_offset)):  # type: ignore[attr-defined]
            for name, default in _field_reads(n, names, mod):
                p = parent.get(id(n))
                numeric = isinstance(p, ast.Call) and dotted(p.func) in ("int", "float")
                found.setdefault(name, Field(name, n.lineno, default, numeric))  # type: ignore[attr-defined]
    return sorted(found.values(), key=lambda f: f.line)


def _field_reads(n: ast.AST, names: set[str], mod: Module) -> list[tuple[str, str | None]]:
    base, key = _read(n)
    if key is not None and base is not None and dotted(base) in names:
        assert isinstance(n, ast.Subscript | ast.Call)
        default = literal(n.args[1], mod) if isinstance(n, ast.Call) and len(n.args) > 1 else None
        return [(key, default)]
    if (isinstance(n, ast.Compare) and any(isinstance(op, ast.In | ast.NotIn) for op in n.ops)
            and isinstance(n.left, ast.Constant) and isinstance(n.left.value, str)
            and dotted(n.comparators[0]) in names):  # fmt: skip
        return [(n.left.value, None)]
    loops: list[tuple[ast.AST, ast.AST, ast.AST]] = []  # (target, iter, scope)
    if isinstance(n, ast.For):
        loops.append((n.target, n.iter, n))
    elif isinstance(n, ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp):
        loops += [(g.target, g.iter, n) for g in n.generators]
    out: list[tuple[str, str | None]] = []
    for target, it, scope in loops:
        var = target.elts[0] if isinstance(target, ast.Tuple) and target.elts else target
        strs = str_seq(it, mod)
        if strs and isinstance(var, ast.Name) and _uses(scope, names, var.id):
            out += [(s, None) for s in strs]
    return out


def _uses(scope: ast.AST, names: set[str], var: str) -> bool:
    """Whether `scope` reads body[var], body.get(var) or tests `var in body`."""
    for n in ast.walk(scope):
        if isinstance(n, ast.Subscript) and dotted(n.value) in names and dotted(n.slice) == var:
            return True
        if (isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "get"
                and dotted(n.func.value) in names and n.args and dotted(n.args[0]) == var):  # fmt: skip
            return True
        if (
            isinstance(n, ast.Compare)
            and dotted(n.left) == var
            and any(dotted(c) in names for c in n.comparators)
        ):
            return True
    return False


def _norm(name: str) -> str:
    return name.replace("_", "").replace("-", "").lower()


def job_field(mod: Module, d: Dispatch | None, fields: list[Field]) -> tuple[str | None, str]:
    """(the body field carrying the job id, why it was chosen)."""
    names = [f.name for f in fields]
    by_norm = {_norm(n): n for n in names}
    for e in d.pid_exprs if d else []:
        for key in _keys_of(e, d.func if d else None, mod):
            if key in names or _norm(key) in by_norm:
                return by_norm[_norm(key)] if key not in names else key, f'it is in the promise id "{d.pid}"'  # type: ignore[union-attr]
    for n in names:
        if _norm(n) in ("jobid", "id"):
            return n, "it is named like a job id"
    for n in names:
        if "id" in n.lower():
            return n, "it is the first field named like an id"
    return (names[0], "it is the first body field (no better candidate)") if names else (None, "")


def _keys_of(e: ast.expr, func: ast.AST | None, mod: Module) -> list[str]:
    key = _read(e)[1]
    if key is not None:
        return [key]
    if isinstance(e, ast.Attribute):
        return [e.attr]
    if not isinstance(e, ast.Name):
        return [k for n in ast.walk(e) for k in [_read(n)[1]] if k]
    keys = []
    for n in ast.walk(func or mod.tree):
        if isinstance(n, ast.Assign) and any(dotted(t) == e.id for t in n.targets):
            keys += [k for x in ast.walk(n.value) for k in [_read(x)[1]] if k]
    return [*keys, e.id]


def done_answer(nodes: list[ast.AST]) -> Done | None:
    """The answer that says a job finished: a dict literal with "status": "done" (or alike)."""
    best: tuple[tuple[int, int], Done] | None = None
    for top in nodes:
        for d in ast.walk(top):
            if not isinstance(d, ast.Dict):
                continue
            pairs = [(k.value, v) for k, v in zip(d.keys, d.values, strict=True)
                     if isinstance(k, ast.Constant) and isinstance(k.value, str)]  # fmt: skip
            for key, v in pairs:
                words = [w for w in _consts(v) if w.lower() in DONE_WORDS]
                if words:
                    rank = (
                        0 if key.lower() in ("status", "state") else 1,
                        DONE_WORDS.index(words[0].lower()),
                    )
                    equals: Any = words[0]
                elif key.lower() in DONE_FLAGS and not (isinstance(v, ast.Constant) and v.value is not True):
                    rank, equals = (2, 0), True
                else:
                    continue
                if best is None or rank < best[0]:
                    best = rank, Done(key, equals, _result_key(pairs, key), d.lineno)
    return best[1] if best else None


def _result_key(pairs: list[tuple[str, ast.expr]], done_key: str) -> str | None:
    rest = [(k, v) for k, v in pairs if k != done_key and not isinstance(v, ast.Constant)
            and not (_norm(k) == "id" or _norm(k).endswith("id"))]  # fmt: skip
    for k, v in rest:
        if isinstance(v, ast.Dict):
            inner = [(ik.value, iv) for ik, iv in zip(v.keys, v.values, strict=True)
                     if isinstance(ik, ast.Constant) and isinstance(ik.value, str)]  # fmt: skip
            sub = _result_key(inner, "")
            if sub and sub.split(".")[0] in RESULT_KEYS:
                return f"{k}.{sub}"
    ranked = sorted(
        rest, key=lambda kv: RESULT_KEYS.index(kv[0]) if kv[0] in RESULT_KEYS else len(RESULT_KEYS)
    )
    return ranked[0][0] if ranked else None
