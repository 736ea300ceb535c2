"""The app config: how the harness loads an app and talks to it (``harness.toml``, or
``[tool.resonate-harness]`` in the app's ``pyproject.toml``). See the README, "Test your own app".

Only this file is read from the app's directory by the harness itself: the app's code runs in the
harness's agents (worker launcher, Lambda runtime, offline replay), never in the harness.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import HarnessError

CONFIG_FILE = "harness.toml"
PYPROJECT_TABLE = "resonate-harness"
REFERENCE_APP = Path(__file__).resolve().parent.parent.parent / "workflow"
# placeholders a template may use; {job} and {n} only in the submit/status templates
RUN_PLACEHOLDERS = ("host", "store_port", "poll_port", "run_dir", "app_dir")
JOB_PLACEHOLDERS = ("job", "n")
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_]\w*)\}")
_MODULE_FUNC = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")


def expand(template: str, values: dict[str, Any]) -> str:
    """Replace {name} placeholders ({{ and }} are literal braces); KeyError for an unknown name."""

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "{{":
            return "{"
        if m.group(0) == "}}":
            return "}"
        return str(values[m.group(1)])

    return _PLACEHOLDER.sub(one, template)


def placeholders(template: str) -> set[str]:
    return {m.group(1) for m in _PLACEHOLDER.finditer(template) if m.group(1)}


def expand_tree(value: Any, values: dict[str, Any]) -> Any:
    """expand() every string of a JSON-like tree (dict keys included)."""
    if isinstance(value, str):
        return expand(value, values)
    if isinstance(value, dict):
        return {expand(k, values): expand_tree(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_tree(v, values) for v in value]
    return value


def dig(tree: Any, dotted: str) -> Any:
    """The value at a dotted path of a JSON answer (None when absent)."""
    for part in dotted.split(".") if dotted else []:
        if not isinstance(tree, dict):
            return None
        tree = tree.get(part)
    return tree


@dataclass(frozen=True)
class Effects:
    """How to count the app's external effects per job: rows of (job, effect) from a SQLite query
    or from a command printing JSON lines; `function` is the app's call that makes an effect (the
    `after_effect` failpoint fires right after it returns); `kinds` must each appear once per
    completed job (optional)."""

    sqlite: str | None = None
    query: str | None = None
    command: str | None = None
    function: str | None = None
    kinds: tuple[str, ...] = ()


@dataclass(frozen=True)
class AppSpec:
    root: Path
    config: Path
    handler: str  # module:function, imported once per Lambda instance
    worker: str  # script path relative to root, run as __main__ in each worker
    path: tuple[str, ...] = (".",)  # import roots relative to root
    env: dict[str, str] = field(default_factory=dict)
    submit_method: str = "POST"
    submit_path: str = "/process-document"
    submit_body: Any = None
    submit_headers: dict[str, str] = field(default_factory=dict)
    status_method: str = "GET"
    status_path: str = "/status/{job}"
    done_field: str = "status"
    done_equals: Any = "done"
    result_field: str = "result"
    missing_status: int = 404  # what the status route answers for a job it does not know
    resources: tuple[str, ...] = ()  # API Gateway resources; derived from the routes when empty
    effects: Effects | None = None
    oracle: str | None = None  # module:function computing a job's expected value from its body
    requirements: str | None = None  # dependency file for the Docker image (relative to root)
    python: str | None = None  # interpreter for the app's processes (process backend)

    # --- loading ----------------------------------------------------------------------------
    @classmethod
    def load(cls, app_dir: Path | str | None = None) -> AppSpec:
        root = Path(app_dir).expanduser().resolve() if app_dir else REFERENCE_APP
        if not root.is_dir():
            raise HarnessError("--app DIR naming a directory with an app", seen=f"{root} is not a directory")
        table, config = _read_table(root)
        spec = _from_table(root, config, table)
        spec.validate()
        return spec

    def validate(self) -> None:
        where = str(self.config)
        if not _MODULE_FUNC.fullmatch(self.handler):
            raise HarnessError(f"[app] handler = 'module:function' in {where}", seen=repr(self.handler))
        script = self.root / self.worker
        if not script.is_file():
            raise HarnessError(f"[app] worker naming the worker script in {where}", seen=f"no file {script}",
                               hint="harness init DIR drafts the config from the app's files")  # fmt: skip
        for p in self.path:
            if not (self.root / p).is_dir():
                raise HarnessError(f"[app] path entries that are directories under {self.root}", seen=p)
        for name, value in self.env.items():
            bad = placeholders(value) - set(RUN_PLACEHOLDERS)
            if bad:
                raise HarnessError(f"[app.env] placeholders among {{{'} {'.join(RUN_PLACEHOLDERS)}}} in {where}",
                                   seen=f"{name} = {value!r} uses {{{', '.join(sorted(bad))}}}")  # fmt: skip
        known = set(RUN_PLACEHOLDERS) | set(JOB_PLACEHOLDERS)
        for what, tree in (("[submit]", [self.submit_path, self.submit_body, self.submit_headers]),
                           ("[status]", [self.status_path])):  # fmt: skip
            bad = _tree_placeholders(tree) - known
            if bad:
                raise HarnessError(f"{what} placeholders among {{{'} {'.join(sorted(known))}}} in {where}",
                                   seen=f"{{{', '.join(sorted(bad))}}}")  # fmt: skip
        if "job" not in _tree_placeholders([self.submit_path, self.submit_body, self.submit_headers]):
            raise HarnessError(f"a [submit] template that carries the job id ({{job}}) in {where}",
                               seen="no {job} in path, body or headers")  # fmt: skip
        if "{job}" not in self.status_path:
            raise HarnessError(f"[status] path with {{job}} in {where}", seen=repr(self.status_path))
        for key, value in (
            ("oracle", self.oracle),
            ("effects.function", self.effects and self.effects.function),
        ):
            if value and not _MODULE_FUNC.fullmatch(value):
                raise HarnessError(f"{key} = 'module:function' in {where}", seen=repr(value))
        e = self.effects
        if e is not None and not (e.command or (e.sqlite and e.query)):
            raise HarnessError(f"[effects] with sqlite + query, or command, in {where}", seen="neither")

    # --- what the harness derives from it ---------------------------------------------------
    @property
    def handler_module(self) -> str:
        return self.handler.split(":")[0]

    @property
    def handler_function(self) -> str:
        return self.handler.split(":")[1]

    @property
    def worker_script(self) -> Path:
        return self.root / self.worker

    def import_roots(self, root: Path | None = None) -> list[str]:
        """Absolute import roots (under `root`, the app's directory as a member sees it)."""
        base = root or self.root
        return [str((base / p).resolve()) if root is None else str(base / p) for p in self.path]

    def gateway_resources(self) -> list[str]:
        """API Gateway resources: declared, else the submit path and the status path with {jobId}."""
        if self.resources:
            return list(self.resources)
        return [self.submit_path.split("?")[0], self.status_path.replace("{job}", "{jobId}").split("?")[0]]

    def app_env(self, values: dict[str, Any]) -> dict[str, str]:
        """The [app.env] table with its placeholders expanded."""
        return {k: expand(v, values) for k, v in self.env.items()}

    def request(self, job: str, n: int) -> tuple[str, str, dict[str, str], Any]:
        """(method, path, headers, JSON body) of the submission of job `job`, the run's n-th."""
        values = {"job": job, "n": n}
        body = expand_tree(self.submit_body, values) if self.submit_body is not None else None
        return (self.submit_method, expand(self.submit_path, values),
                expand_tree(self.submit_headers, values), body)  # fmt: skip

    def status_request(self, job: str) -> tuple[str, str]:
        return self.status_method, expand(self.status_path, {"job": job, "n": 0})

    def is_done(self, answer: dict[str, Any]) -> bool:
        return dig(answer, self.done_field) == self.done_equals

    def result_of(self, answer: dict[str, Any]) -> Any:
        return dig(answer, self.result_field)

    def summary(self) -> dict[str, Any]:
        """What results.json records of the app."""
        return {"dir": str(self.root), "config": str(self.config), "handler": self.handler,
                "worker": self.worker, "effects": bool(self.effects), "oracle": self.oracle}  # fmt: skip

    def digest_inputs(self) -> str:
        return json.dumps(self.summary(), sort_keys=True)


def _tree_placeholders(tree: Any) -> set[str]:
    if isinstance(tree, str):
        return placeholders(tree)
    if isinstance(tree, dict):
        return (
            set().union(*(placeholders(k) | _tree_placeholders(v) for k, v in tree.items()))
            if tree
            else set()
        )
    if isinstance(tree, list):
        return set().union(*(_tree_placeholders(v) for v in tree)) if tree else set()
    return set()


def _read_table(root: Path) -> tuple[dict[str, Any], Path]:
    toml_path, pyproject = root / CONFIG_FILE, root / "pyproject.toml"
    for path in (toml_path, pyproject):
        if not path.is_file():
            continue
        try:
            data = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise HarnessError(f"a readable TOML file at {path}", seen=str(e)) from None
        if path == toml_path:
            return data, path
        table = data.get("tool", {}).get(PYPROJECT_TABLE)
        if isinstance(table, dict):
            return table, path
    raise HarnessError(f"an app config in {root} ({CONFIG_FILE}, or [tool.{PYPROJECT_TABLE}] in pyproject.toml)",
                       seen="none", hint=f"harness init {root}")  # fmt: skip


def _from_table(root: Path, config: Path, t: dict[str, Any]) -> AppSpec:
    def table(name: str, parent: dict[str, Any] = t) -> dict[str, Any]:
        value = parent.get(name, {})
        if not isinstance(value, dict):
            raise HarnessError(f"[{name}] to be a table in {config}", seen=type(value).__name__)
        return value

    def string(tbl: dict[str, Any], key: str, default: str | None = None, where: str = "") -> str | None:
        value = tbl.get(key, default)
        if value is not None and not isinstance(value, str):
            raise HarnessError(f"{where}{key} to be a string in {config}", seen=repr(value))
        return value

    app, submit, status = table("app"), table("submit"), table("status")
    unknown = sorted(set(t) - {"app", "submit", "status", "effects", "oracle", "gateway", "docker"})
    if unknown:
        raise HarnessError(f"known tables in {config} (app, submit, status, effects, oracle, gateway, docker)",
                           seen=", ".join(unknown))  # fmt: skip
    handler, worker = string(app, "handler", where="[app] "), string(app, "worker", where="[app] ")
    if not handler or not worker:
        raise HarnessError(f"[app] handler and worker in {config}", seen=f"handler={handler!r} worker={worker!r}",
                           hint=f"harness init {root}")  # fmt: skip
    path = app.get("path", ["."])
    if isinstance(path, str):
        path = [path]
    if not isinstance(path, list) or not all(isinstance(p, str) for p in path):
        raise HarnessError(f"[app] path = a list of directories in {config}", seen=repr(path))
    env = table("env", app)
    if not all(isinstance(v, str) for v in env.values()):
        raise HarnessError(f"[app.env] values to be strings in {config}", seen=repr(env))
    done = status.get("done", {"field": "status", "equals": "done"})
    if not isinstance(done, dict) or "field" not in done or "equals" not in done:
        raise HarnessError(f"[status] done = {{ field = ..., equals = ... }} in {config}", seen=repr(done))
    effects = None
    if "effects" in t:
        e = table("effects")
        kinds = e.get("kinds", [])
        if not isinstance(kinds, list) or not all(isinstance(k, str) for k in kinds):
            raise HarnessError(f"[effects] kinds = a list of strings in {config}", seen=repr(kinds))
        effects = Effects(sqlite=string(e, "sqlite", where="[effects] "), query=string(e, "query", where="[effects] "),
                          command=string(e, "command", where="[effects] "),
                          function=string(e, "function", where="[effects] "), kinds=tuple(kinds))  # fmt: skip
    oracle = t.get("oracle")
    if isinstance(oracle, dict):
        oracle = oracle.get("expected")
    if oracle is not None and not isinstance(oracle, str):
        raise HarnessError(f"oracle = 'module:function' in {config}", seen=repr(oracle))
    gateway = table("gateway")
    resources = gateway.get("resources", [])
    if not isinstance(resources, list) or not all(
        isinstance(r, str) and r.startswith("/") for r in resources
    ):
        raise HarnessError(f"[gateway] resources = a list of paths in {config}", seen=repr(resources))
    headers = submit.get("headers", {})
    if not isinstance(headers, dict):
        raise HarnessError(f"[submit] headers to be a table in {config}", seen=repr(headers))
    missing = status.get("missing", 404)
    if isinstance(missing, bool) or not isinstance(missing, int):
        raise HarnessError(f"[status] missing = an HTTP status in {config}", seen=repr(missing))
    return AppSpec(
        root=root, config=config, handler=handler, worker=worker, path=tuple(path), env=dict(env),
        submit_method=(string(submit, "method", "POST") or "POST").upper(),
        submit_path=string(submit, "path", "/process-document") or "/",
        submit_body=submit.get("body"), submit_headers=dict(headers),
        status_method=(string(status, "method", "GET") or "GET").upper(),
        status_path=string(status, "path", "/status/{job}") or "/",
        done_field=str(done["field"]), done_equals=done["equals"],
        result_field=string(status, "result", "result") or "", missing_status=missing,
        resources=tuple(resources), effects=effects, oracle=oracle,
        requirements=string(table("docker"), "requirements", where="[docker] "),
        python=string(app, "python", where="[app] "),
    )  # fmt: skip
