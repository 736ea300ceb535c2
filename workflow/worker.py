"""The worker: joins group `worker`, registers `process_document`, starts, blocks (as in the seeds).

Run as a script (``python worker.py``). Connection settings come from the environment the app
reads itself: RESONATE_HOST, RESONATE_STORE_PORT, RESONATE_MSG_PORT.
"""

from __future__ import annotations

import os
import threading

from pipeline import process_document as pipeline
from resonate import Resonate

resonate = Resonate.remote(
    group="worker",
    host=os.environ.get("RESONATE_HOST", "http://127.0.0.1"),
    store_port=os.environ.get("RESONATE_STORE_PORT", "8001"),
    message_source_port=os.environ.get("RESONATE_MSG_PORT", "8002"),
)
process_document = resonate.register(pipeline, name="process_document")


if __name__ == "__main__":
    resonate.start()
    print(f"worker pid {os.getpid()} started", flush=True)
    threading.Event().wait()
