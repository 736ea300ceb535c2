"""Broken on purpose: the workflow body branches on randomness, so a replay may ask for another
step at a position than the one that was checkpointed there."""

import os
import random
import threading

import steps
from pipeline import analyze_document, download_document, extract_text, notify_requester, store_results
from resonate import Resonate

resonate = Resonate.remote(group="worker", host=os.environ.get("RESONATE_HOST"),
                           store_port=os.environ.get("RESONATE_STORE_PORT"),
                           message_source_port=os.environ.get("RESONATE_MSG_PORT"))  # fmt: skip


def extract_text_quickly(ctx, job, page_count):
    return extract_text(ctx, job, page_count)


@resonate.register(name="process_document")
def process_document(ctx, job):
    page_count = yield ctx.run(download_document, job)
    extract = extract_text if random.random() < 0.5 else extract_text_quickly  # the bug
    text = yield ctx.run(extract, job, page_count)
    analysis = yield ctx.run(analyze_document, job, text)
    stored_at = yield ctx.run(store_results, job, analysis["summary"], analysis["data"])
    notified_at = yield ctx.run(notify_requester, job, stored_at)
    return steps.workflow_result(job, page_count, analysis, stored_at, notified_at)


if __name__ == "__main__":
    resonate.start()
    threading.Event().wait()
