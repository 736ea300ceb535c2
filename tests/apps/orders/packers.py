"""The packers group: the `fulfil` workflow. Four checkpoints, `price` used twice, `pack` a generator
sub-step with two steps of its own; `ship` makes the one external effect (a shipment file)."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Generator
from typing import Any

import store
from resonate import Context, Resonate

resonate = Resonate.remote(group="packers")


def _digest(*parts: object) -> int:
    return int(hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:6], 16)


def price(ctx: Context, order: dict[str, Any], what: str) -> int:
    time.sleep(0.15)
    return sum(_digest(what, i) % 50 for i in order["items"]) + len(order["items"])


def weigh(ctx: Context, order: dict[str, Any]) -> int:
    time.sleep(0.1)
    return 100 * len(order["items"]) + _digest(order["order"]) % 100


def label(ctx: Context, order: dict[str, Any], grams: int) -> str:
    time.sleep(0.1)
    return f"{order['customer']}/{order['order']}/{grams}g"


def pack(ctx: Context, order: dict[str, Any]) -> Generator[Any, Any, dict[str, Any]]:
    grams = yield ctx.run(weigh, order)
    tag = yield ctx.run(label, order, grams)
    return {"grams": grams, "label": tag}


def ship(ctx: Context, order: dict[str, Any], parcel: dict[str, Any], total: int) -> str:
    time.sleep(0.1)
    tracking = f"TRK-{_digest(parcel['label'], total):06x}"
    store.ship_once(order["order"], tracking)
    time.sleep(0.1)
    return tracking


@resonate.register(name="fulfil")
def fulfil(ctx: Context, order: dict[str, Any]) -> Generator[Any, Any, dict[str, Any]]:
    goods = yield ctx.run(price, order, "items")
    parcel = yield ctx.run(pack, order)
    shipping = yield ctx.run(price, order, "shipping")
    tracking = yield ctx.run(ship, order, parcel, goods + shipping)
    return {"order": order["order"], "total": goods + shipping, "parcel": parcel, "tracking": tracking}


if __name__ == "__main__":
    resonate.start()
    threading.Event().wait()
