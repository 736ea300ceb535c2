"""Static facts about an app's .py files for `harness init`: parsed with `ast`, never imported or run.

One `Module` per file: its import root and dotted name, module-level constants, Resonate clients
(and their groups), registrations, `.start()` calls, dispatches (begin_rpc & co. with their target,
function name and promise-id template) and environment reads.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SKIP_DIRS = frozenset({".venv", "venv", "site-packages", "tests", "test", "__pycache__", "node_modules"})
MAX_FILES = 2000
DISPATCH_CALLS = ("begin_rpc", "rpc", "begin_run", "run")
Func = ast.FunctionDef | ast.AsyncFunctionDef


@dataclass
class Client:
    var: str | None  # the name it is bound to
    group: str | None  # None: not a literal
    line: int


@dataclass
class Dispatch:
    call: str  # begin_rpc, rpc, begin_run or run
    target: str | None
    name: str | None  # the registered function it invokes
    pid: str | None  # promise-id template, e.g. "doc/{job_id}"
    pid_exprs: list[ast.expr]
    args: list[ast.expr]  # the workflow's arguments
    func: Func | None  # the function it is made in
    line: int


@dataclass
class EnvRead:
    name: str
    default: str | None
    required: bool  # os.environ[NAME]: the app fails without it
    file: str
    line: int


@dataclass
class Module:
    path: Path
    rel: str  # posix path relative to the app dir
    root: str  # import root relative to the app dir
    name: str  # dotted module name under its root
    tree: ast.Module
    consts: dict[str, Any] = field(default_factory=dict)
    funcs: dict[str, Func] = field(default_factory=dict)
    imports: dict[str, tuple[str, str]] = field(default_factory=dict)  # local name -> (module, name)
    clients: list[Client] = field(default_factory=list)
    registered: list[tuple[str, Func | None, int]] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)  # lines of <client>.start()
    starts_under_main: bool = False
    dispatches: list[Dispatch] = field(default_factory=list)
    env: list[EnvRead] = field(default_factory=list)
    uses_sqlite: bool = False
    env_consts: dict[str, str] = field(default_factory=dict)  # module constant -> the env name it reads
    client_env: dict[str, str] = field(default_factory=dict)  # env name -> the client keyword it feeds
    owner: dict[int, Func] = field(default_factory=dict)  # id(node) -> innermost enclosing function

    @property
    def client_vars(self) -> set[str]:
        return {c.var for c in self.clients if c.var}


def py_files(app_dir: Path) -> list[Path]:
    """The app's .py files, skipping virtualenvs, tests and hidden directories."""
    found: list[Path] = []
    for path in sorted(app_dir.rglob("*.py")):
        parts = path.relative_to(app_dir).parts
        if any(p in SKIP_DIRS or p.startswith(".") for p in parts[:-1]):
            continue
        name = parts[-1]
        if name.startswith(("test_", ".")) or name.endswith("_test.py") or name == "conftest.py":
            continue
        found.append(path)
        if len(found) >= MAX_FILES:
            break
    return found


def import_root(app_dir: Path, path: Path, tree: ast.Module | None = None) -> tuple[str, str]:
    """(import root relative to app_dir, dotted module name): climb packages, never above app_dir;
    a file that imports its siblings by their bare names (`import sink`) is its own root."""
    root, parts = path.parent, [path.stem]
    while root != app_dir and (root / "__init__.py").is_file():
        parts.insert(0, root.name)
        root = root.parent
    heads = (
        {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        if tree
        else set()
    )
    heads |= {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and not n.level} if tree else set()  # fmt: skip
    here = path.parent
    if root != here and any(
        (here / f"{h}.py").is_file() or (here / h / "__init__.py").is_file() for h in heads if h
    ):
        root, parts = here, [path.stem]
    return root.relative_to(app_dir).as_posix() or ".", ".".join(parts)


def dotted(node: ast.AST) -> str:
    """`a.b.c` for a Name/Attribute chain, '' otherwise."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = dotted(node.value)
        return f"{base}.{node.attr}" if base else ""
    return ""


def literal(node: ast.AST | None, mod: Module) -> str | None:
    """A string (or number, as text) known statically: a literal, a module constant, an env default."""
    value = _plain(node, mod)
    if value is None and node is not None:
        read = env_read(node, mod)
        value = read[1] if read else None
    return value


def str_seq(node: ast.AST, mod: Module) -> list[str]:
    """The strings of a literal tuple/list/set/dict (keys), or of such a module constant (.items()/.keys())."""
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("items", "keys")
    ):
        node = node.func.value
    value: Any = None
    if isinstance(node, ast.Name):
        value = mod.consts.get(node.id)
    else:
        try:
            value = ast.literal_eval(node)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            return []
    if isinstance(value, tuple | list | set | frozenset | dict):
        return [v for v in value if isinstance(v, str)]
    return []


def _is_environ(node: ast.AST) -> bool:
    return dotted(node) in ("os.environ", "environ")


def env_read(node: ast.AST, mod: Module) -> tuple[str, str | None, bool] | None:
    """(name, default, required) when `node` reads an environment variable."""
    if isinstance(node, ast.Subscript) and _is_environ(node.value):
        name = _plain(node.slice, mod)
        return (name, None, True) if name else None
    if not isinstance(node, ast.Call) or not node.args:
        return None
    f = node.func
    if (isinstance(f, ast.Attribute) and f.attr in ("get", "setdefault") and _is_environ(f.value)) or dotted(
        f
    ) in ("os.getenv", "getenv"):
        name = _plain(node.args[0], mod)
        default = node.args[1] if len(node.args) > 1 else next((k.value for k in node.keywords), None)
        return (name, _plain(default, mod), False) if name else None
    return None


def _plain(node: ast.AST | None, mod: Module) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str | int | float):
        return None if isinstance(node.value, bool) else str(node.value)
    if isinstance(node, ast.Name) and isinstance(mod.consts.get(node.id), str):
        return mod.consts[node.id]
    return None


def template(node: ast.AST, mod: Module, depth: int = 0) -> tuple[str, list[ast.expr]]:
    """A string expression as a template ("doc/{job_id}") and the expressions filling its holes;
    a call to a module function returning an f-string is followed, its parameters mapped to the args."""
    if isinstance(node, ast.JoinedStr):
        text, exprs = "", []
        for v in node.values:
            if isinstance(v, ast.FormattedValue):
                text += "{" + ast.unparse(v.value) + "}"
                exprs.append(v.value)
            elif isinstance(v, ast.Constant):
                text += str(v.value)
        return text, exprs
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        (lt, le), (rt, re_) = template(node.left, mod, depth), template(node.right, mod, depth)
        return lt + rt, le + re_
    value = _plain(node, mod)
    if value is not None:
        return value, []
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in mod.funcs
        and depth < 3
    ):
        f = mod.funcs[node.func.id]
        ret = next((r for r in ast.walk(f) if isinstance(r, ast.Return) and r.value is not None), None)
        if ret is not None and ret.value is not None:
            text, exprs = template(ret.value, mod, depth + 1)
            params = [a.arg for a in f.args.args]
            mapped = [node.args[params.index(e.id)] if isinstance(e, ast.Name) and e.id in params
                      and params.index(e.id) < len(node.args) else e for e in exprs]  # fmt: skip
            return text, mapped
    assert isinstance(node, ast.expr)
    return "{" + ast.unparse(node) + "}", [node]


def walk_in_order(nodes: Iterable[ast.AST]) -> Iterator[ast.AST]:
    """Every node under `nodes`, in source order."""
    found = [n for top in nodes for n in ast.walk(top) if hasattr(n, "lineno")]
    yield from sorted(found, key=lambda n: (n.lineno, n.col_offset))  # type: ignore[attr-defined]


def reach(mod: Module, nodes: Iterable[ast.AST]) -> list[ast.AST]:
    """`nodes` plus the bodies of the module functions they refer to, transitively."""
    seen: dict[str, Func] = {}
    todo, out = list(nodes), []
    while todo:
        top = todo.pop()
        out.append(top)
        for n in ast.walk(top):
            if isinstance(n, ast.Name) and n.id in mod.funcs and n.id not in seen:
                seen[n.id] = mod.funcs[n.id]
                todo.append(mod.funcs[n.id])
    return out


def _is_client_call(node: ast.AST, mod: Module) -> bool:
    if not isinstance(node, ast.Call):
        return False
    name = dotted(node.func)
    head, _, rest = name.partition(".")
    if head in mod.imports:
        name = mod.imports[head][1] + ("." + rest if rest else "")
    return name.split(".")[-1] == "Resonate" or name.endswith(("Resonate.remote", "Resonate.local"))


def _registration(call: ast.Call, mod: Module) -> tuple[str, Func | None] | None:
    """(name, function) of `<client>.register(fn, name=...)`."""
    f = call.func
    if not (isinstance(f, ast.Attribute) and f.attr == "register" and call.args):
        return None
    base = dotted(f.value)
    if base in ("atexit", "codecs") or (mod.client_vars and base not in mod.client_vars):
        return None
    explicit = next((literal(k.value, mod) for k in call.keywords if k.arg == "name"), None)
    arg = call.args[0]
    func = mod.funcs.get(arg.id) if isinstance(arg, ast.Name) else None
    own = mod.imports[arg.id][1] if isinstance(arg, ast.Name) and arg.id in mod.imports else dotted(arg)
    return explicit or own.split(".")[-1] or ast.unparse(arg), func


def _dispatch(call: ast.Call, mod: Module) -> Dispatch | None:
    f = call.func
    if not (isinstance(f, ast.Attribute) and f.attr in DISPATCH_CALLS and call.args):
        return None
    target, recv, via_options = None, f.value, False
    while isinstance(recv, ast.Call) and isinstance(recv.func, ast.Attribute):
        if recv.func.attr == "options":
            via_options = True
            target = next((literal(k.value, mod) for k in recv.keywords if k.arg == "target"), target)
        recv = recv.func.value
    if not (via_options or dotted(recv) in mod.client_vars):
        return None
    name = None
    if len(call.args) > 1:
        fn = call.args[1]
        name = literal(fn, mod) or (fn.id if isinstance(fn, ast.Name) and fn.id in mod.funcs else None)
    pid, exprs = template(call.args[0], mod)
    return Dispatch(f.attr, target, name, pid, exprs, call.args[2:], mod.owner.get(id(call)), call.lineno)


def _is_main_guard(node: ast.AST) -> bool:
    if not (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)):
        return False
    parts = [node.test.left, *node.test.comparators]
    return any(dotted(p) == "__name__" for p in parts) and any(
        isinstance(p, ast.Constant) and p.value == "__main__" for p in parts
    )


def scan(app_dir: Path, path: Path) -> Module:
    """Parse one file (SyntaxError/UnicodeDecodeError/ValueError propagate) and collect its facts."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    root, name = import_root(app_dir, path, tree)
    mod = Module(path=path, rel=path.relative_to(app_dir).as_posix(), root=root, name=name, tree=tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            for a in node.names:
                mod.imports[a.asname or a.name] = (node.module or "", a.name)
        elif isinstance(node, ast.Import):
            mod.uses_sqlite |= any(a.name == "sqlite3" for a in node.names)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for inner in ast.walk(node):
                mod.owner[id(inner)] = node
    for stmt in tree.body:
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
            mod.funcs[stmt.name] = stmt
        elif (
            isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name)
        ):
            try:
                mod.consts[stmt.targets[0].id] = ast.literal_eval(stmt.value)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                read = env_read(stmt.value, mod)
                if read:
                    mod.env_consts[stmt.targets[0].id] = read[0]
                if read and read[1] is not None:
                    mod.consts[stmt.targets[0].id] = read[1]
    assigned: set[int] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Assign | ast.AnnAssign)
            and node.value is not None
            and _is_client_call(node.value, mod)
        ):
            target = node.targets[0] if isinstance(node, ast.Assign) else node.target
            assigned.add(id(node.value))
            mod.clients.append(
                Client(dotted(target).split(".")[-1] or None, _group(node.value, mod), node.lineno)
            )
    for node in ast.walk(tree):
        if _is_client_call(node, mod) and id(node) not in assigned:
            mod.clients.append(Client(None, _group(node, mod), node.lineno))  # type: ignore[attr-defined]
    _collect_calls(mod)
    return mod


def _group(call: ast.AST, mod: Module) -> str | None:
    """The client's group; records which env names feed its connection keywords."""
    assert isinstance(call, ast.Call)
    for k in call.keywords:
        read = env_read(k.value, mod)
        name = read[0] if read else mod.env_consts.get(k.value.id) if isinstance(k.value, ast.Name) else None
        if name and k.arg in ("host", "store_port", "message_source_port"):
            mod.client_env[name] = k.arg
    return next((literal(k.value, mod) for k in call.keywords if k.arg == "group"), "default")


def _collect_calls(mod: Module) -> None:
    for node in walk_in_order([mod.tree]):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for dec in node.decorator_list:
                target = dec.func if isinstance(dec, ast.Call) else dec
                if isinstance(target, ast.Attribute) and target.attr == "register":
                    kws = dec.keywords if isinstance(dec, ast.Call) else []
                    explicit = next((literal(k.value, mod) for k in kws if k.arg == "name"), None)
                    mod.registered.append((explicit or node.name, node, node.lineno))
        read = env_read(node, mod)
        if read:
            mod.env.append(EnvRead(read[0], read[1], read[2], mod.rel, node.lineno))  # type: ignore[attr-defined]
        if isinstance(node, ast.Compare) and any(_is_environ(c) for c in node.comparators):
            name = _plain(node.left, mod)
            if name:
                mod.env.append(EnvRead(name, None, False, mod.rel, node.lineno))
        if not isinstance(node, ast.Call):
            continue
        if dotted(node.func) == "sqlite3.connect":
            mod.uses_sqlite = True
        reg = _registration(node, mod)
        if reg:
            mod.registered.append((reg[0], reg[1], node.lineno))
        f = node.func
        if (
            isinstance(f, ast.Attribute)
            and f.attr == "start"
            and not node.args
            and dotted(f.value) in (mod.client_vars or {"resonate"})
        ):
            mod.starts.append(node.lineno)
        d = _dispatch(node, mod)
        if d:
            mod.dispatches.append(d)
    mains = [s for s in mod.tree.body if _is_main_guard(s)]
    lines = {getattr(n, "lineno", -1) for n in reach(mod, mains) for n in ast.walk(n)}
    mod.starts_under_main = any(line in lines for line in mod.starts)
