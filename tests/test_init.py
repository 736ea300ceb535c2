"""`harness init`: drafts harness.toml from an app's files, read statically; the draft loads."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from harness.app.spec import REFERENCE_APP, AppSpec
from harness.cli import main

SEED_LAMBDA = """
import json
import os

from resonate import Resonate

RESONATE_HOST = os.environ.get("RESONATE_HOST", "http://localhost")
RESONATE_STORE_PORT = os.environ.get("RESONATE_STORE_PORT", "8001")
RESONATE_MSG_PORT = os.environ.get("RESONATE_MSG_PORT", "8002")
LOG_LEVEL = os.getenv("LOG_LEVEL", "INFO")
REQUIRED_FIELDS = ("jobId", "documentUrl", "requesterId", "type")

resonate = Resonate.remote(
    group="gateway",
    host=RESONATE_HOST,
    store_port=RESONATE_STORE_PORT,
    message_source_port=RESONATE_MSG_PORT,
)


def _response(status_code, body):
    return {"statusCode": status_code, "headers": {"Content-Type": "application/json"}, "body": json.dumps(body)}


def _handle_process_document(event):
    try:
        body = json.loads(event.get("body") or "{}")
    except json.JSONDecodeError:
        return _response(400, {"error": "invalid JSON"})
    missing = [f for f in REQUIRED_FIELDS if f not in body]
    if missing:
        return _response(400, {"error": f"missing fields: {missing}"})
    job = {f: body[f] for f in REQUIRED_FIELDS}
    job_id = job["jobId"]
    resonate.options(target="poll://any@worker").begin_rpc(f"doc/{job_id}", "process_document", job)
    return _response(202, {"status": "accepted", "jobId": job_id, "statusUrl": f"/status/{job_id}"})


def _handle_status(event):
    job_id = (event.get("pathParameters") or {}).get("jobId")
    handle = resonate.get(f"doc/{job_id}")
    if not handle.done():
        return _response(200, {"status": "processing", "jobId": job_id})
    return _response(200, {"status": "completed", "jobId": job_id, "result": handle.result()})


def lambda_handler(event, context):
    http_method = event.get("httpMethod", "")
    path = event.get("path", "")
    if http_method == "POST" and path == "/process-document":
        return _handle_process_document(event)
    if http_method == "GET" and path.startswith("/status/"):
        return _handle_status(event)
    return _response(404, {"error": "not found"})
"""

SEED_WORKER = """
import threading
from typing import Any

from resonate import Context, Resonate

resonate = Resonate.remote(group="worker")


def download_document(ctx: Context, job: dict[str, Any]) -> int:
    return 3


def extract_text(ctx: Context, job, pages):
    return "text"


def analyze_document(ctx: Context, job, text):
    return {"summary": text, "data": {}}


def store_results(ctx: Context, job, summary, data):
    return "stored"


def notify_requester(ctx: Context, job, stored_at):
    return "notified"


@resonate.register
def process_document(ctx: Context, job: dict[str, Any]):
    page_count = yield ctx.run(download_document, job)
    text = yield ctx.run(extract_text, job, page_count)
    analysis = yield ctx.run(analyze_document, job, text)
    stored_at = yield ctx.run(store_results, job, analysis["summary"], analysis["data"])
    notified_at = yield ctx.run(notify_requester, job, stored_at)
    return {"jobId": job["jobId"], "storedAt": stored_at, "notifiedAt": notified_at}


if __name__ == "__main__":
    resonate.start()
    threading.Event().wait()
"""

OTHER_API = """
import json

from resonate import Resonate

resonate = Resonate.remote(group="edge")


def _answer(code, payload):
    return {"statusCode": code, "body": json.dumps(payload)}


def handler(event, context):
    method = event["httpMethod"]
    if event["resource"] == "/jobs" and method == "POST":
        data = json.loads(event["body"])
        ticket = data["ticket"]
        size = int(data.get("size", 1))
        resonate.options(target="poll://any@crunchers").begin_rpc(
            f"crunch-{ticket}", "crunch", {"ticket": ticket, "size": size}
        )
        return _answer(202, {"state": "queued", "ticket": ticket})
    if event["resource"] == "/jobs/{id}" and method == "GET":
        ticket = event["pathParameters"]["id"]
        h = resonate.get(f"crunch-{ticket}")
        if h.done():
            return _answer(200, {"state": "finished", "output": h.result()})
        return _answer(200, {"state": "running"})
    return _answer(404, {"error": "no route"})
"""

OTHER_WORKER = """
import threading

from resonate import Resonate

resonate = Resonate.remote(group="crunchers")


def square(ctx, n):
    return n * n


def crunch(ctx, job):
    a = yield ctx.run(square, job["size"])
    return {"ticket": job["ticket"], "value": a}


resonate.register(crunch, name="crunch")

if __name__ == "__main__":
    resonate.start()
    threading.Event().wait()
"""

# a test file with a handler-shaped function: must be skipped
DECOY_TEST = "def lambda_handler(event, context):\n    return {}\n"


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text).lstrip())
    return root


@pytest.fixture
def seed_app(tmp_path: Path) -> Path:
    return write(tmp_path / "seed", {"lambda_function.py": SEED_LAMBDA, "worker.py": SEED_WORKER})


@pytest.fixture
def other_app(tmp_path: Path) -> Path:
    return write(tmp_path / "other", {"api.py": OTHER_API, "run_worker.py": OTHER_WORKER,
                                      "tests/test_api.py": DECOY_TEST, "lib/util.py": "X = 1\n"})  # fmt: skip


@pytest.fixture
def reference_app(tmp_path: Path) -> Path:
    app = tmp_path / "reference"
    shutil.copytree(REFERENCE_APP, app, ignore=shutil.ignore_patterns("harness.toml", "__pycache__"))
    return app


def init(app: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[AppSpec, str]:
    assert main(["init", str(app), *extra]) == 0
    out = capsys.readouterr().out
    return AppSpec.load(app), out


def test_seed_shaped_app(seed_app: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec, out = init(seed_app, capsys)
    assert (spec.handler, spec.worker, spec.path) == ("lambda_function:lambda_handler", "worker.py", (".",))
    assert (spec.submit_method, spec.submit_path) == ("POST", "/process-document")
    assert spec.submit_body["jobId"] == "{job}"
    assert list(spec.submit_body) == ["jobId", "documentUrl", "requesterId", "type"]
    assert all(v != "{job}" for k, v in spec.submit_body.items() if k != "jobId")
    assert (spec.status_method, spec.status_path) == ("GET", "/status/{job}")
    assert (spec.done_field, spec.done_equals, spec.result_field) == ("status", "completed", "result")
    assert spec.env == {"RESONATE_STORE_PORT": "{store_port}", "RESONATE_MSG_PORT": "{poll_port}"}
    assert spec.gateway_resources() == ["/process-document", "/status/{jobId}"]
    text = (seed_app / "harness.toml").read_text()
    assert "# guessed:" in text and "# [effects]" in text and "# [oracle]" in text
    assert "# LOG_LEVEL = " in text  # an app setting: the user's to set
    assert "process_document has 5 checkpoint(s)" in out
    assert "poll://any@worker" in out and "warning" not in out
    assert out.rstrip().splitlines()[-1].startswith("wrote ")
    assert "declare [effects] if your steps write to an external system" in out


def test_app_with_other_names(other_app: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec, out = init(other_app, capsys)
    assert (spec.handler, spec.worker) == ("api:handler", "run_worker.py")
    assert (spec.submit_method, spec.submit_path) == ("POST", "/jobs")
    assert spec.submit_body["ticket"] == "{job}"  # it is in the promise id f"crunch-{ticket}"
    assert isinstance(spec.submit_body["size"], int)  # read through int(...)
    assert (spec.status_method, spec.status_path) == ("GET", "/jobs/{job}")
    assert (spec.done_field, spec.done_equals, spec.result_field) == ("state", "finished", "output")
    assert "whether [status] done matches what your handler returns" in out
    assert spec.env == {}  # only the SDK's own variables, which the harness exports
    assert spec.gateway_resources() == ["/jobs", "/jobs/{id}"]
    assert "crunch -> poll://any@crunchers" in out and "warning" not in out


def test_reference_app(reference_app: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec, out = init(reference_app, capsys)
    ref = AppSpec.load()
    for attr in ("handler", "worker", "path", "submit_method", "submit_path", "status_path", "done_field",
                 "done_equals", "result_field"):  # fmt: skip
        assert getattr(spec, attr) == getattr(ref, attr), attr
    assert list(spec.submit_body) == list(ref.submit_body) and spec.submit_body["jobId"] == "{job}"
    assert spec.env == {"RESONATE_STORE_PORT": "{store_port}", "RESONATE_MSG_PORT": "{poll_port}"}
    text = (reference_app / "harness.toml").read_text()
    assert '# WORKFLOW_SINK = "{run_dir}/workflow_sink"' in text and "# WORKFLOW_STEP_SECONDS" in text
    assert "WORKFLOW_SINK is read with no default" in out
    assert 'expected = "steps:expected_result"' in text and "sink.py use(s) sqlite3" in text


def test_group_mismatch_is_a_warning(other_app: Path, capsys: pytest.CaptureFixture[str]) -> None:
    worker = other_app / "run_worker.py"
    worker.write_text(worker.read_text().replace('group="crunchers"', 'group="workers"'))
    _, out = init(other_app, capsys)
    assert "warning: the Lambda dispatches to poll://any@crunchers (group 'crunchers')" in out


def test_package_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    app = write(tmp_path / "pkgapp", {"src/svc/__init__.py": "", "src/svc/api.py": OTHER_API,
                                      "src/svc/run_worker.py": OTHER_WORKER})  # fmt: skip
    spec, _ = init(app, capsys)
    assert (spec.handler, spec.worker, spec.path) == ("svc.api:handler", "src/svc/run_worker.py", ("src",))


def test_stdout_prints_and_writes_nothing(seed_app: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", str(seed_app), "--stdout"]) == 0
    cap = capsys.readouterr()
    assert (
        cap.out.startswith("# harness.toml drafted")
        and 'handler = "lambda_function:lambda_handler"' in cap.out
    )
    assert "check before running" in cap.err
    assert not (seed_app / "harness.toml").exists()


def test_existing_file_is_refused_unless_forced(seed_app: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (seed_app / "harness.toml").write_text("# mine\n")
    assert main(["init", str(seed_app)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "exists" in err[0] and "--force" in err[0]
    assert (seed_app / "harness.toml").read_text() == "# mine\n"
    spec, _ = init(seed_app, capsys, "--force")
    assert spec.handler == "lambda_function:lambda_handler"


@pytest.mark.parametrize(
    ("files", "needle"),
    [
        (None, "is not a directory"),
        ({"README.md": "hi"}, "no .py files"),
        ({"worker.py": SEED_WORKER, "util.py": "def f(x):\n    return x\n"}, "a Lambda handler"),
        ({"lambda_function.py": SEED_LAMBDA}, "a worker script"),
        ({"tests/test_x.py": DECOY_TEST}, "no .py files"),
    ],
)
def test_usage_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   files: dict[str, str] | None, needle: str) -> None:  # fmt: skip
    app = tmp_path / "app"
    if files is None:
        app.write_text("a file")
    else:
        write(app, files)
    assert main(["init", str(app)]) == 2
    cap = capsys.readouterr()
    lines = cap.err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in cap.err, cap.err
    assert cap.out == ""
    assert not (app / "harness.toml").exists()
