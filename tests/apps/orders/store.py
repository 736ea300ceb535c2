"""Shipments: one file per order in SHIPMENTS_DIR, created exclusively (a second shipment of the same
order changes nothing). count_shipments.py lists them for the harness."""

from __future__ import annotations

import os
from pathlib import Path


def ship_once(order: str, tracking: str) -> None:
    folder = Path(os.environ["SHIPMENTS_DIR"])
    folder.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(folder / f"{order}.shipment", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return
    with os.fdopen(fd, "w") as f:
        f.write(tracking + "\n")
