"""Rows of the Shopify world as GraphQL objects (shopify.md §4, §5).

Each builder turns one row into a dict that graphql-core's default resolver reads: plain values for
scalars, callables `(info, **args)` for anything needing a query (nested connections, lookups). The
rows of one page share a `Batch`, so the children of every order on a page (line items,
fulfillments, transactions...) come from one query per table, not one per order.

Formats (§4): ids are `gid://shopify/<Type>/<n>`, DateTime `2026-11-21T08:14:03Z`, Decimal and
UnsignedInt64 strings, decimals without fixed scale (`"0.0"`), money a MoneyBag read in shopMoney.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from graphql import GraphQLError

from sandbox.services.shopify_search import Page
from sandbox.worlds.shopify_story import PRODUCT_BASE, SHOP_ID, VARIANT_BASE

SHOP_CURRENCY = "USD"
SHOP_DOMAIN = "sandbox.myshopify.com"
CENT = Decimal("0.01")
INVENTORY_NAMES = ("available", "on_hand", "committed", "incoming", "reserved", "damaged", "safety_stock",
                   "quality_control")
# Which scope each guarded field needs (inferred from the Admin reference's "Requires ... access scope").
SCOPES = {"orders": "read_orders", "order": "read_orders", "abandonedCheckouts": "read_orders",
          "customer": "read_customers", "customers": "read_customers", "fulfillment": "read_fulfillments",
          "returns": "read_returns", "return": "read_returns", "locations": "read_locations",
          "location": "read_locations", "inventoryLevels": "read_inventory", "inventoryLevel": "read_inventory",
          "inventoryItem": "read_inventory"}


# ---------- formats ----------
def gid(kind: str, number: int | str) -> str:
    return f"gid://shopify/{kind}/{number}"


def level_gid(location_id: int, item_id: int) -> str:
    return f"gid://shopify/InventoryLevel/{location_id}?inventory_item_id={item_id}"


def ts(value: datetime | None) -> str | None:
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%SZ")


def decimal(value: Decimal | float | int) -> str:
    """Shopify's Decimal: no fixed scale, at least one fractional digit (`184.9`, `0.0`)."""
    text = f"{Decimal(value).quantize(CENT, ROUND_HALF_UP):.2f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def money(amount, currency: str = SHOP_CURRENCY) -> dict:
    return {"amount": decimal(amount), "currencyCode": currency}


def money_bag(amount, currency: str = SHOP_CURRENCY, rate: Decimal = Decimal(1)) -> dict:
    presentment = (Decimal(amount) * rate).quantize(CENT, ROUND_HALF_UP)
    return {"shopMoney": money(amount), "presentmentMoney": money(presentment, currency)}


# ---------- shared context ----------
class Ctx:
    """One request's view of the world: the connection, the options and what the token may read."""

    def __init__(self, state):
        self.state, self.con, self.options = state, state.con, state.options
        self.scopes = {s.strip() for s in state.options.shopify_scopes.split(",") if s.strip()}
        self.search_warnings: list[dict] = []

    def require(self, field_name: str) -> None:
        scope = SCOPES.get(field_name)
        if scope and scope not in self.scopes:
            raise GraphQLError(f"Access denied for {field_name} field. Required access: `{scope}` access scope.",
                               extensions={"code": "ACCESS_DENIED", "requiredAccess": f"`{scope}` access scope."})


class Batch:
    """Rows of child tables for a set of parent ids, each table read once, on first use; `related`
    holds the ids the page's rows point at in other tables (customers, locations...)."""

    def __init__(self, ctx: Ctx, parent_ids: list, related: dict[str, list] | None = None):
        self.ctx, self.parent_ids, self.related = ctx, parent_ids, related or {}
        self._cache: dict[tuple[str, str], dict[Any, list[dict]]] = {}

    def children(self, table: str, key: str, parent_id, order_by: str = "id", ids: list | None = None) -> list[dict]:
        cache_key = (table, key)
        if cache_key not in self._cache:
            wanted = ids if ids is not None else self.parent_ids
            cursor = self.ctx.con.execute(
                f"SELECT * FROM {table} WHERE list_contains(?, {key}) ORDER BY {key}, {order_by}",  # noqa: S608
                [list(wanted)])
            grouped: dict[Any, list[dict]] = defaultdict(list)
            names = [d[0] for d in cursor.description]
            for row in cursor.fetchall():
                record = dict(zip(names, row, strict=True))
                grouped[record[key]].append(record)
            self._cache[cache_key] = grouped
        return self._cache[cache_key].get(parent_id, [])

    def one(self, table: str, key_id) -> dict | None:
        """A row by id for a table whose ids the page's rows point at (customers, locations...)."""
        if table not in self.related:
            cursor = self.ctx.con.execute(f"SELECT * FROM {table} WHERE id = ?", [key_id])  # noqa: S608
            row = cursor.fetchone()
            return None if row is None else dict(zip([d[0] for d in cursor.description], row, strict=True))
        rows = self.children(table, "id", key_id, ids=[i for i in self.related[table] if i is not None])
        return rows[0] if rows else None


def connection(page: Page, build: Callable[[dict], dict]) -> dict:
    nodes = [build(row) for row in page.rows]
    return {
        "pageInfo": {"hasNextPage": page.has_next, "hasPreviousPage": page.has_previous,
                     "startCursor": page.cursors[0] if page.cursors else None,
                     "endCursor": page.cursors[-1] if page.cursors else None},
        "nodes": nodes, "edges": [{"cursor": c, "node": n} for c, n in zip(page.cursors, nodes, strict=True)],
    }


def truncated(rows: list, first: int | None) -> list:
    """Lists with `first` truncate and do not page (§6)."""
    return rows if first is None else rows[:max(0, first)]


# ---------- objects ----------
def address(first: str | None, last: str | None, street: str | None, city: str | None, province: str | None,
            province_code: str | None, country: str | None, country_code: str | None, zip_code: str | None,
            validation: str | None = None) -> dict:
    name = " ".join(p for p in (first, last) if p) or None
    return {"__typename": "MailingAddress", "firstName": first, "lastName": last, "name": name, "address1": street,
            "address2": None, "city": city, "province": province, "provinceCode": province_code, "country": country,
            "countryCode": country_code, "countryCodeV2": country_code, "zip": zip_code, "phone": None,
            "company": None, "latitude": None, "longitude": None, "coordinatesValidated": False,
            "validationResultSummary": validation, "timeZone": None, "formattedArea": f"{city}, {country}",
            "formatted": lambda info, **_: [p for p in (street, f"{city} {province_code} {zip_code}", country) if p]}


def customer(row: dict) -> dict:
    name = f"{row['first_name']} {row['last_name']}"
    return {
        "__typename": "Customer", "id": gid("Customer", row["id"]), "legacyResourceId": str(row["id"]),
        "displayName": name, "firstName": row["first_name"], "lastName": row["last_name"], "tags": row["tags"],
        "numberOfOrders": str(row["number_of_orders"] or 0), "amountSpent": money(row["amount_spent"] or 0),
        "email": row["email"], "state": "ENABLED", "verifiedEmail": True, "note": None,
        "createdAt": ts(row["created_at"]), "updatedAt": ts(row["updated_at"]),
        "defaultEmailAddress": {"emailAddress": row["email"], "marketingState": "NOT_SUBSCRIBED",
                                "validFormat": True, "marketingOptInLevel": None, "marketingUpdatedAt": None},
    }


def risk_summary(row: dict) -> dict:
    assessments = [{"riskLevel": a["riskLevel"],
                    "provider": None if a["provider"] is None else {"__typename": "App", "title": a["provider"],
                                                                     "id": gid("App", 1830279)},
                    "facts": a["facts"]} for a in json.loads(row["risk_assessments"] or "[]")]
    return {"recommendation": row["risk_recommendation"], "assessments": assessments}


def transaction(row: dict, order_row: dict | None) -> dict:
    rate = order_row["presentment_rate"] if order_row else Decimal(1)
    currency = order_row["presentment_currency"] if order_row else SHOP_CURRENCY
    return {
        "__typename": "OrderTransaction", "id": gid("OrderTransaction", row["id"]), "kind": row["kind"],
        "status": row["status"], "errorCode": row["error_code"], "gateway": row["gateway"],
        "createdAt": ts(row["created_at"]), "processedAt": ts(row["processed_at"]), "test": row["test"],
        "amountSet": money_bag(row["amount"], currency, rate), "paymentId": f"#{row['id']}",
        "parentTransaction": None if row["parent_id"] is None else {"__typename": "OrderTransaction",
                                                                    "id": gid("OrderTransaction", row["parent_id"])},
    }


def fulfillment_event(row: dict) -> dict:
    return {"__typename": "FulfillmentEvent", "id": gid("FulfillmentEvent", row["id"]), "status": row["status"],
            "happenedAt": ts(row["happened_at"]), "createdAt": ts(row["created_at"]), "message": row["message"],
            "city": row["city"], "province": row["province"], "country": row["country"], "zip": row["zip"],
            "address1": None, "latitude": None, "longitude": None,
            "estimatedDeliveryAt": ts(row["estimated_delivery_at"])}


def return_(row: dict) -> dict:
    decline = None if row["decline_reason"] is None else {"reason": row["decline_reason"], "note": row["decline_note"]}
    return {"__typename": "Return", "id": gid("Return", row["id"]), "name": row["name"], "status": row["status"],
            "createdAt": ts(row["created_at"]), "closedAt": ts(row["closed_at"]),
            "totalQuantity": row["total_quantity"], "decline": decline, "returnShippingFees": [],
            "requestApprovedAt": None if row["status"] in ("REQUESTED", "DECLINED") else ts(row["created_at"])}


def refund(row: dict, order_row: dict | None) -> dict:
    rate = order_row["presentment_rate"] if order_row else Decimal(1)
    currency = order_row["presentment_currency"] if order_row else SHOP_CURRENCY
    return {"__typename": "Refund", "id": gid("Refund", row["id"]), "legacyResourceId": str(row["id"]),
            "createdAt": ts(row["created_at"]), "updatedAt": ts(row["created_at"]),
            "processedAt": ts(row["created_at"]), "note": row["note"],
            "totalRefundedSet": money_bag(row["amount"], currency, rate), "totalRefunded": money(row["amount"]),
            "duties": []}


def variant(product_seq: int, sku: str | None, title: str | None, variant_title: str | None, price=None) -> dict:
    display = f"{title} - {variant_title}" if variant_title else (title or "")
    return {"__typename": "ProductVariant", "id": gid("ProductVariant", VARIANT_BASE + product_seq),
            "legacyResourceId": str(VARIANT_BASE + product_seq), "sku": sku, "title": variant_title or "Default Title",
            "displayName": display, "price": None if price is None else decimal(price)}


def line_item(row: dict, rate: Decimal, currency: str) -> dict:
    price, qty = row["unit_price"], row["quantity"]
    name = f"{row['title']} - {row['variant_title']}" if row["variant_title"] else row["title"]
    total = money_bag(price * qty, currency, rate)
    return {"__typename": "LineItem", "id": gid("LineItem", row["id"]), "name": name, "title": row["title"],
            "variantTitle": row["variant_title"], "sku": row["sku"], "quantity": qty, "currentQuantity": qty,
            "originalUnitPriceSet": money_bag(price, currency, rate), "originalTotalSet": total,
            "discountedTotalSet": lambda info, **_: total,
            "variant": variant(row["product_seq"], row["sku"], row["title"], row["variant_title"], price)}


def checkout_line_item(row: dict) -> dict:
    price, qty = row["unit_price"], row["quantity"]
    return {"__typename": "AbandonedCheckoutLineItem", "id": gid("AbandonedCheckoutLineItem", row["id"]),
            "title": row["title"], "variantTitle": row["variant_title"], "sku": row["sku"], "quantity": qty,
            "originalUnitPriceSet": money_bag(price), "originalTotalPriceSet": money_bag(price * qty),
            "discountedUnitPriceSet": money_bag(price), "discountedTotalPriceSet": money_bag(price * qty),
            "customAttributes": [],
            "variant": variant(row["product_seq"], row["sku"], row["title"], row["variant_title"], price)}


def shop() -> dict:
    return {"__typename": "Shop", "id": gid("Shop", SHOP_ID), "name": "Sandbox Shop", "myshopifyDomain": SHOP_DOMAIN,
            "email": "shop@sandbox.example", "contactEmail": "shop@sandbox.example", "currencyCode": SHOP_CURRENCY,
            "ianaTimezone": "Etc/UTC", "timezoneAbbreviation": "UTC", "url": f"https://{SHOP_DOMAIN}"}


def product_gid(product_seq: int) -> str:
    return gid("Product", PRODUCT_BASE + product_seq // 4)
