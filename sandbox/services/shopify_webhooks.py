"""Shopify webhook payloads and headers (shopify.md §9) for the shared hub in `sandbox/webhooks.py`.

Payloads are REST-shaped and built from the contract's templates (`shopify/webhooks/`), filled with
the world's rows so that they match what GraphQL answers: snake_case keys, lower-case enums, money
as two-decimal strings, numeric ids (some above 2^53) and `admin_graphql_api_id`. `sample: true`
sends a template's bytes verbatim. The body is serialised once and signed once:
`X-Shopify-Hmac-Sha256 = base64(HMAC-SHA256(secret, body))`, standard alphabet with padding.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
from datetime import datetime
from decimal import Decimal
from functools import lru_cache

from sandbox import webhooks
from sandbox.services.shopify_objects import SHOP_CURRENCY, SHOP_DOMAIN, gid, level_gid
from sandbox.services.shopify_schema import CONTRACT_DIR
from sandbox.worlds.shopify_story import PRODUCT_BASE, SHOP_ID, VARIANT_BASE

API_VERSION = "2026-01"
TEMPLATE_DIR = CONTRACT_DIR / "webhooks"
RETURN_ACTIONS = ("request", "approve", "decline", "cancel", "close", "reopen", "update")
# topic -> (template file, the gid type its resource_id names)
TOPIC_SOURCES = {
    "orders/create": ("orders_create.json", "Order"), "orders/updated": ("orders_create.json", "Order"),
    "orders/paid": ("orders_create.json", "Order"),
    "orders/risk_assessment_changed": ("orders_risk_assessment_changed.json", "Order"),
    "fulfillments/create": ("fulfillments_create.json", "Fulfillment"),
    "fulfillment_events/create": ("fulfillment_events_create.json", "FulfillmentEvent"),
    "inventory_levels/update": ("inventory_levels_update.json", "InventoryLevel"),
    "order_transactions/create": ("order_transactions_create.json", "OrderTransaction"),
    "refunds/create": ("refunds_create.json", "Refund"),
    **{f"returns/{a}": (f"returns_{a}.json", "Return") for a in RETURN_ACTIONS},
    "checkouts/create": ("checkouts_create.json", "AbandonedCheckout"),
    "checkouts/update": ("checkouts_create.json", "AbandonedCheckout"),
}
TOPICS = list(TOPIC_SOURCES)


@lru_cache(maxsize=32)
def template_bytes(name: str) -> bytes:
    return (TEMPLATE_DIR / name).read_bytes()


def template(name: str) -> dict:
    return copy.deepcopy(json.loads(template_bytes(name)))


# ---------- formats ----------
def rest_time(value: datetime | None) -> str | None:
    """REST timestamps carry the shop's offset; the sandbox shop runs on UTC."""
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%S+00:00")


def rest_money(value) -> str:
    return f"{Decimal(value):.2f}"


def money_set(amount, presentment=None, currency: str = SHOP_CURRENCY) -> dict:
    presentment = amount if presentment is None else presentment
    return {"shop_money": {"amount": rest_money(amount), "currency_code": SHOP_CURRENCY},
            "presentment_money": {"amount": rest_money(presentment), "currency_code": currency}}


def lower(value: str | None) -> str | None:
    return None if value is None else value.lower()


# ---------- headers ----------
def signature(body: bytes, secret: str) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def outgoing(state, topic: str, payload: dict | bytes, resource_id: str | None) -> webhooks.Outgoing:
    body = payload if isinstance(payload, bytes) else json.dumps(payload, separators=(",", ":")).encode()
    digest = signature(body, state.options.shopify_webhook_secret)  # signed once: retries resend these bytes
    triggered = state.now().strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def headers(delivery_id: str, event_id: str) -> dict[str, str]:
        return {"Content-Type": "application/json", "X-Shopify-Topic": topic, "X-Shopify-Hmac-Sha256": digest,
                "X-Shopify-Shop-Domain": SHOP_DOMAIN, "X-Shopify-API-Version": API_VERSION,
                "X-Shopify-Webhook-Id": delivery_id, "X-Shopify-Event-Id": event_id,
                "X-Shopify-Triggered-At": triggered}

    return webhooks.Outgoing(topic=topic, body=body, headers=headers, resource_id=resource_id)


# ---------- the builder the hub calls ----------
def build(state, topic: str, resource_id: str | None, sample: bool = False) -> webhooks.Outgoing:
    """`POST /_sandbox/webhooks/deliver`: ValueError for an unknown topic, LookupError for an unknown resource."""
    if topic not in TOPIC_SOURCES:
        raise ValueError(f"unknown shopify topic {topic!r}")
    name, kind = TOPIC_SOURCES[topic]
    if sample:
        return outgoing(state, topic, template_bytes(name), resource_id)
    return outgoing(state, topic, payload(state, topic, resource_id), resource_id)


def payload(state, topic: str, resource_id: str | None) -> dict:
    name, kind = TOPIC_SOURCES[topic]
    prefix = f"gid://shopify/{kind}/"
    if not resource_id or not resource_id.startswith(prefix):
        raise LookupError(f"{topic} needs a {kind} gid ({prefix}...)")
    rest = resource_id[len(prefix):]
    render = Renderer(state.con)
    if kind == "InventoryLevel":
        location, _, item = rest.partition("?inventory_item_id=")
        if not (location.isdigit() and item.isdigit()):
            raise LookupError(f"malformed InventoryLevel gid {resource_id!r}")
        return render.inventory_level(int(location), int(item))
    if not rest.isdigit():
        raise LookupError(f"malformed gid {resource_id!r}")
    number = int(rest)
    if kind == "Order":
        return render.risk(number) if topic == "orders/risk_assessment_changed" else render.order(number)
    if kind == "Return":
        return render.return_(number, topic.split("/", 1)[1])
    if kind == "OrderTransaction":
        row = render.row("shopify_transactions", number)
        if row["status"] not in ("SUCCESS", "FAILURE", "ERROR"):
            raise ValueError("order_transactions/create fires only for success, failure and error")
        return render.transaction(row)
    return {"Fulfillment": render.fulfillment, "FulfillmentEvent": render.fulfillment_event,
            "Refund": render.refund, "AbandonedCheckout": render.checkout}[kind](number)


class Renderer:
    """World rows as REST payloads, each starting from its template."""

    def __init__(self, con):
        self.con = con

    def row(self, table: str, number: int) -> dict:
        cursor = self.con.execute(f"SELECT * FROM {table} WHERE id = ?", [number])  # noqa: S608 (fixed names)
        found = cursor.fetchone()
        if found is None:
            raise LookupError(f"no {table.removeprefix('shopify_')} {number}")
        return dict(zip([d[0] for d in cursor.description], found, strict=True))

    def rows(self, table: str, key: str, value, order: str = "id") -> list[dict]:
        cursor = self.con.execute(f"SELECT * FROM {table} WHERE {key} = ? ORDER BY {order}", [value])  # noqa: S608
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]

    # ---- orders ----
    def order(self, number: int) -> dict:
        row, body = self.row("shopify_orders", number), template("orders_create.json")
        rate, currency = row["presentment_rate"], row["presentment_currency"]

        def bag(amount) -> dict:
            return money_set(amount, (Decimal(amount) * rate).quantize(Decimal("0.01")), currency)

        lines = self.rows("shopify_line_items", "order_id", number, "pos")
        line_total = sum((li["unit_price"] * li["quantity"] for li in lines), Decimal(0))
        current = row["total"] - row["total_refunded"]
        email = row["email"] or self._customer_email(row["customer_id"])
        body.update({
            "id": number, "admin_graphql_api_id": gid("Order", number), "name": row["name"],
            "number": row["number"] - 1000, "order_number": row["number"], "email": email, "contact_email": email,
            "created_at": rest_time(row["created_at"]), "updated_at": rest_time(row["updated_at"]),
            "processed_at": rest_time(row["processed_at"]), "closed_at": rest_time(row["closed_at"]),
            "cancelled_at": rest_time(row["cancelled_at"]), "cancel_reason": lower(row["cancel_reason"]),
            "confirmed": True, "test": row["test"], "tags": ", ".join(row["tags"]), "currency": SHOP_CURRENCY,
            "presentment_currency": currency, "financial_status": lower(row["financial_status"]),
            "fulfillment_status": {"FULFILLED": "fulfilled", "PARTIALLY_FULFILLED": "partial"}.get(
                row["fulfillment_status"]),
            "subtotal_price": rest_money(row["subtotal"]), "subtotal_price_set": bag(row["subtotal"]),
            "current_subtotal_price": rest_money(row["subtotal"]), "current_subtotal_price_set": bag(row["subtotal"]),
            "total_price": rest_money(row["total"]), "total_price_set": bag(row["total"]),
            "current_total_price": rest_money(current), "current_total_price_set": bag(current),
            "total_tax": rest_money(row["tax"]), "total_tax_set": bag(row["tax"]),
            "current_total_tax": rest_money(row["tax"]), "current_total_tax_set": bag(row["tax"]),
            "total_discounts": "0.00", "total_discounts_set": bag(0), "current_total_discounts": "0.00",
            "current_total_discounts_set": bag(0), "total_line_items_price": rest_money(line_total),
            "total_line_items_price_set": bag(line_total), "total_outstanding": rest_money(row["total_outstanding"]),
            "total_shipping_price_set": bag(row["shipping"]), "current_shipping_price_set": bag(row["shipping"]),
            "payment_gateway_names": [row["gateway"]], "token": f"{number:x}",
            "discount_codes": [{"code": c, "amount": "0.00", "type": "percentage"} for c in row["discount_codes"]],
            "order_status_url": f"https://{SHOP_DOMAIN}/{SHOP_ID}/orders/{number:x}/authenticate?key=sandbox",
            "billing_address": self._address(row), "shipping_address": self._address(row),
            "customer": self._customer(row["customer_id"]),
            "line_items": [self._line_item(li, rate, currency) for li in lines],
            "fulfillments": [self.fulfillment(f["id"]) for f in self.rows("shopify_fulfillments", "order_id", number)],
            "refunds": [self.refund(r["id"]) for r in self.rows("shopify_refunds", "order_id", number)],
            "returns": [],
        })
        for shipping_line in body["shipping_lines"]:
            shipping_line.update({"price": rest_money(row["shipping"]), "price_set": bag(row["shipping"]),
                                  "discounted_price": rest_money(row["shipping"]),
                                  "discounted_price_set": bag(row["shipping"]),
                                  "current_discounted_price_set": bag(row["shipping"])})
        return body

    def risk(self, number: int) -> dict:
        row = self.row("shopify_orders", number)
        assessments = json.loads(row["risk_assessments"] or "[]")
        latest = assessments[-1] if assessments else {"riskLevel": row["risk_level"], "provider": None}
        body = template("orders_risk_assessment_changed.json")
        body.update({"provider_id": None if latest["provider"] is None else 1830279,
                     "provider_title": latest["provider"], "risk_level": lower(latest["riskLevel"]),
                     "created_at": rest_time(row["updated_at"]), "order_id": number,
                     "admin_graphql_api_order_id": gid("Order", number)})
        return body

    def _customer_email(self, customer_id: int | None) -> str | None:
        return None if customer_id is None else self.row("shopify_customers", customer_id)["email"]

    def _customer(self, customer_id: int | None) -> dict | None:
        """The order's customer carries no tags (§9.1)."""
        if customer_id is None:
            return None
        row, body = self.row("shopify_customers", customer_id), template("orders_create.json")["customer"]
        body.update({"id": customer_id, "admin_graphql_api_id": gid("Customer", customer_id),
                     "first_name": row["first_name"], "last_name": row["last_name"], "email": row["email"],
                     "created_at": rest_time(row["created_at"]), "updated_at": rest_time(row["updated_at"]),
                     "state": "enabled", "currency": SHOP_CURRENCY})
        body["default_address"] = None
        return body

    @staticmethod
    def _address(row: dict) -> dict:
        return {"first_name": row["ship_first_name"], "address1": row["ship_address1"], "phone": None,
                "city": row["ship_city"], "zip": row["ship_zip"], "province": row["ship_province"],
                "country": row["ship_country"], "last_name": row["ship_last_name"], "address2": None,
                "company": None, "latitude": None, "longitude": None,
                "name": f"{row['ship_first_name']} {row['ship_last_name']}",
                "country_code": row["ship_country_code"], "province_code": row["ship_province_code"]}

    @staticmethod
    def _line_item(li: dict, rate: Decimal = Decimal(1), currency: str = SHOP_CURRENCY) -> dict:
        base = template("orders_create.json")["line_items"][0]
        price = li["unit_price"]
        name = f"{li['title']} - {li['variant_title']}" if li["variant_title"] else li["title"]
        base.update({"id": li["id"], "admin_graphql_api_id": gid("LineItem", li["id"]), "attributed_staffs": [],
                     "current_quantity": li["quantity"], "fulfillable_quantity": li["quantity"], "name": name,
                     "price": rest_money(price), "price_set": money_set(price, (price * rate).quantize(Decimal("0.01")),
                                                                          currency),
                     "product_id": PRODUCT_BASE + li["product_seq"] // 4, "quantity": li["quantity"],
                     "sku": li["sku"], "title": li["title"], "variant_id": VARIANT_BASE + li["product_seq"],
                     "variant_title": li["variant_title"], "total_discount": "0.00",
                     "total_discount_set": money_set(0, 0, currency), "variant_inventory_management": "shopify"})
        return base

    # ---- fulfillment ----
    def fulfillment(self, number: int) -> dict:
        row, body = self.row("shopify_fulfillments", number), template("fulfillments_create.json")
        order = self.row("shopify_orders", row["order_id"])
        shipment = row["display_status"] if row["display_status"] not in ("FULFILLED", "SUBMITTED") else None
        body.update({
            "id": number, "order_id": row["order_id"], "status": lower(row["status"]), "service": "manual",
            "created_at": rest_time(row["created_at"]), "updated_at": rest_time(row["updated_at"]),
            "tracking_company": row["tracking_company"], "shipment_status": lower(shipment),
            "location_id": row["location_id"], "email": order["email"] or self._customer_email(order["customer_id"]),
            "destination": self._address(order), "name": row["name"],
            "line_items": [self._line_item(li) for li in self.rows("shopify_line_items", "order_id", row["order_id"],
                                                                   "pos")],
            "tracking_number": row["tracking_number"], "tracking_numbers": [row["tracking_number"]],
            "tracking_url": row["tracking_url"], "tracking_urls": [row["tracking_url"]], "receipt": {},
            "admin_graphql_api_id": gid("Fulfillment", number)})
        return body

    def fulfillment_event(self, number: int) -> dict:
        row, body = self.row("shopify_fulfillment_events", number), template("fulfillment_events_create.json")
        body.update({"id": number, "fulfillment_id": row["fulfillment_id"], "status": lower(row["status"]),
                     "message": row["message"], "happened_at": rest_time(row["happened_at"]), "city": row["city"],
                     "province": row["province"], "country": row["country"], "zip": row["zip"], "address1": None,
                     "latitude": None, "longitude": None, "shop_id": SHOP_ID,
                     "created_at": rest_time(row["created_at"]), "updated_at": rest_time(row["created_at"]),
                     "estimated_delivery_at": rest_time(row["estimated_delivery_at"]), "order_id": row["order_id"],
                     "admin_graphql_api_id": gid("FulfillmentEvent", number)})
        return body

    # ---- money ----
    def transaction(self, row: dict) -> dict:
        body = template("order_transactions_create.json")
        number, failed = row["id"], row["status"] in ("FAILURE", "ERROR")
        body.update({"id": number, "order_id": row["order_id"], "kind": lower(row["kind"]),
                     "gateway": row["gateway"], "status": lower(row["status"]),
                     "message": "Your card was declined." if failed else None,
                     "created_at": rest_time(row["created_at"]), "processed_at": rest_time(row["processed_at"]),
                     "test": row["test"], "authorization": None, "parent_id": row["parent_id"],
                     "error_code": lower(row["error_code"]), "amount": rest_money(row["amount"]),
                     "currency": SHOP_CURRENCY, "payment_id": f"#{number}",
                     "total_unsettled_set": {"presentment_money": {"amount": "0.0", "currency": SHOP_CURRENCY},
                                             "shop_money": {"amount": "0.0", "currency": SHOP_CURRENCY}},
                     "manual_payment_gateway": row["gateway"] == "bank_deposit",
                     "admin_graphql_api_id": gid("OrderTransaction", number)})
        return body

    def refund(self, number: int) -> dict:
        row, body = self.row("shopify_refunds", number), template("refunds_create.json")
        transactions = [t for t in self.rows("shopify_transactions", "order_id", row["order_id"])
                        if t["kind"] == "REFUND" and t["created_at"] == row["created_at"]]
        body.update({"id": number, "order_id": row["order_id"], "created_at": rest_time(row["created_at"]),
                     "processed_at": rest_time(row["created_at"]), "note": row["note"], "user_id": None,
                     "return": None if row["return_id"] is None else {
                         "id": row["return_id"], "admin_graphql_api_id": gid("Return", row["return_id"])},
                     "admin_graphql_api_id": gid("Refund", number), "refund_line_items": [],
                     "transactions": [self.transaction(t) for t in transactions]})
        return body

    # ---- returns ----
    def return_(self, number: int, action: str) -> dict:
        row = self.row("shopify_returns", number)
        body = template(f"returns_{action}.json")
        body["admin_graphql_api_id"] = gid("Return", number)
        if action == "update":
            return body
        order_ref = {"id": row["order_id"], "admin_graphql_api_id": gid("Order", row["order_id"])}
        body.update({"id": number, "status": lower(row["status"])})
        if "order" in body:
            body["order"] = order_ref
        if "order_id" in body:
            body["order_id"] = row["order_id"]
        if "name" in body:
            body["name"] = row["name"]
        if "total_return_line_items" in body:
            body.update(total_return_line_items=row["total_quantity"], return_shipping_fees=[],
                        exchange_line_items=[], total_exchange_line_items=0)
        if action == "decline":
            body["decline"] = {"reason": lower(row["decline_reason"]), "note": row["decline_note"]}
        return body

    # ---- inventory and checkouts ----
    def inventory_level(self, location_id: int, item_id: int) -> dict:
        cursor = self.con.execute("SELECT available, updated_at FROM shopify_inventory_levels "
                                  "WHERE location_id = ? AND item_id = ?", [location_id, item_id])
        found = cursor.fetchone()
        if found is None:
            raise LookupError(f"no inventory level at location {location_id} for item {item_id}")
        return {"inventory_item_id": item_id, "location_id": location_id, "available": found[0],
                "updated_at": rest_time(found[1]), "admin_graphql_api_id": level_gid(location_id, item_id)}

    def checkout(self, number: int) -> dict:
        row, body = self.row("shopify_checkouts", number), template("checkouts_create.json")
        lines = self.rows("shopify_checkout_line_items", "checkout_id", number, "pos")
        line_total = sum((li["unit_price"] * li["quantity"] for li in lines), Decimal(0))
        customer = self._customer(row["customer_id"])
        checkout_line = body["line_items"][0]
        body.update({
            "id": number, "token": row["token"], "cart_token": row["token"][:32],
            "email": row["email"] or (customer or {}).get("email"), "gateway": row["gateway"],
            "created_at": rest_time(row["created_at"]), "updated_at": rest_time(row["updated_at"]),
            "completed_at": rest_time(row["completed_at"]), "closed_at": None, "name": f"#{number}",
            "abandoned_checkout_url": f"https://{SHOP_DOMAIN}/{SHOP_ID}/checkouts/ac/{row['token']}/recover"
                                      f"?key={row['token'][:8]}",
            "discount_codes": [{"code": c, "amount": rest_money(line_total - row["subtotal"]), "type": "percentage"}
                               for c in row["discount_codes"]],
            "tax_lines": [{"price": rest_money(row["tax"]), "rate": 0.08, "title": "Tax", "channel_liable": False}],
            "total_discounts": rest_money(line_total - row["subtotal"]),
            "total_line_items_price": rest_money(line_total), "total_price": rest_money(row["total"]),
            "total_tax": rest_money(row["tax"]), "subtotal_price": rest_money(row["subtotal"]),
            "currency": SHOP_CURRENCY, "presentment_currency": SHOP_CURRENCY, "customer": customer,
            "billing_address": None, "shipping_address": None,
            "line_items": [{**copy.deepcopy(checkout_line), "key": f"{li['id']:x}", "presentment_title": li["title"],
                            "presentment_variant_title": li["variant_title"], "title": li["title"],
                            "variant_title": li["variant_title"], "sku": li["sku"], "quantity": li["quantity"],
                            "product_id": PRODUCT_BASE + li["product_seq"] // 4,
                            "variant_id": VARIANT_BASE + li["product_seq"], "vendor": None,
                            "variant_price": rest_money(li["unit_price"]), "price": rest_money(li["unit_price"]),
                            "line_price": rest_money(li["unit_price"] * li["quantity"]), "tax_lines": []}
                           for li in lines]})
        return body


webhooks.BUILDERS["shopify"] = build
webhooks.TOPICS["shopify"] = TOPICS
