"""Threekit webhooks (threekit.md §5, inferred) and the sandbox-only calls that change the world.

Deliveries go through the shared hub (`sandbox/webhooks.py`): this module only builds the body and
the headers. Threekit signs nothing; `X-Threekit-Delivery-Id` is the hub's delivery id, so a retry or
an injected duplicate carries the same one. `data` holds just enough to re-read the resource, as the
contract says a receiver must (it never trusts the body).

The `/_sandbox/threekit/...` calls play what people do in Threekit itself (edit or publish a model,
save a configuration in the storefront, place an order), each emitting its topic.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox import webhooks
from sandbox.services import threekit_render as render
from sandbox.services.threekit_render import ORG_ID, short_id_sql, stamp, uuid_sql

TOPICS = ["order.created", "order.updated", "configuration.created", "asset.updated", "asset.published"]
# The contract's example delivery, sent verbatim for `"sample": true` (with the asked topic).
SAMPLE = {"id": "6a7b8c9d-0e1f-4a2b-8c3d-4e5f6a7b8c9d", "topic": "order.updated", "orgId": ORG_ID,
          "createdAt": "2026-11-21T08:20:00.512Z",
          "data": {"id": "b7c8d9e0-1f2a-4b3c-8d4e-5f6a7b8c9d0e", "shortId": "Qm4Z8wLr2",
                   "updatedAt": "2026-11-21T08:20:00.498Z"}}


def _one(state, sql: str, params: list) -> dict | None:
    cursor = state.con.execute(sql, params)
    rows = cursor.fetchall()
    return dict(zip([d[0] for d in cursor.description], rows[0], strict=True)) if rows else None


def find_order(state, ident: str) -> dict | None:
    return _one(state, f"SELECT {render.ORDER_COLUMNS} FROM threekit_orders WHERE id = ? OR short_id = ? "  # noqa: S608
                "ORDER BY seq LIMIT 1", [ident, ident])


def find_configuration(state, ident: str) -> dict | None:
    return _one(state, f"SELECT {render.CONFIGURATION_COLUMNS} FROM threekit_configurations "  # noqa: S608
                "WHERE id = ? OR short_id = ? ORDER BY seq LIMIT 1", [ident, ident])


def find_asset(state, asset_id: str) -> dict | None:
    return _one(state, f"SELECT {render.ASSET_COLUMNS} FROM threekit_assets WHERE id = ?", [asset_id])  # noqa: S608


def _data(state, topic: str, resource_id: str | None) -> dict:
    """The `data` of a delivery: the resource's id and the timestamp a receiver compares."""
    kind = topic.split(".")[0]
    if kind == "order":
        row = find_order(state, resource_id or "")
        if row is None:
            raise LookupError(f"order {resource_id} not found")
        return {"id": row["id"], "shortId": row["short_id"], "updatedAt": stamp(row["updated_at"])}
    if kind == "configuration":
        row = find_configuration(state, resource_id or "")
        if row is None:
            raise LookupError(f"configuration {resource_id} not found")
        return {"id": row["id"], "shortId": row["short_id"], "createdAt": stamp(row["created_at"])}
    row = find_asset(state, resource_id or "")
    if row is None:
        raise LookupError(f"asset {resource_id} not found")
    return {"id": row["id"], "type": row["type"], "updatedAt": stamp(row["updated_at"]),
            "publishedAt": stamp(row["published_at"])}


def _headers(topic: str):
    def headers(delivery_id: str, event_id: str) -> dict[str, str]:
        return {"Content-Type": "application/json", "X-Threekit-Topic": topic, "X-Threekit-Delivery-Id": delivery_id}

    return headers


def build(state, topic: str, resource_id: str | None, sample: bool = False) -> webhooks.Outgoing:
    """The hub's builder (`POST /_sandbox/webhooks/deliver`) and every emission's."""
    if topic not in TOPICS:
        raise ValueError(f"unknown threekit topic {topic!r}; known: {', '.join(TOPICS)}")
    if sample:
        body = {**SAMPLE, "topic": topic}
    else:
        body = {"id": str(uuid.uuid4()), "topic": topic, "orgId": ORG_ID, "createdAt": stamp(state.now()),
                "data": _data(state, topic, resource_id)}
    return webhooks.Outgoing(topic, json.dumps(body, separators=(",", ":")).encode(), _headers(topic),
                             resource_id or body["data"]["id"])


def emit(state, topic: str, resource_id: str) -> dict:
    return webhooks.hub(state).emit("threekit", build(state, topic, resource_id))


webhooks.BUILDERS["threekit"] = build
webhooks.TOPICS["threekit"] = TOPICS


# ---------- sandbox-only world changes ----------
def admin_routes(state) -> list[Route]:
    def later_of_now_and(value: datetime | None) -> datetime:
        """Sandbox time, but never before what is stored: a write always moves a timestamp forward."""
        now = render.to_ms(state.now())
        return now if value is None or now > value else value + render.ONE_MS

    async def touch_asset(request: Request) -> Response:
        """Someone edits the asset in Threekit: `updatedAt` moves, the last publish stays behind."""
        asset_id = request.path_params["asset_id"]
        with state.lock:
            row = find_asset(state, asset_id)
            if row is None:
                return JSONResponse({"error": f"no asset {asset_id}"}, status_code=404)
            state.con.execute("UPDATE threekit_assets SET updated_at = ? WHERE id = ?",
                              [later_of_now_and(row["updated_at"]), asset_id])
        emit(state, "asset.updated", asset_id)
        return JSONResponse(render.asset(find_asset(state, asset_id)))

    async def publish_asset(request: Request) -> Response:
        asset_id = request.path_params["asset_id"]
        with state.lock:
            row = find_asset(state, asset_id)
            if row is None:
                return JSONResponse({"error": f"no asset {asset_id}"}, status_code=404)
            published = later_of_now_and(max(row["updated_at"], row["published_at"] or row["updated_at"]))
            state.con.execute("UPDATE threekit_assets SET published_at = ? WHERE id = ?", [published, asset_id])
        emit(state, "asset.published", asset_id)
        return JSONResponse(render.asset(find_asset(state, asset_id)))

    async def save_configuration(request: Request) -> Response:
        """The storefront saves a configuration: `{productId, variant?, metadata?}`."""
        body = await _object(request)
        item = find_asset(state, str(body.get("productId"))) if body is not None else None
        if item is None or item["type"] != "item":
            return JSONResponse({"error": "body must name an item as productId"}, status_code=400)
        with state.lock:
            seq = state.con.execute("SELECT coalesce(max(seq), -1) + 1 FROM threekit_configurations").fetchall()[0][0]
            state.con.execute(
                f"INSERT INTO threekit_configurations SELECT n, {uuid_sql('configuration', 'n')}, "  # noqa: S608
                f"{short_id_sql('configuration', 'n')}, ?, 'v1', ?, ?, NULL, NULL, ? FROM (SELECT ? AS n)",
                [item["id"], json.dumps(body.get("variant") or {}), json.dumps(body.get("metadata") or {}),
                 render.to_ms(state.now()), seq])
            row = state.con.execute("SELECT id FROM threekit_configurations WHERE seq = ?", [seq]).fetchall()[0][0]
        emit(state, "configuration.created", row)
        return JSONResponse(render.configuration(find_configuration(state, row)), status_code=201)

    async def place_order(request: Request) -> Response:
        """An order arrives from the storefront: `{cart: [configuration ids], name?, platform?}`."""
        body = await _object(request)
        cart = body.get("cart") if body is not None else None
        if not isinstance(cart, list) or not all(isinstance(c, str) and find_configuration(state, c) for c in cart):
            return JSONResponse({"error": "cart must list existing configuration ids"}, status_code=400)
        with state.lock:
            seq = state.con.execute("SELECT coalesce(max(seq), -1) + 1 FROM threekit_orders").fetchall()[0][0]
            now = render.to_ms(state.now())
            lines = [{"configurationId": find_configuration(state, c)["id"], "count": 1, "metadata": {}} for c in cart]
            state.con.execute(
                f"INSERT INTO threekit_orders SELECT n, {uuid_sql('order', 'n')}, {short_id_sql('order', 'n')}, "  # noqa: S608
                "?, NULL, ?, ?, ?, ?, '{}', 'New', ?, ? FROM (SELECT ? AS n)",
                [str(body.get("name") or f"Order {seq}"), ORG_ID, json.dumps(body.get("platform") or {}),
                 json.dumps({"shopifyOrderId": None, "statusNote": None, "statusNoteAt": None}), json.dumps(lines),
                 now, now, seq])
            order_id = state.con.execute("SELECT id FROM threekit_orders WHERE seq = ?", [seq]).fetchall()[0][0]
        emit(state, "order.created", order_id)
        return JSONResponse(render.order(find_order(state, order_id)), status_code=201)

    return [
        Route("/_sandbox/threekit/assets/{asset_id}/touch", touch_asset, methods=["POST"]),
        Route("/_sandbox/threekit/assets/{asset_id}/publish", publish_asset, methods=["POST"]),
        Route("/_sandbox/threekit/configurations", save_configuration, methods=["POST"]),
        Route("/_sandbox/threekit/orders", place_order, methods=["POST"]),
    ]


async def _object(request: Request) -> dict | None:
    try:
        body = json.loads(await request.body() or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None
