"""Sandbox-only calls that play a change in the Shopify world (shopify.md §9.4 "world changes emit
their topics"), so a test sees the change both ways: in GraphQL and as a webhook.

- `POST /_sandbox/shopify/orders/{id}/events` with one of
  `{"type": "fulfillment_event", "status": "DELIVERED", "message"?}` (creates a fulfillment first if
  the order has none), `{"type": "risk", "level": "HIGH", "recommendation"?, "facts"?}`,
  `{"type": "transaction", "kind"?: "SALE", "status": "FAILURE", "error_code"?, "amount"?}`,
  `{"type": "return", "action": "request" | "approve" | "decline" | "close" | "cancel" | "reopen"}`.
- `POST /_sandbox/shopify/inventory-levels` `{"location_id", "item_id", "available"}` (numbers or gids).
- `GET /_sandbox/shopify/stats`: row counts of the world and the throttle's counters.

Each change moves the `updatedAt` of what it touched and of its order (inferred: an order's
`updatedAt` moves when anything beneath it changes), re-derives the order's ground truth, and
emits the topics with payloads read back from the new state.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox import webhooks
from sandbox.services import shopify_webhooks as hooks
from sandbox.services.shopify_objects import gid, level_gid
from sandbox.worlds.shopify import order_truth
from sandbox.worlds.shopify_story import CARRIERS, LOCATION_BASE

TABLES = ("shopify_orders", "shopify_line_items", "shopify_fulfillments", "shopify_fulfillment_events",
          "shopify_transactions", "shopify_refunds", "shopify_returns", "shopify_customers", "shopify_checkouts",
          "shopify_locations", "shopify_inventory_items", "shopify_inventory_levels")
EVENT_STATUSES = ("LABEL_PURCHASED", "LABEL_PRINTED", "READY_FOR_PICKUP", "CONFIRMED", "IN_TRANSIT",
                  "OUT_FOR_DELIVERY", "ATTEMPTED_DELIVERY", "DELAYED", "DELIVERED", "FAILURE", "CARRIER_PICKED_UP")
RISK_LEVELS = ("HIGH", "MEDIUM", "LOW", "NONE", "PENDING")
RETURN_MOVES = {  # action -> (from statuses, to status, the order's returnStatus)
    "approve": (("REQUESTED",), "OPEN", "IN_PROGRESS"), "decline": (("REQUESTED",), "DECLINED", "NO_RETURN"),
    "close": (("OPEN",), "CLOSED", "RETURNED"), "cancel": (("REQUESTED", "OPEN"), "CANCELED", "NO_RETURN"),
    "reopen": (("CLOSED", "DECLINED", "CANCELED"), "OPEN", "IN_PROGRESS")}


class BadChange(ValueError):
    """A change the world cannot take: answered 400 (404 for an unknown record)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def _number(value, kind: str) -> int:
    text = str(value)
    prefix = f"gid://shopify/{kind}/"
    text = text[len(prefix):] if text.startswith(prefix) else text
    if not text.isdigit():
        raise BadChange(f"not a {kind} id: {value!r}")
    return int(text)


class WorldChange:
    """One change to one order (or inventory level), applied in SQL, then announced."""

    def __init__(self, state):
        self.state, self.con = state, state.con
        self.topics: list[tuple[str, str]] = []  # (topic, resource gid) to emit once the change is in

    def now_after(self, previous: datetime | None) -> datetime:
        """Whole seconds, strictly after what it replaces, so `updated_at` windows see the change."""
        now = self.state.now().replace(microsecond=0)
        return now if previous is None or now > previous else previous + timedelta(seconds=1)

    def order_row(self, order_id: int) -> dict:
        cursor = self.con.execute("SELECT * FROM shopify_orders WHERE id = ?", [order_id])
        row = cursor.fetchone()
        if row is None:
            raise BadChange(f"no order {order_id}", 404)
        return dict(zip([d[0] for d in cursor.description], row, strict=True))

    def next_id(self, table: str) -> int:
        return self.con.execute(f"SELECT coalesce(max(id), 0) + 1 FROM {table}").fetchone()[0]  # noqa: S608

    # ---- the changes ----
    def apply(self, order_id: int, change: dict) -> dict:
        order = self.order_row(order_id)
        at = self.now_after(order["updated_at"])
        kind = change.get("type")
        handler = {"fulfillment_event": self.fulfillment_event, "risk": self.risk, "transaction": self.transaction,
                   "return": self.return_}.get(kind)
        if handler is None:
            raise BadChange(f"unknown change type {kind!r}; one of fulfillment_event, risk, transaction, return")
        handler(order, change, at)
        self.con.execute("UPDATE shopify_orders SET updated_at = ? WHERE id = ?", [at, order_id])
        self.topics.append(("orders/updated", gid("Order", order_id)))
        order_truth(self.con, order_id, self.state.options.shopify_large_order_threshold)
        return {"order": gid("Order", order_id), "updated_at": at.strftime("%Y-%m-%dT%H:%M:%SZ")}

    def fulfillment_event(self, order: dict, change: dict, at: datetime) -> None:
        status = str(change.get("status", "")).upper()
        if status not in EVENT_STATUSES:
            raise BadChange(f"status must be one of {', '.join(EVENT_STATUSES)}")
        found = self.con.execute("SELECT id FROM shopify_fulfillments WHERE order_id = ? ORDER BY pos DESC LIMIT 1",
                                 [order["id"]]).fetchone()
        if found is None:
            fid = self.next_id("shopify_fulfillments")
            carrier, number_format, url_format = CARRIERS[0]
            number = number_format.format(fid % 10**10)
            self.con.execute(
                "INSERT INTO shopify_fulfillments VALUES (?, ?, 0, ?, 'SUCCESS', 'FULFILLED', ?, ?, NULL, NULL, NULL, "
                "?, ?, ?, ?)", [fid, order["id"], f"{order['name']}.1", at, at, carrier, number,
                                url_format.format(number), LOCATION_BASE])
            self.con.execute("UPDATE shopify_orders SET fulfillment_status = 'FULFILLED' WHERE id = ?", [order["id"]])
            self.topics.append(("fulfillments/create", gid("Fulfillment", fid)))
        else:
            fid = found[0]
        event_id = self.next_id("shopify_fulfillment_events")
        self.con.execute("INSERT INTO shopify_fulfillment_events VALUES (?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL, NULL, "
                         "NULL)", [event_id, fid, order["id"], status, at, at, change.get("message")])
        self.con.execute(
            "UPDATE shopify_fulfillments SET display_status = ?, updated_at = ?, "
            "in_transit_at = CASE WHEN ? = 'IN_TRANSIT' THEN coalesce(in_transit_at, ?) ELSE in_transit_at END, "
            "delivered_at = CASE WHEN ? = 'DELIVERED' THEN ? ELSE delivered_at END WHERE id = ?",
            [status, at, status, at, status, at, fid])
        self.topics.append(("fulfillment_events/create", gid("FulfillmentEvent", event_id)))

    def risk(self, order: dict, change: dict, at: datetime) -> None:
        level = str(change.get("level", "")).upper()
        if level not in RISK_LEVELS:
            raise BadChange(f"level must be one of {', '.join(RISK_LEVELS)}")
        recommendation = change.get("recommendation") or {"HIGH": "CANCEL", "MEDIUM": "INVESTIGATE"}.get(level,
                                                                                                          "ACCEPT")
        facts = change.get("facts") or [{"description": "Risk re-assessed", "sentiment":
                                         "NEGATIVE" if level in ("HIGH", "MEDIUM") else "POSITIVE"}]
        assessments = [{"riskLevel": level, "provider": None, "facts": facts}]
        self.con.execute("UPDATE shopify_orders SET risk_level = ?, risk_recommendation = ?, risk_assessments = ? "
                         "WHERE id = ?", [level, recommendation, json.dumps(assessments), order["id"]])
        self.topics.append(("orders/risk_assessment_changed", gid("Order", order["id"])))

    def transaction(self, order: dict, change: dict, at: datetime) -> None:
        kind, status = str(change.get("kind", "SALE")).upper(), str(change.get("status", "")).upper()
        if status not in ("SUCCESS", "FAILURE", "PENDING", "ERROR"):
            raise BadChange("status must be one of SUCCESS, FAILURE, PENDING, ERROR")
        amount = change.get("amount", str(order["total_outstanding"] or order["total"]))
        error = change.get("error_code") or ("CARD_DECLINED" if status in ("FAILURE", "ERROR") else None)
        tid = self.next_id("shopify_transactions")
        self.con.execute("INSERT INTO shopify_transactions VALUES (?, ?, NULL, ?, ?, ?, ?, ?, ?, ?, ?)",
                         [tid, order["id"], kind, status, error, order["gateway"], at, at, order["test"], amount])
        if status in ("SUCCESS", "FAILURE", "ERROR"):  # never fired for pending (§9.1)
            self.topics.append(("order_transactions/create", gid("OrderTransaction", tid)))
        if kind == "SALE" and status == "SUCCESS" and order["financial_status"] == "PENDING":
            self.con.execute("UPDATE shopify_orders SET financial_status = 'PAID', total_outstanding = 0 WHERE id = ?",
                             [order["id"]])
            self.topics.append(("orders/paid", gid("Order", order["id"])))

    def return_(self, order: dict, change: dict, at: datetime) -> None:
        action = change.get("action")
        current = self.con.execute("SELECT id, status, total_quantity FROM shopify_returns WHERE order_id = ? "
                                   "ORDER BY id DESC LIMIT 1", [order["id"]]).fetchone()
        if action == "request":
            if current and current[1] in ("REQUESTED", "OPEN"):
                raise BadChange("the order already has an open return")
            rid = self.next_id("shopify_returns")
            suffix = 1 + self.con.execute("SELECT count(*) FROM shopify_returns WHERE order_id = ?",
                                          [order["id"]]).fetchone()[0]
            self.con.execute("INSERT INTO shopify_returns VALUES (?, ?, ?, 'REQUESTED', ?, NULL, 1, NULL, NULL)",
                             [rid, order["id"], f"{order['name']}-R{suffix}", at])
            self.con.execute("UPDATE shopify_orders SET return_status = 'RETURN_REQUESTED' WHERE id = ?", [order["id"]])
            self.topics.append(("returns/request", gid("Return", rid)))
            return
        if action not in RETURN_MOVES:
            raise BadChange("action must be one of request, approve, decline, close, cancel, reopen")
        allowed, target, order_status = RETURN_MOVES[action]
        if current is None or current[1] not in allowed:
            raise BadChange(f"cannot {action} a return that is {current[1] if current else 'missing'}", 409)
        rid = current[0]
        self.con.execute(
            "UPDATE shopify_returns SET status = ?, closed_at = CASE WHEN ? = 'CLOSED' THEN ? ELSE NULL END, "
            "decline_reason = CASE WHEN ? = 'DECLINED' THEN ? ELSE decline_reason END, "
            "decline_note = CASE WHEN ? = 'DECLINED' THEN ? ELSE decline_note END WHERE id = ?",
            [target, target, at, target, change.get("reason", "OTHER"), target, change.get("note"), rid])
        self.con.execute("UPDATE shopify_orders SET return_status = ? WHERE id = ?", [order_status, order["id"]])
        self.topics.append((f"returns/{action}", gid("Return", rid)))
        if action == "close":
            self._refund_return(order, rid, current[2], at)

    def _refund_return(self, order: dict, rid: int, quantity: int, at: datetime) -> None:
        price = self.con.execute("SELECT unit_price FROM shopify_line_items WHERE order_id = ? ORDER BY pos LIMIT 1",
                                 [order["id"]]).fetchone()[0]
        amount = price * quantity
        refund_id = self.next_id("shopify_refunds")
        self.con.execute("INSERT INTO shopify_refunds VALUES (?, ?, ?, ?, 'Returned', ?)",
                         [refund_id, order["id"], rid, at, amount])
        self.con.execute("INSERT INTO shopify_transactions VALUES (?, ?, NULL, 'REFUND', 'SUCCESS', NULL, ?, ?, ?, ?, ?)",
                         [self.next_id("shopify_transactions"), order["id"], order["gateway"], at, at, order["test"],
                          amount])
        refunded = order["total_refunded"] + amount
        self.con.execute("UPDATE shopify_orders SET total_refunded = ?, financial_status = ? WHERE id = ?",
                         [refunded, "REFUNDED" if refunded >= order["total"] else "PARTIALLY_REFUNDED", order["id"]])
        self.topics.append(("refunds/create", gid("Refund", refund_id)))

    def inventory(self, change: dict) -> dict:
        location_id, item_id = _number(change.get("location_id"), "Location"), \
            _number(change.get("item_id"), "InventoryItem")
        available = change.get("available")
        if not isinstance(available, int):
            raise BadChange("available must be an integer")
        found = self.con.execute("SELECT updated_at FROM shopify_inventory_levels WHERE location_id = ? AND item_id = ?",
                                 [location_id, item_id]).fetchone()
        if found is None:
            raise BadChange(f"no inventory level at location {location_id} for item {item_id}", 404)
        at = self.now_after(found[0])
        self.con.execute("UPDATE shopify_inventory_levels SET available = ?, updated_at = ? "
                         "WHERE location_id = ? AND item_id = ?", [available, at, location_id, item_id])
        key = level_gid(location_id, item_id)
        self.con.execute("DELETE FROM ground_truth WHERE kind = 'shopify_low_stock' AND record_id = ?", [key])
        self.con.execute("INSERT INTO ground_truth SELECT 'shopify_low_stock', ? FROM shopify_inventory_items "
                         "WHERE id = ? AND tracked AND ? <= ?",
                         [key, item_id, available, self.state.options.shopify_low_stock_threshold])
        self.topics.append(("inventory_levels/update", key))
        return {"inventory_level": key, "available": available, "updated_at": at.strftime("%Y-%m-%dT%H:%M:%SZ")}

    def emit(self) -> list[dict]:
        sent = []
        hub = webhooks.hub(self.state)
        for topic, resource in self.topics:
            result = hub.emit("shopify", hooks.build(self.state, topic, resource))
            sent.append({"topic": topic, "resource_id": resource, **result})
        return sent


def admin_routes(state) -> list[Route]:
    async def order_event(request: Request) -> Response:
        try:
            change = json.loads(await request.body() or b"{}")
        except json.JSONDecodeError:
            change = None
        if not isinstance(change, dict):
            return JSONResponse({"error": "body must be a JSON object"}, status_code=400)
        world = WorldChange(state)
        try:
            with state.lock:
                result = world.apply(_number(request.path_params["order_id"], "Order"), change)
        except BadChange as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        return JSONResponse({**result, "emitted": world.emit()})

    async def inventory_level(request: Request) -> Response:
        try:
            change = json.loads(await request.body() or b"{}")
        except json.JSONDecodeError:
            change = None
        world = WorldChange(state)
        try:
            if not isinstance(change, dict):
                raise BadChange("body must be a JSON object")
            with state.lock:
                result = world.inventory(change)
        except BadChange as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        return JSONResponse({**result, "emitted": world.emit()})

    async def stats(request: Request) -> Response:
        from sandbox.services.shopify import bucket

        counts = {t.removeprefix("shopify_"): state.con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # noqa: S608
                  for t in TABLES}
        throttle = bucket(state)
        return JSONResponse({"counts": counts, "throttle": {**throttle.counts, **(
            throttle.status() if throttle.at is not None else {})}})

    return [
        Route("/_sandbox/shopify/orders/{order_id}/events", order_event, methods=["POST"]),
        Route("/_sandbox/shopify/inventory-levels", inventory_level, methods=["POST"]),
        Route("/_sandbox/shopify/stats", stats),
    ]
