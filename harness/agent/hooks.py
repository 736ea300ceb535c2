"""Instrumentation at the SDK boundary: what the harness learns about any app from its processes.

Installed by the worker launcher and the Lambda runtime before the app's code is imported. It
patches these resonate-sdk 0.6 internals (SUPPORTED; ``check()`` refuses anything else):

- ``scheduler.Lfnc.__post_init__``: every function run through ``ctx.run``/``ctx.lfi`` gets a
  wrapper that records ``start``/``end`` (root promise id, child promise id, position, function,
  the SDK's attempt, an execution id, a digest of the inputs, the value) and fires failpoints.
- ``coroutine.Coroutine.send``: every entry of a generator body (the workflow, or a generator
  sub-step) is recorded (``body``), with each step it asks for (``ask``) and its end (``body-end``);
  while the body runs, calls from it into the app's own files are recorded (``call``), so a step
  called directly instead of through ``ctx.run`` is seen re-running on replay.
- ``bridge.Bridge.rpc`` / ``Bridge.run``: what a client dispatched (``dispatch``: promise id,
  function, target, whether the server answered with a new promise), attributed to the Lambda
  invocation running it; ``Bridge.get``: which promise a status poll read (``read``).
- ``stores.remote.RemoteStore.call``: a response hook, to tell a new promise (201) from an
  existing one (200).
- ``resonate.Resonate.__init__``: the lease ttl the harness asks for (HARNESS_TTL) replaces the
  app's; the client is recorded (``client``).
- the app's declared effect function (HARNESS_EFFECT_FUNCTION, ``module:function``), wrapped when
  its module is imported: ``effect`` records and the ``after_effect`` failpoint.

Nothing here raises into the app: a hook that fails logs once and lets the app's call through.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.abc
import importlib.machinery
import json
import os
import sys
import threading
import uuid
from importlib import metadata
from typing import Any

from harness.agent import failpoints, ledger

SUPPORTED = ((0, 6, 5), (0, 7, 0))  # resonate-sdk >= 0.6.5, < 0.7
SUPPORTED_TEXT = "resonate-sdk >=0.6.5,<0.7"
TTL_ENV = "HARNESS_TTL"
APP_ROOT_ENV = "HARNESS_APP_ROOT"
EFFECT_ENV = "HARNESS_EFFECT_FUNCTION"
TRACE_ENV = "HARNESS_TRACE_BODY"  # "0" turns the workflow-body call tracing off
MAX_VALUE_CHARS = 16_384

_local = threading.local()  # .step: the step execution running on this thread; .statuses
_invocation: dict[str, Any] = {}  # the Lambda invocation being served (one at a time per instance)
_installed = False


# --- helpers ------------------------------------------------------------------------------------
def sdk_version() -> str:
    try:
        return metadata.version("resonate-sdk")
    except metadata.PackageNotFoundError:
        return "not installed"


def _parse(version: str) -> tuple[int, ...]:
    parts = []
    for p in version.split(".")[:3]:
        digits = "".join(c for c in p if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def check() -> list[str]:
    """Why the hooks cannot be installed here (empty: they can)."""
    version = sdk_version()
    if version == "not installed":
        return [f"resonate-sdk is not installed in {sys.executable}"]
    if not SUPPORTED[0] <= _parse(version) < SUPPORTED[1]:
        return [f"resonate-sdk {version} is not supported ({SUPPORTED_TEXT})"]
    problems = []
    try:
        from resonate import bridge, coroutine, resonate, scheduler
        from resonate.stores import remote
    except ImportError as e:
        return [f"resonate-sdk {version} lacks a module the hooks need: {e}"]
    for owner, attr in ((scheduler.Lfnc, "__post_init__"), (scheduler.Coro, "__post_init__"),
                        (coroutine.Coroutine, "send"), (bridge.Bridge, "rpc"), (bridge.Bridge, "run"),
                        (bridge.Bridge, "get"), (remote.RemoteStore, "call"), (resonate.Resonate, "__init__")):  # fmt: skip
        if not callable(getattr(owner, attr, None)):
            problems.append(f"resonate-sdk {version} has no {owner.__name__}.{attr}")
    return problems


def position(root: str, child: str) -> str:
    """A child promise's position under its root: doc/j.3 -> "3", doc/j.4.1 -> "4.1"."""
    if child == root:
        return ""
    if child.startswith(root + "."):
        return child[len(root) + 1 :]
    return child  # an id set with .options(id=...): the id is its own position


def digest(value: Any) -> str:
    try:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=repr)
    except Exception:
        text = repr(value)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def encoded(value: Any) -> tuple[Any, str]:
    """The value as the SDK's JSON encoder stores it (checkpoints compare equal), and its digest."""
    try:
        from resonate.encoders import JsonEncoder

        text = JsonEncoder().encode(value)
        plain = json.loads(text) if text is not None else None
    except Exception:
        plain = repr(value)
    canon = json.dumps(plain, sort_keys=True, separators=(",", ":"))
    vd = hashlib.sha1(canon.encode()).hexdigest()[:16]
    return (plain if len(canon) <= MAX_VALUE_CHARS else None), vd


def _name(func: Any) -> str:
    return getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or repr(func)


def set_invocation(request_id: str | None, **fields: Any) -> None:
    """The Lambda runtime names the invocation it is about to run (None when it returned)."""
    _invocation.clear()
    if request_id is not None:
        _invocation.update(request=request_id, **fields)


# --- steps: functions run through ctx.run -------------------------------------------------------
def _wrap_step(lf: Any) -> None:
    func = lf.func
    if getattr(func, "__harness_step__", False):
        return
    root, cid, name = lf.cid, lf.id, _name(func)

    @functools.wraps(func)
    def step(ctx: Any, *args: Any, **kwargs: Any) -> Any:
        pos = position(root, cid)
        failpoints.check("before", root, pos)
        ex = uuid.uuid4().hex
        ledger.record("start", root=root, id=cid, pos=pos, fn=name, exec=ex, attempt=getattr(lf, "attempt", 1),
                      args=digest([args, kwargs]))  # fmt: skip
        outer = getattr(_local, "step", None)
        _local.step = (root, cid, pos, name, ex)
        try:
            failpoints.check("during", root, pos, exec=ex)
            try:
                value = func(ctx, *args, **kwargs)
            except Exception as e:
                ledger.record(
                    "end", root=root, id=cid, pos=pos, fn=name, exec=ex, error=f"{type(e).__name__}: {e}"
                )
                raise
            plain, vd = encoded(value)
            ledger.record("end", root=root, id=cid, pos=pos, fn=name, exec=ex, value=plain, vd=vd)
            failpoints.check("after", root, pos, exec=ex)
            return value
        finally:
            _local.step = outer

    step.__harness_step__ = True  # type: ignore[attr-defined]
    lf.func = step


# --- generator bodies ---------------------------------------------------------------------------
class _Body:
    """One entry of a generator body (a Coroutine object of the SDK)."""

    def __init__(self, co: Any) -> None:
        self.root, self.id = co.cid, co.id
        self.pos = position(self.root, self.id)
        code = getattr(co.gen, "gi_code", None)
        self.fn = getattr(code, "co_qualname", None) or getattr(code, "co_name", "?")
        self.entry = uuid.uuid4().hex
        self.after = ""  # the last child this entry asked for
        self.frame = getattr(co.gen, "gi_frame", None)
        self.calls: set[tuple[str, str]] = set()
        ledger.record("body", root=self.root, id=self.id, pos=self.pos, fn=self.fn, entry=self.entry)

    def profile(self, frame: Any, event: str, arg: Any) -> None:
        if event != "call" or frame.f_back is not self.frame:
            return
        try:
            code = frame.f_code
            if not _in_app(code.co_filename):
                return
            key = (self.after, code.co_qualname)
            if key in self.calls:
                return
            self.calls.add(key)
            ctx_arg = False
            if code.co_argcount:
                first = frame.f_locals.get(code.co_varnames[0])
                ctx_arg = type(first).__name__ == "Context" and type(first).__module__.startswith("resonate")
            ledger.record("call", root=self.root, id=self.id, entry=self.entry, after=self.after,
                          fn=code.co_qualname, ctx_arg=ctx_arg, file=os.path.basename(code.co_filename))  # fmt: skip
        except Exception as e:
            ledger.warn("body call tracing", e)


_APP_ROOTS: tuple[str, ...] = ()  # the app's directory and import roots: its own files live there


def _in_app(filename: str) -> bool:
    path = filename if os.path.isabs(filename) else os.path.abspath(filename)
    return path.startswith(_APP_ROOTS) and "site-packages" not in path


def _patch_coroutine(coroutine: Any) -> None:
    from resonate.coroutine import LFI, RFI, TRM

    original = coroutine.Coroutine.send
    trace = os.environ.get(TRACE_ENV, "1") != "0"

    def send(self: Any, value: Any) -> Any:
        body = self.__dict__.get("_harness_body")
        if body is None and not self.done:
            try:
                body = self._harness_body = _Body(self)
            except Exception as e:
                ledger.warn("body record", e)
        tracing = trace and body is not None and body.frame is not None and _APP_ROOTS
        previous = sys.getprofile() if tracing else None
        if tracing:
            sys.setprofile(body.profile)
        try:
            cmd = original(self, value)
        finally:
            if tracing:
                sys.setprofile(previous)
        if body is not None:
            try:
                if isinstance(cmd, (LFI, RFI)):
                    body.after = cmd.id
                    fn = _name(cmd.func) if isinstance(cmd, LFI) else getattr(cmd.conv, "name", "?")
                    ledger.record("ask", root=body.root, id=cmd.id, pos=position(body.root, cmd.id), fn=fn,
                                  kind="local" if isinstance(cmd, LFI) else "remote", entry=body.entry)  # fmt: skip
                elif isinstance(cmd, TRM):
                    ok = type(cmd.result).__name__ == "Ok"
                    fields: dict[str, Any] = {}
                    if ok:
                        fields["value"], fields["vd"] = encoded(cmd.result.value)
                    else:
                        fields["error"] = repr(cmd.result.value)
                    ledger.record("body-end", root=body.root, id=body.id, pos=body.pos, fn=body.fn,
                                  entry=body.entry, ok=ok, **fields)  # fmt: skip
            except Exception as e:
                ledger.warn("body step record", e)
        return cmd

    coroutine.Coroutine.send = send


# --- clients: dispatches and reads --------------------------------------------------------------
def _patch_bridge(bridge: Any, remote: Any) -> None:
    call = remote.RemoteStore.call

    def store_call(self: Any, req: Any) -> Any:
        statuses = getattr(_local, "statuses", None)
        if statuses is not None:
            try:
                req.register_hook("response", lambda r, *a, **k: statuses.append(r.status_code))
            except Exception as e:
                ledger.warn("response hook", e)
        return call(self, req)

    remote.RemoteStore.call = store_call

    def dispatching(original: Any, how: str) -> Any:
        @functools.wraps(original)
        def wrapper(self: Any, conv: Any, *args: Any, **kwargs: Any) -> Any:
            _local.statuses = []
            error = None
            try:
                promise = original(self, conv, *args, **kwargs)
                return promise
            except BaseException as e:
                error = f"{type(e).__name__}: {e}"
                raise
            finally:
                statuses, _local.statuses = _local.statuses, None
                try:
                    data = conv.data if isinstance(getattr(conv, "data", None), dict) else {}
                    ledger.record(
                        "dispatch", how=how, id=conv.id, fn=data.get("func") or getattr(conv, "name", None),
                        target=(conv.tags or {}).get("resonate:invoke"), created=_created(statuses),
                        status=statuses[-1] if statuses else None, error=error, args=digest(data.get("args")),
                        **_invocation,
                    )  # fmt: skip
                except Exception as e:
                    ledger.warn("dispatch record", e)

        return wrapper

    bridge.Bridge.rpc = dispatching(bridge.Bridge.rpc, "rpc")
    bridge.Bridge.run = dispatching(bridge.Bridge.run, "run")
    get = bridge.Bridge.get

    @functools.wraps(get)
    def read(self: Any, id: str, *args: Any, **kwargs: Any) -> Any:
        error = state = None
        try:
            promise = get(self, id, *args, **kwargs)
            state = getattr(promise, "state", None)
            return promise
        except BaseException as e:
            error = f"{type(e).__name__}: {e}"
            raise
        finally:
            ledger.record("read", id=id, state=state, error=error, **_invocation)

    bridge.Bridge.get = read


def _created(statuses: list[int]) -> bool | None:
    if not statuses:
        return None
    return {201: True, 200: False}.get(statuses[-1])


def _patch_client(resonate_mod: Any) -> None:
    init = resonate_mod.Resonate.__init__

    @functools.wraps(init)
    def client(self: Any, *args: Any, **kwargs: Any) -> None:
        asked = kwargs.get("ttl", 10)
        if os.environ.get(TTL_ENV):
            kwargs["ttl"] = int(os.environ[TTL_ENV])
        init(self, *args, **kwargs)
        ledger.record("client", group=kwargs.get("group", "default"), sdk_pid=getattr(self, "_pid", None),
                      ttl=kwargs.get("ttl", 10), app_ttl=asked)  # fmt: skip

    resonate_mod.Resonate.__init__ = client


# --- the app's effect function ------------------------------------------------------------------
def _wrap_effect(module: Any, attr: str) -> None:
    func = getattr(module, attr, None)
    if func is None or getattr(func, "__harness_effect__", False):
        return

    @functools.wraps(func)
    def effect(*args: Any, **kwargs: Any) -> Any:
        value = func(*args, **kwargs)
        step = getattr(_local, "step", None)
        if step is not None:
            root, cid, pos, name, ex = step
            ledger.record("effect", root=root, id=cid, pos=pos, fn=name, exec=ex, effect=_name(func))
            failpoints.check("after_effect", root, pos, exec=ex)
        return value

    effect.__harness_effect__ = True  # type: ignore[attr-defined]
    setattr(module, attr, effect)
    ledger.record("effect-hooked", target=f"{module.__name__}:{attr}")


class _EffectFinder(importlib.abc.MetaPathFinder):
    """Wraps the effect function right after its module is executed, before anyone imports it."""

    def __init__(self, module: str, attr: str) -> None:
        self.module, self.attr = module, attr

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name != self.module:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.machinery.PathFinder.find_spec(name, path)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return spec
        loader, attr = spec.loader, self.attr
        exec_module = loader.exec_module

        def run(module: Any) -> None:
            exec_module(module)
            _wrap_effect(module, attr)

        loader.exec_module = run  # type: ignore[method-assign]
        return spec


def _hook_effect(target: str) -> None:
    module, _, attr = target.partition(":")
    if module in sys.modules:
        _wrap_effect(sys.modules[module], attr)
    else:
        sys.meta_path.insert(0, _EffectFinder(module, attr))


# --- installing ---------------------------------------------------------------------------------
def install(role: str) -> bool:
    """Patch the SDK (once per process); record a `hello` saying whether the hooks are in."""
    global _installed, _APP_ROOTS
    if _installed:
        return True
    problems = check()
    info = {"role": role, "sdk": sdk_version(), "python": sys.version.split()[0], "supported": SUPPORTED_TEXT}
    if problems:
        ledger.record("hello", ok=False, problems=problems, **info)
        ledger.warn("instrumentation not installed", "; ".join(problems))
        return False
    try:
        from resonate import bridge, coroutine, resonate, scheduler
        from resonate.stores import remote

        roots = [os.environ.get(APP_ROOT_ENV, ""), *os.environ.get("HARNESS_APP_PATH", "").split(os.pathsep)]
        _APP_ROOTS = tuple(dict.fromkeys(os.path.realpath(r) + os.sep for r in roots if r))
        lfnc_init = scheduler.Lfnc.__post_init__

        def lfnc_post_init(self: Any) -> None:
            lfnc_init(self)
            try:
                _wrap_step(self)
            except Exception as e:
                ledger.warn("step wrapper", e)

        scheduler.Lfnc.__post_init__ = lfnc_post_init
        _patch_coroutine(coroutine)
        _patch_bridge(bridge, remote)
        _patch_client(resonate)
        if os.environ.get(EFFECT_ENV):
            _hook_effect(os.environ[EFFECT_ENV])
    except Exception as e:
        ledger.record("hello", ok=False, problems=[f"installing the hooks failed: {e!r}"], **info)
        ledger.warn("instrumentation not installed", e)
        return False
    _installed = True
    ledger.record("hello", ok=True, **info)
    return True
