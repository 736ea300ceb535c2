"""A worker process: joins group `worker`, registers `process_document`, starts, blocks.

Configured from the environment (the harness sets these): RESONATE_HOST, RESONATE_STORE_PORT,
RESONATE_MSG_PORT, WORKFLOW_TTL (lease seconds), HARNESS_WORKER_ID, and HARNESS_WORKFLOW_MODULE
(the module that defines `process_document`; a test swaps in a broken variant here).
"""

from __future__ import annotations

import importlib
import os
import threading

from resonate import Resonate


def main() -> None:
    module = importlib.import_module(os.environ.get("HARNESS_WORKFLOW_MODULE", "workflow.pipeline"))
    worker_id = os.environ.get("HARNESS_WORKER_ID", "worker")
    resonate = Resonate.remote(
        group="worker",
        host=os.environ.get("RESONATE_HOST", "http://127.0.0.1"),
        store_port=os.environ.get("RESONATE_STORE_PORT", "8001"),
        message_source_port=os.environ.get("RESONATE_MSG_PORT", "8002"),
        pid=f"{worker_id}-{os.getpid()}",
        ttl=int(os.environ.get("WORKFLOW_TTL", "10")),
    )
    resonate.register(module.process_document, name="process_document")
    resonate.start()
    print(f"worker {worker_id} pid {os.getpid()} started", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
