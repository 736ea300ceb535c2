"""Broken on purpose: the reference workflow calling analyze_document directly instead of through
ctx.run, so it has no checkpoint and re-runs whenever the workflow is replayed."""

import os
import threading

import steps
from pipeline import analyze_document, download_document, extract_text, notify_requester, store_results
from resonate import Resonate

resonate = Resonate.remote(group="worker", host=os.environ.get("RESONATE_HOST"),
                           store_port=os.environ.get("RESONATE_STORE_PORT"),
                           message_source_port=os.environ.get("RESONATE_MSG_PORT"))  # fmt: skip


@resonate.register(name="process_document")
def process_document(ctx, job):
    page_count = yield ctx.run(download_document, job)
    text = yield ctx.run(extract_text, job, page_count)
    analysis = analyze_document(ctx, job, text)  # the bug: not a checkpoint
    stored_at = yield ctx.run(store_results, job, analysis["summary"], analysis["data"])
    notified_at = yield ctx.run(notify_requester, job, stored_at)
    return steps.workflow_result(job, page_count, analysis, stored_at, notified_at)


if __name__ == "__main__":
    resonate.start()
    threading.Event().wait()
