"""`harness init [DIR]`: draft the app config (harness.toml) from the app's .py files.

The files are parsed with `ast`, never imported or run. Every inference goes into the file as a
"# guessed: ..." comment and into the printed summary, which ends with what the user must check.
"""

from __future__ import annotations

import ast
import json
import re
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.app import routes as rt
from harness.app.scan import Dispatch, Module, py_files, scan
from harness.app.spec import CONFIG_FILE, PYPROJECT_TABLE, RUN_PLACEHOLDERS, _from_table
from harness.errors import HarnessError

# what the harness exports to every app process: an app reading these needs no [app.env] entry
SDK_ENV = {"RESONATE_HOST": "http://{host}", "RESONATE_HOST_STORE": "http://{host}",
           "RESONATE_HOST_MESSAGE_SOURCE": "http://{host}", "RESONATE_PORT_STORE": "{store_port}",
           "RESONATE_PORT_MESSAGE_SOURCE": "{poll_port}"}  # fmt: skip
KEYWORD_ENV = {"host": "http://{host}", "store_port": "{store_port}", "message_source_port": "{poll_port}"}
LOOKED_FOR_HANDLER = (
    "a module-level function taking (event, context), preferably named lambda_handler or handler"
)
LOOKED_FOR_WORKER = ("a script that creates a Resonate client with a group (Resonate.remote(group=...)), registers "
                     "functions (@resonate.register, resonate.register(fn)) and calls .start() under "
                     "if __name__ == '__main__'")  # fmt: skip


@dataclass
class Draft:
    text: str  # the harness.toml
    guessed: list[tuple[str, str, str]] = field(default_factory=list)  # (what, value, why)
    warnings: list[str] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)
    files: int = 0


# --- finding the handler and the worker ---------------------------------------------------------
def _handler(mods: list[Module]) -> tuple[Module, str, str] | None:
    best: tuple[int, int, Module, str, str] | None = None
    for order, mod in enumerate(mods):
        for name, f in mod.funcs.items():
            pos = [a.arg for a in f.args.posonlyargs + f.args.args]
            if not isinstance(f, ast.FunctionDef) or len(pos) != 2 or pos[0] in ("ctx", "self", "cls"):
                continue
            eventish, contextish = "event" in pos[0].lower(), "context" in pos[1].lower() or pos[1] == "ctx"
            named = {"lambda_handler": 30, "handler": 20}.get(name, 5 if name.endswith("handler") else 0)
            if not named and not (eventish and contextish):
                continue
            score = (
                named + 10 * eventish + 5 * contextish + 10 * bool(mod.clients) + 10 * bool(mod.dispatches)
            )
            why = [f"{mod.rel}:{f.lineno} {name}({', '.join(pos)})"]
            if mod.clients:
                why.append(f'its module creates a Resonate client (group "{mod.clients[0].group}")')
            if mod.dispatches:
                why.append(f"calls .{mod.dispatches[0].call}")
            if best is None or (score, -order) > (best[0], best[1]):
                best = score, -order, mod, name, ", ".join(why)
    return (best[2], best[3], best[4]) if best else None


def _worker(mods: list[Module], hmod: Module) -> tuple[Module, str] | None:
    best: tuple[int, Module] | None = None
    for mod in mods:
        if not mod.clients or not (mod.registered or mod.starts):
            continue
        score = (10 * bool(mod.registered) + 10 * bool(mod.starts) + 10 * mod.starts_under_main - 20 * (mod is hmod)
                 + 5 * any(c.group != "default" for c in mod.clients) + 3 * ("worker" in mod.rel.lower()))  # fmt: skip
        if best is None or score > best[0]:
            best = score, mod
    if best is None:
        return None
    mod = best[1]
    regs = ", ".join(dict.fromkeys(r[0] for r in mod.registered)) or "nothing"
    start = (
        "calls .start() under __main__"
        if mod.starts_under_main
        else "calls .start()"
        if mod.starts
        else "no .start()"
    )
    return mod, f'{mod.rel}: client group "{mod.clients[0].group}", registers {regs}, {start}'


def _steps(mods: list[Module], wmod: Module, name: str) -> int | None:
    """How many `yield ctx.run(...)`-like checkpoints the registered function `name` has."""
    func = next((f for n, f, _ in wmod.registered if n == name and f is not None), None)
    if func is None:
        src = next((wmod.imports[a] for a in wmod.imports if wmod.imports[a][1] == name), None)
        other = next((m for m in mods if src and m.name.split(".")[-1] == src[0].split(".")[-1]), None)
        func = other.funcs.get(name) if other and src else None
    if func is None:
        return None
    return sum(1 for n in ast.walk(func) if isinstance(n, ast.Yield) and isinstance(n.value, ast.Call)
               and isinstance(n.value.func, ast.Attribute) and n.value.func.attr in ("run", "rpc", "lfc", "rfc"))  # fmt: skip


# --- the body, the env ---------------------------------------------------------------------------
def _placeholder(f: rt.Field, job: str | None) -> Any:
    low = f.name.lower()
    if f.name == job:
        return "{job}"
    if f.numeric:
        return int(float(f.default)) if f.default and re.fullmatch(r"-?\d+(\.\d+)?", f.default) else 1
    if f.default is not None:
        return f.default.replace("{", "{{").replace("}", "}}")
    if any(w in low for w in ("url", "uri", "link")):
        return "https://example.com/{job}"
    if "email" in low:
        return "user-{n}@example.com"
    return f.name.replace("{", "{{").replace("}", "}}") + "-{n}"


def _env_value(name: str, default: str | None, keyword: str | None) -> tuple[str | None, str]:
    """(the [app.env] value for a name the app reads, why), None when it is not a connection setting."""
    if keyword:
        value = KEYWORD_ENV[keyword]
        if keyword == "host" and default and not default.startswith("http"):
            value = "{host}"
        return value, f"it feeds the Resonate client's {keyword}="
    u = name.upper()
    if "PORT" in u and any(w in u for w in ("MSG", "MESSAGE", "POLL", "SSE")):
        return "{poll_port}", "its name says message-source port"
    if "PORT" in u and any(w in u for w in ("STORE", "API", "HTTP")):
        return "{store_port}", "its name says store (API) port"
    if "HOST" in u and "RESONATE" in u:
        http = default is None or default.startswith("http")
        return ("http://{host}" if http else "{host}"), f"its name says Resonate host (default {default!r})"
    return None, ""


def _env(mods: list[Module], d: Draft) -> list[str]:
    reads: dict[str, list[Any]] = {}  # name -> [default, required, where, keyword]
    for m in mods:
        for e in m.env:
            r = reads.setdefault(e.name, [None, False, [], None])
            r[0] = r[0] if r[0] is not None else e.default
            r[1] |= e.required
            r[2].append(f"{e.file}:{e.line}")
            r[3] = r[3] or m.client_env.get(e.name)
    lines = [
        f"# the names this app reads itself; placeholders: {' '.join('{' + p + '}' for p in RUN_PLACEHOLDERS)}"
    ]
    exported, yours = [], []
    for name, (default, required, where, keyword) in sorted(reads.items()):
        if name.startswith("HARNESS_"):
            continue
        value, why = _env_value(name, default, keyword)
        if name in SDK_ENV and value in (None, SDK_ENV[name]):
            exported.append(name)
            continue
        seen = f"read in {', '.join(where[:3])}" + (f" (default {default!r})" if default is not None else "")
        if value is None:
            note = seen + (" with no default: the app fails without it" if required else "")
            start = default if default is not None else _suggest(name)
            if _file_like(name) and isinstance(default, str) and default and not default.startswith("/"):
                start, note = (
                    "{run_dir}/" + Path(default).name,
                    note + ": the default is relative to the app's directory",
                )
            yours.append(f"# {name} = {_s(start)}  # {note}")
            if required:
                d.checks.append(f"{name} is read with no default ({where[0]}): set it in [app.env]"
                                ' (a file the run owns: "{run_dir}/...")')  # fmt: skip
            continue
        d.guessed.append(("env", f"{name} = {value}", f"{seen}; {why}"))
        lines += [f"# guessed: {seen}; {why}", f"{name} = {_s(value)}"]
    if exported:
        lines.append("# no entry needed, the harness exports them: "
                     + ", ".join(f"{n} = {_s(SDK_ENV[n])}" for n in exported))  # fmt: skip
    if yours:
        lines += ["# set these yourself if needed:", *yours]
        names = ", ".join(y.split()[1] for y in yours)
        d.guessed.append(("env", "not set", f"yours to set if needed: {names}"))
    return lines


def _file_like(name: str) -> bool:
    return any(w in name.lower() for w in ("db", "sink", "file", "path", "dir", "sqlite"))


def _suggest(name: str) -> str:
    """A value to start from for a name read with no default."""
    return "{run_dir}/" + name.lower() if _file_like(name) else ""


# --- the draft -------------------------------------------------------------------------------------
def _s(value: Any) -> str:
    """A TOML value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_s(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_s(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)


def _key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k, ensure_ascii=False)


def _path_of(route: rt.Route, query: list[str]) -> str:
    if route.kind == "template":
        return re.sub(r"\{[^}]*\}", "{job}", route.literal, count=1)
    if route.kind == "prefix":
        return route.literal.rstrip("/") + "/{job}"
    return f"{route.literal}?{query[0]}={{job}}" if query else route.literal.rstrip("/") + "/{job}"


def _pick_routes(hmod: Module, d: Draft) -> tuple[rt.Route | None, rt.Route | None, dict[int, set[str]]]:
    found = rt.routes(hmod)
    feats = {id(r): rt.features(hmod, r.nodes) for r in found}
    submit = min(found, default=None, key=lambda r: ("dispatch" not in feats[id(r)], r.method not in ("POST", "PUT"),
                                                     r.kind != "exact", r.line))  # fmt: skip
    rest = [r for r in found if r is not submit and ("get" in feats[id(r)] or r.kind != "exact")]
    status = min(rest, default=None, key=lambda r: ("get" not in feats[id(r)], r.method not in ("GET", None),
                                                    r.kind == "exact", r.line))  # fmt: skip
    if submit is not None and "dispatch" not in feats[id(submit)]:
        d.warnings.append(
            f"no route of the handler was seen reaching a dispatch; [submit] {submit.literal} is a guess"
        )
    return submit, status, feats


def draft(app_dir: Path) -> Draft:
    """Read the app's files and draft its harness.toml (HarnessError when no handler or worker is found)."""
    if not app_dir.is_dir():
        raise HarnessError(
            "harness init DIR naming the app's directory", seen=f"{app_dir} is not a directory"
        )
    d = Draft(text="")
    files = py_files(app_dir)
    mods: list[Module] = []
    for path in files:
        try:
            mods.append(scan(app_dir, path))
        except (SyntaxError, UnicodeDecodeError, ValueError) as e:
            d.warnings.append(
                f"{path.relative_to(app_dir)} skipped: it does not parse ({e.__class__.__name__})"
            )
    d.files = len(mods)
    if not mods:
        raise HarnessError("an app directory with .py files (.venv, venv, site-packages, tests and hidden dirs skipped)",
                           seen=f"{'no' if not files else 'no parsable'} .py files in {app_dir}")  # fmt: skip
    h = _handler(mods)
    if h is None:
        raise HarnessError(
            f"a Lambda handler: {LOOKED_FOR_HANDLER}", seen=f"none in the {len(mods)} .py files of {app_dir}"
        )
    hmod, hfunc, hwhy = h
    w = _worker(mods, hmod)
    if w is None:
        raise HarnessError(f"a worker script: {LOOKED_FOR_WORKER}",
                           seen=f"none in the {len(mods)} .py files of {app_dir} (handler: {hmod.rel})")  # fmt: skip
    wmod, wwhy = w
    handler = f"{hmod.name}:{hfunc}"
    d.guessed += [("handler", handler, hwhy), ("worker", wmod.rel, wwhy)]
    if not wmod.starts:
        d.warnings.append(
            f"{wmod.rel} never calls <client>.start(): a worker that does not start takes no work"
        )
    dispatch = _dispatch(hmod, wmod, mods, d)
    app = _app_lines(hmod, wmod, handler, d)
    submit_lines, status_lines, gateway_lines = _http(hmod, dispatch, d)
    text = "\n".join([
        "# harness.toml drafted by `harness init` from the app's .py files (parsed, never imported or run).",
        '# Each "# guessed:" line says what was inferred from where; check them and the list at the end.',
        "", *app, "", "[app.env]", *_env(mods, d), "", *submit_lines, "", *status_lines,
        *(["", *gateway_lines] if gateway_lines else []), "", *_optional(mods), "",
    ])  # fmt: skip
    d.checks += ["the body fields' values: the harness sends [submit] body as written, {job} = its job id, "
                 "{n} = the job's index (make them pass your handler's validation)",
                 "whether [status] done matches what your handler returns for a finished job, and result where "
                 "the workflow's value is in that answer",
                 "declare [effects] if your steps write to an external system; without it duplicate effects are "
                 "not checked",
                 "declare [oracle] if the workflow's value can be computed from the request; without it the "
                 "value is only compared across runs of the same job"]  # fmt: skip
    d.text = text + "\n# check before running:\n" + "".join(f"# - {c}\n" for c in d.checks)
    return d


def _dispatch(hmod: Module, wmod: Module, mods: list[Module], d: Draft) -> Dispatch | None:
    dispatch = next(
        (x for x in hmod.dispatches if x.name or x.target), hmod.dispatches[0] if hmod.dispatches else None
    )
    worker_groups = {c.group for c in wmod.clients}
    if dispatch is None:
        d.warnings.append(
            f"{hmod.rel} dispatches nothing the harness can see (no .begin_rpc/.rpc on a Resonate client)"
        )
        return None
    target = dispatch.target or "default"
    group = target.split("://", 1)[-1].split("@", 1)[-1].split("/", 1)[0] if "://" in target else target
    steps = _steps(mods, wmod, dispatch.name) if dispatch.name else None
    d.guessed.append(("dispatch", f"{dispatch.name or '?'} -> {target}",
                      f'{hmod.rel}:{dispatch.line} .{dispatch.call}, promise id "{dispatch.pid}"'
                      + (f"; {dispatch.name} has {steps} checkpoint(s) (yield ctx.run)" if steps else "")))  # fmt: skip
    if None not in worker_groups and group not in worker_groups:
        d.warnings.append(f"the Lambda dispatches to {target} (group {group!r}) but the worker joins "
                          f"{', '.join(repr(g) for g in sorted(worker_groups))}: no worker will take the work")  # fmt: skip
    registered = {r[0] for r in wmod.registered}
    if dispatch.name and registered and dispatch.name not in registered:
        d.warnings.append(
            f"the Lambda invokes {dispatch.name!r} but {wmod.rel} registers {', '.join(sorted(registered))}"
        )
    return dispatch


def _app_lines(hmod: Module, wmod: Module, handler: str, d: Draft) -> list[str]:
    roots = list(dict.fromkeys([hmod.root, wmod.root]))
    lines = ["[app]", f"# guessed: handler: {d.guessed[0][2]}", f"handler = {_s(handler)}",
             f"# guessed: worker: {d.guessed[1][2]}", f"worker = {_s(wmod.rel)}"]  # fmt: skip
    if roots == ["."]:
        return [*lines, '# path = ["."]  # import roots, relative to this directory (default ".")']
    d.guessed.append(("path", ", ".join(roots), "the handler/worker live under a package or a src/ layout"))
    return [
        *lines,
        f"# guessed: import roots: {', '.join(roots)} (package or src/ layout)",
        f"path = {_s(roots)}",
    ]


def _http(hmod: Module, dispatch: Dispatch | None, d: Draft) -> tuple[list[str], list[str], list[str]]:
    submit, status, feats = _pick_routes(hmod, d)
    fields = rt.body_fields(hmod)
    job, how = rt.job_field(hmod, dispatch, fields)
    if submit is None:
        d.warnings.append(f"{hmod.rel} compares no path literal; [submit] POST / is a guess")
        submit = rt.Route("/", "exact", "POST", 0)
    spath = _path_of(submit, []) if submit.kind != "exact" else submit.literal
    method = submit.method or "POST"
    why = f"{hmod.rel}:{submit.line} compares {submit.literal!r}" if submit.line else "no route seen"
    why += f", method {submit.method}" if submit.method else ", no method compared: POST assumed"
    d.guessed.append(
        (
            "submit",
            f"{method} {spath}",
            why + ("; it dispatches" if "dispatch" in feats.get(id(submit), ()) else ""),
        )
    )
    body: dict[str, Any] = {f.name: _placeholder(f, job) for f in fields}
    if not body and "{job}" not in spath:
        body, how = {"jobId": "{job}"}, "no body field was seen"
        d.warnings.append(
            f'no request-body field was seen in {hmod.rel}: drafted body = {{ jobId = "{{job}}" }}'
        )
    if body:
        d.guessed.append(("body", ", ".join(f"{k}={v}" for k, v in body.items()),
                          f"fields read from the request body; {job or 'jobId'} carries the job id: {how}"))  # fmt: skip
    sub = ["[submit]", f"# guessed: {why}", f"method = {_s(method)}", f"path = {_s(spath)}"]
    if body:
        sub += [
            f"# guessed: body fields read in {hmod.rel}; {job or 'jobId'} carries the job id: {how}",
            f"body = {_s(body)}",
        ]
    query = rt.param_keys(hmod, "queryStringParameters")
    if status is None:
        d.warnings.append(
            f"no status route was found in {hmod.rel}: [status] GET /status/{{job}} is a placeholder"
        )
        status = rt.Route("/status/", "prefix", "GET", 0)
    sfeats = feats.get(id(status), set())
    stpath, smethod = _path_of(status, query), status.method or "GET"
    swhy = (f"{hmod.rel}:{status.line} compares {', '.join(repr(x) for x in [status.literal, *status.also])}" + (", reads a promise" if "get" in sfeats else "")
            if status.line else "no status route seen")  # fmt: skip
    d.guessed.append(("status", f"{smethod} {stpath}", swhy))
    st = (
        ["[status]", f"# guessed: {swhy}"]
        + ([f"method = {_s(smethod)}"] if smethod != "GET" else [])
        + [f"path = {_s(stpath)}"]
    )
    done = rt.done_answer(rt.reach(hmod, status.nodes)) or rt.done_answer([hmod.tree])
    if done:
        dwhy = f"the answer at {hmod.rel}:{done.line} has {done.field} = {done.equals!r}"
        result = done.result or "result"
        dwhy += (
            f" and the value under {result!r}"
            if done.result
            else "; no value key seen: result = 'result' assumed"
        )
    else:
        dwhy, result = (
            "no answer with a status like 'done' seen: the default status == 'done' assumed",
            "result",
        )
        d.warnings.append("the status answer was not found; [status] done and result are the defaults")
    d.guessed.append(
        (
            "done",
            f"{done.field if done else 'status'} == {done.equals if done else 'done'!r}, result {result!r}",
            dwhy,
        )
    )
    st += [f"# guessed: {dwhy}", f"done = {_s({'field': done.field if done else 'status', 'equals': done.equals if done else 'done'})}",
           f"result = {_s(result)}"]  # fmt: skip
    gw: list[str] = []
    params = rt.param_keys(hmod)
    if (
        status.kind == "template"
        or (status.line and "params" in sfeats)
        or any(r.kind == "template" for r in [submit])
    ):
        res = (
            status.literal
            if status.kind == "template"
            else status.literal.rstrip("/") + "/{" + (params[0] if params else "jobId") + "}"
        )
        resources = list(dict.fromkeys([submit.literal.split("?")[0], res]))
        gwhy = (
            "the handler compares the resource"
            if status.kind == "template"
            else f"the handler reads pathParameters {params[:1]}"
        )
        d.guessed.append(("gateway", ", ".join(resources), gwhy))
        gw = ["[gateway]", f"# guessed: API resources: {gwhy}", f"resources = {_s(resources)}"]
    return sub, st, gw


def _optional(mods: list[Module]) -> list[str]:
    sqlite = [m.rel for m in mods if m.uses_sqlite]
    oracle = next((f"{m.name}:{n}" for m in mods for n in m.funcs if n.startswith("expected")), None)
    return [
        "# [effects]  # optional: how to count the app's external effects per job; without it duplicate",
        "#            # effects are not checked (the exactly_once effect part is absent, never ok)",
        *([f"# hint: {', '.join(sqlite)} use(s) sqlite3"] if sqlite else []),
        '# sqlite = "{run_dir}/sink.db"          # a SQLite file the app writes its effects to, and',
        '# query = "SELECT job_id AS job, kind AS effect FROM effects"  # one row (job, effect) per effect',
        '# command = "python count_effects.py"   # or: a command printing JSON lines {"job": ..., "effect": ...}',
        '# function = "module:function"          # the app\'s call that makes an effect (after_effect failpoint)',
        '# kinds = ["stored", "notified"]        # effects every completed job must have exactly once',
        "",
        "# [oracle]  # optional: the workflow's expected value, computed from the request body",
        f"# expected = {_s(oracle or 'module:function')}" + ("  # guessed from its name" if oracle else ""),
    ]


def run(app_dir: Path | str, *, force: bool = False, stdout: bool = False) -> int:
    """The `harness init` command: draft, check it loads, write (or print) it, summarize."""
    root = Path(app_dir).expanduser().resolve()
    target = root / CONFIG_FILE
    if target.exists() and not force and not stdout:
        raise HarnessError(f"no {CONFIG_FILE} in {root} yet", seen=f"{target} exists",
                           hint=f"harness init --force {app_dir} to overwrite it, or --stdout to print the draft")  # fmt: skip
    d = draft(root)
    try:
        _from_table(root, target, tomllib.loads(d.text)).validate()
    except (HarnessError, tomllib.TOMLDecodeError) as e:
        raise HarnessError(
            "a draft that loads", seen=str(e), hint="harness init --stdout DIR, then fix it by hand"
        ) from None
    out = sys.stderr if stdout else sys.stdout
    if stdout:
        sys.stdout.write(d.text)
    else:
        target.write_text(d.text)
    print(f"harness init: read {d.files} .py files of {root} (parsed, never run)", file=out)
    width = max(len(w) for w, _, _ in d.guessed)
    for what, value, why in d.guessed:
        print(f"  guessed {what:{width}}  {value}  ({why})", file=out)
    if (root / "pyproject.toml").is_file() and f"[tool.{PYPROJECT_TABLE}]" in (
        root / "pyproject.toml"
    ).read_text():
        d.warnings.append(f"{CONFIG_FILE} takes precedence over [tool.{PYPROJECT_TABLE}] in pyproject.toml")
    for w in d.warnings:
        print(f"  warning: {w}", file=out)
    print("check before running:", file=out)
    for c in d.checks:
        print(f"  - {c}", file=out)
    print(
        f"{'printed the draft' if stdout else f'wrote {target}'}; then: harness run smoke --app {app_dir}",
        file=out,
    )
    return 0
