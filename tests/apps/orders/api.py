"""Order intake behind API Gateway: POST /orders starts the `fulfil` workflow, GET /orders/{order}
reports it. A second app shape for the harness's own tests (not the reference app's names)."""

from __future__ import annotations

import json
import re
from typing import Any

from resonate import Resonate
from resonate.errors import ResonateStoreError

ORDER_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")

# the SDK's own connection variables (RESONATE_HOST, RESONATE_PORT_STORE, ...): no arguments
client = Resonate.remote(group="edge")


def _answer(code: int, body: dict[str, Any]) -> dict[str, Any]:
    return {"statusCode": code, "headers": {"Content-Type": "application/json"}, "body": json.dumps(body)}


def _place(event: dict[str, Any]) -> dict[str, Any]:
    try:
        order = json.loads(event.get("body") or "")
    except ValueError:
        return _answer(400, {"problem": "not JSON"})
    if not isinstance(order, dict) or not ORDER_RE.fullmatch(str(order.get("order", ""))):
        return _answer(400, {"problem": "order must match [A-Za-z0-9_-]{1,64}"})
    items = order.get("items")
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items) or not items:
        return _answer(400, {"problem": "items must be a non-empty list of strings"})
    payload = {"order": order["order"], "items": items, "customer": str(order.get("customer", "anon"))}
    try:
        client.options(target="poll://any@packers").begin_rpc(f"order-{order['order']}", "fulfil", payload)
    except ResonateStoreError as e:
        return _answer(503, {"problem": str(e)})
    return _answer(202, {"order": order["order"], "poll": f"/orders/{order['order']}"})


def _track(order: str) -> dict[str, Any]:
    if not ORDER_RE.fullmatch(order):
        return _answer(400, {"problem": "bad order id"})
    try:
        handle = client.get(f"order-{order}")
    except ResonateStoreError:
        return _answer(404, {"problem": f"no order {order}"})
    if not handle.done():
        return _answer(200, {"order": order, "state": "packing"})
    return _answer(200, {"order": order, "state": "shipped", "receipt": handle.result()})


def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
    method, path = event.get("httpMethod"), event.get("path") or ""
    if method == "POST" and path == "/orders":
        return _place(event)
    if method == "GET" and event.get("resource") == "/orders/{order}":
        return _track((event.get("pathParameters") or {}).get("order", ""))
    return _answer(404, {"problem": f"no route {method} {path}"})
