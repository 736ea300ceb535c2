"""The fuzz corpus: malformed requests, and a dozen valid ones, derived from the app's templates.

From the [submit] template: its method, path and body fields. The site holding {job} (a body field,
else the path, else a header) gets the odd ids; every body field gets wrong types, goes missing and
grows too long; bodies are broken JSON, not objects, too big or random bytes; other methods and
routes are tried. From the [status] template: odd ids in the status path. Same app and seed, same
corpus. A case "should be accepted" (expect ``accept``) when it is the template with an id of the
harness's own alphabet; every other case "may be rejected" (``either``).
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from harness.app.spec import AppSpec, expand

VALID_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # the harness's job-id alphabet ({job} in the design)
SUBMIT, STATUS, ROUTE = "submit", "status", "route"  # what a case is sent to
ACCEPT, EITHER = "accept", "either"
GATEWAY_LIMIT = 10 * 1024 * 1024

# '?', '#', '%', '/', '..', control characters, unicode, lone surrogates, 64/65 characters...
ODD_JOB_IDS: list[str] = [
    "a?b", "a#b", "a%2Fb", "job\n", "a/b", "../x", "..", "a.1", "a%b", "a\r\nb", "", " ", "a b", "a*", "*",
    "doc/x", "é", "日本語", "🙂", "a\x00b", "\ud800", "a" * 64, "-" * 64, "a" * 65, "-" * 65, "a" * 1000,
    "a.", ".a", "a\tb", "a;b", "a:b", "a,b", "a+b", "a&b=c", "a\\b", 'a"b', "a'b", "<a>",
]  # fmt: skip
WRONG_VALUES: list[Any] = [None, 0, 1.5, True, False, [], ["a"], {}, {"a": 1}, "", "   "]
TOP_LEVEL: list[Any] = [[], "string", 1, 0.5, None, True, [[[]]], {}]
MUTATIONS = ("drop", "type", "oddid", "null", "rename")
CATEGORIES = ("valid", "odd-id", "status-id", "wrong-type", "missing", "overlong", "top-level", "broken-json",
              "oversized", "route", "mutation", "random-bytes")  # fmt: skip
MUTATION_CASES, RANDOM_CASES, VALID_CASES = 120, 40, 12


@dataclass(frozen=True)
class Case:
    """One request of the corpus. `job` is the id the request carries (its status poll asks for
    it), None when it carries none usable."""

    id: str
    category: str  # one of CATEGORIES
    description: str
    method: str
    path: str
    body: bytes | None
    kind: str = SUBMIT
    expect: str = EITHER
    job: str | None = None
    headers: tuple[tuple[str, str], ...] = ()

    def preview(self, limit: int = 60) -> str:
        """The body's first characters, printable; its size when cut."""
        if self.body is None:
            return ""
        text = self.body[:limit].decode("utf-8", "backslashreplace")
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
        return text if len(self.body) <= limit else f"{text}… ({len(self.body)} bytes)"


def short(value: Any) -> str:
    """A value as a case description shows it: repr, long strings cut."""
    if isinstance(value, str) and len(value) > 24:
        return f"{value[:12]!r}… ({len(value)} chars)"
    return repr(value)


def encode(obj: Any, ensure_ascii: bool = True) -> bytes:
    return json.dumps(obj, ensure_ascii=ensure_ascii).encode("utf-8", "surrogatepass")


def quoted(job: str) -> str:
    """A job id as one path segment (lone surrogates as their raw bytes)."""
    return quote(job.encode("utf-8", "surrogatepass"), safe="")


def _leaves(tree: Any, at: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Key paths of the leaves of a JSON object (nested objects walked)."""
    if isinstance(tree, dict) and tree:
        return [leaf for k, v in tree.items() for leaf in _leaves(v, (*at, k))]
    return [at] if at else []


def _get(tree: Any, at: tuple[str, ...]) -> Any:
    for k in at:
        tree = tree[k]
    return tree


def _copy_set(tree: Any, at: tuple[str, ...], value: Any, delete: bool = False) -> Any:
    """A copy of `tree` with the leaf at `at` replaced (or removed)."""
    out = json.loads(json.dumps(tree))
    parent = _get(out, at[:-1])
    if delete:
        parent.pop(at[-1], None)
    else:
        parent[at[-1]] = value
    return out


class Templates:
    """The app's submit/status templates, filled for one case at a time."""

    def __init__(self, spec: AppSpec, seed: int) -> None:
        self.spec, self.seed, self._k = spec, seed, 0
        self.fields = _leaves(spec.submit_body)
        holders = [f for f in self.fields if isinstance(_get(spec.submit_body, f), str)
                   and "{job}" in _get(spec.submit_body, f)]  # fmt: skip
        exact = [f for f in holders if _get(spec.submit_body, f) == "{job}"]
        self.site: tuple[str, Any]
        if exact or (holders and "{job}" not in spec.submit_path):
            self.site = ("body", (exact or holders)[0])
        elif "{job}" in spec.submit_path:
            self.site = ("path", None)
        else:
            self.site = ("header", next(k for k, v in spec.submit_headers.items() if "{job}" in v))
        self.site_name = {"body": ".".join(self.site[1] or ()), "path": "path id"}.get(self.site[0],
                                                                                      f"header {self.site[1]}")  # fmt: skip

    def fresh_id(self) -> str:
        self._k += 1
        return f"fz{abs(self.seed) % 100000}-{self._k:03d}"

    def submission(self, job: str | None = None) -> tuple[str, dict[str, str], Any, str]:
        """(path, headers, body object, job id) of a submission carrying `job` (default: a fresh
        valid id). An odd id goes into the job's site only; the rest of the template gets a valid one."""
        stub = self.fresh_id()
        job = stub if job is None else job
        n = self._k
        if VALID_ID.fullmatch(job):
            _, path, headers, body = self.spec.request(job, n)
            return path, headers, body, job
        _, path, headers, body = self.spec.request(stub, n)
        kind, where = self.site
        if kind == "body":
            body = _copy_set(body, where, expand(_get(self.spec.submit_body, where), {"job": job, "n": n}))
        elif kind == "path":
            path = expand(self.spec.submit_path, {"job": quoted(job), "n": n})
        else:
            headers = {**headers, where: expand(self.spec.submit_headers[where], {"job": job, "n": n})}
        return path, headers, body, job

    def status_path(self, job: str) -> str:
        return expand(self.spec.status_path, {"job": quoted(job), "n": 0})

    def job_field(self, at: tuple[str, ...]) -> bool:
        return self.site == ("body", at)


class _Builder:
    def __init__(self, spec: AppSpec, seed: int) -> None:
        self.t = Templates(spec, seed)
        self.spec = spec
        self.rng = random.Random(seed)
        self.groups: dict[str, list[Case]] = {}

    def add(self, category: str, description: str, body: bytes | None, *, method: str | None = None,
            path: str | None = None, kind: str = SUBMIT, expect: str = EITHER, job: str | None = None,
            headers: dict[str, str] | None = None) -> None:  # fmt: skip
        group = self.groups.setdefault(category, [])
        group.append(Case(f"{category}-{len(group) + 1:03d}", category, description,
                          method or self.spec.submit_method, path or self.spec.submit_path, body, kind, expect,
                          job, tuple((headers or {}).items())))  # fmt: skip

    def submit(self, category: str, description: str, job: str | None = None, *, expect: str = EITHER,
               change: Any = None) -> None:  # fmt: skip
        """A submission of the template; `change(body) -> (body, job)` mutates it."""
        path, headers, body, carried = self.t.submission(job)
        job_out: str | None = carried
        if change is not None:
            body, job_out = change(body, carried)
        raw = None if self.spec.submit_body is None else encode(body, ensure_ascii=self.rng.random() < 0.5)
        self.add(category, description, raw, path=path, expect=expect, job=job_out, headers=headers)

    def field_change(self, at: tuple[str, ...], value: Any = None, delete: bool = False) -> Any:
        def change(body: Any, job: str) -> tuple[Any, str | None]:
            new = _copy_set(body, at, value, delete)
            if not self.t.job_field(at):
                return new, job
            return new, (value if isinstance(value, str) and not delete else None)

        return change

    # --- the categories ---------------------------------------------------------------------
    def valid(self) -> None:
        for i in range(VALID_CASES):
            if i == VALID_CASES - 1:
                self.submit("valid", "valid request with a 64-character id", (self.t.fresh_id() + "x" * 64)[:64],
                            expect=ACCEPT)  # fmt: skip
            elif i % 3 == 0 and isinstance(self.spec.submit_body, dict):
                self.submit("valid", "valid request with an unknown extra field", expect=ACCEPT,
                            change=lambda b, j: ({**b, "extra": {"ignored": True}}, j))  # fmt: skip
            else:
                self.submit("valid", "valid request", expect=ACCEPT)

    def odd_ids(self) -> None:
        for odd in ODD_JOB_IDS:
            if self.t.site[0] == "header" and not _header_safe(odd):
                continue
            self.submit("odd-id", f"{self.t.site_name} {short(odd)}", odd,
                        expect=ACCEPT if VALID_ID.fullmatch(odd) else EITHER)  # fmt: skip
        for odd in ODD_JOB_IDS:
            if odd:
                self.add("status-id", f"status of {short(odd)}", None, method=self.spec.status_method,
                         path=self.t.status_path(odd), kind=STATUS, job=odd)  # fmt: skip

    def fields(self) -> None:
        for at in self.t.fields:
            name = ".".join(at)
            for value in WRONG_VALUES:
                self.submit("wrong-type", f"{name}={value!r}", change=self.field_change(at, value))
            self.submit("missing", f"missing {name}", change=self.field_change(at, delete=True))
            self.submit("overlong", f"{name} of 5000 characters", change=self.field_change(at, "a" * 5000))

    def bodies(self) -> None:
        for top in TOP_LEVEL:
            self.add("top-level", f"top-level {type(top).__name__} {short(top)}", encode(top))
        path, headers, body, job = self.t.submission()
        self.add("top-level", "the valid body inside an array", encode([body]), path=path, headers=headers)
        valid = encode(body)
        key = self.t.site[1][-1] if self.t.site[0] == "body" else "jobId"
        broken = [b"", b"{", b"}", b"nul", b"NaN", f'{{"{key}": NaN}}'.encode(), f'{{"{key}": Infinity}}'.encode(),
                  b'{"a": 1,}', b"\xff\xfe\xfd", b"\x00" * 10, b"[" * 50000, b'{"a":' * 20000, b"<xml/>",
                  repr(body).encode("utf-8", "surrogatepass"), valid[:-1], valid + b"garbage"]  # fmt: skip
        if isinstance(body, dict):
            broken.append(urlencode({k: v for k, v in body.items() if isinstance(v, str)}).encode())
        for raw in broken:
            self.add("broken-json", f"not JSON {raw[:24]!r}", raw, path=path, headers=headers)
        path, headers, body, job = self.t.submission()
        self.add("broken-json", "valid JSON behind a byte-order mark", "\ufeff".encode() + encode(body), path=path,
                 headers=headers, job=job)  # fmt: skip
        if isinstance(self.spec.submit_body, dict):
            for size in (64 * 1024 + 1, 200 * 1024, 1024 * 1024):
                self.submit("oversized", f"body padded to {size} bytes",
                            change=lambda b, j, s=size: ({**b, "padding": "p" * s}, j))  # fmt: skip
        self.add("oversized", "body over the gateway's payload limit", b"x" * (GATEWAY_LIMIT + 1024))

    def routes(self) -> None:
        spec = self.spec
        path = self.t.submission()[0]
        st_path = self.t.status_path("x1")
        prefix = spec.status_path.split("{job}")[0]
        tried = {(spec.submit_method, path), (spec.status_method, st_path)}
        plan = [(m, path) for m in ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")]
        plan += [(m, st_path) for m in ("POST", "PUT", "DELETE", "PATCH", "HEAD")]
        plan += [
            (spec.submit_method, p) for p in ("/", path + "s", path + "/extra", path.upper(), "/v1" + path)
        ]
        plan += [("GET", "/"), (spec.status_method, prefix.rstrip("/") or "/"), (spec.status_method, prefix),
                 (spec.status_method, prefix + "a/b"), (spec.status_method, prefix.rstrip("/") + "x/y")]  # fmt: skip
        for method, p in dict.fromkeys(plan):
            if (method, p) not in tried:
                tried.add((method, p))
                _, headers, body, job = self.t.submission()
                raw = encode(body) if body is not None else None
                self.add(
                    "route", f"{method} {p}", raw, method=method, path=p, kind=ROUTE, job=job, headers=headers
                )

    def mutations(self, count: int, start: int = 0) -> None:
        odd = [o for o in ODD_JOB_IDS if o]
        for _ in range(start, start + count):
            op, value = self.rng.choice(MUTATIONS), None
            at = self.rng.choice(self.t.fields) if self.t.fields else ()
            name = ".".join(at) or "body"
            if not at or (op == "oddid" and self.t.site[0] != "body"):
                raw = bytes(self.rng.randrange(256) for _ in range(self.rng.randrange(1, 64)))
                self.add("mutation", f"mutation bytes {raw[:12]!r}", raw)
                continue
            if op == "drop":
                change = self.field_change(at, delete=True)
            elif op == "type":
                value = self.rng.choice([self.rng.randint(-9, 9), self.rng.random(), ["x"], {"v": "x"}, True])
                change = self.field_change(at, value)
            elif op == "oddid":
                at, value = self.t.site[1], self.rng.choice(odd)
                name = f"{'.'.join(at)}={short(value)}"
                change = self.field_change(at, value)
            elif op == "null":
                change = self.field_change(at, None)
            else:
                change = self._rename(at)
            valid = op == "oddid" and VALID_ID.fullmatch(str(value)) is not None  # only the id changed: valid
            self.submit(
                "mutation", f"mutation {op} {name}", change=change, expect=ACCEPT if valid else EITHER
            )

    def _rename(self, at: tuple[str, ...]) -> Any:
        def change(body: Any, job: str) -> tuple[Any, str | None]:
            new = _copy_set(body, at, None, delete=True)
            parent = _get(new, at[:-1])
            parent[at[-1].upper() if at[-1] != at[-1].upper() else at[-1].lower()] = _get(body, at)
            return new, None if self.t.job_field(at) else job

        return change

    def random_bytes(self) -> None:
        for _ in range(RANDOM_CASES):
            raw = bytes(self.rng.randrange(256) for _ in range(self.rng.randrange(1, 200)))
            self.add("random-bytes", f"random bytes {raw[:12]!r}", raw)


def _header_safe(value: str) -> bool:
    return value.isprintable() and value.isascii() and value.strip() == value and bool(value)


def build_corpus(spec: AppSpec, seed: int, cases: int | None = None) -> list[Case]:
    """The corpus for an app and a seed, in sending order. `cases`: that many, taken round-robin
    across the categories (so a small corpus still has some of each); above the full corpus,
    more random mutations."""
    b = _Builder(spec, seed)
    b.valid()
    b.odd_ids()
    b.fields()
    b.bodies()
    b.routes()
    b.mutations(MUTATION_CASES)
    b.random_bytes()
    groups = list(b.groups.values())
    ordered = [g[i] for i in range(max(len(g) for g in groups)) for g in groups if i < len(g)]
    if cases is not None and cases > len(ordered):
        b.mutations(cases - len(ordered), start=MUTATION_CASES)
        ordered += b.groups["mutation"][MUTATION_CASES:]
    chosen = ordered[:cases] if cases is not None else ordered
    b.rng.shuffle(chosen)
    return chosen
