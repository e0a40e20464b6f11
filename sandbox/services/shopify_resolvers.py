"""Root fields and connections of the Shopify Admin API over the world's DuckDB tables (shopify.md §5, §6).

Pages are served by keyset SQL (`shopify_search.fetch_page`); the children of a page's rows come
from one batched query per table. Nested connections without cursor, query or sort (the usual
first page of an order's returns or line items) are cut from that batch too; anything else goes to
SQL. An id that names nothing resolves to null without an error.
"""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

from graphql import GraphQLError

from sandbox.services import shopify_objects as obj
from sandbox.services.shopify_listings import (
    CHECKOUTS,
    CHILDREN,
    CUSTOMERS,
    LEVELS_BY_ITEM,
    LEVELS_BY_LOCATION,
    LOCATIONS,
    ORDERS,
)
from sandbox.services.shopify_objects import Batch, Ctx, connection, gid, money_bag, truncated, ts
from sandbox.services.shopify_search import Listing, Page, encode_cursor, fetch_page, page_size

GID = re.compile(r"^gid://shopify/(?P<kind>[A-Za-z]+)/(?P<id>\d+)(?:\?inventory_item_id=(?P<item>\d+))?$")
ALL_ORDERS_DAYS = 60  # without read_all_orders, older orders are hidden (§3)

class Resolver:
    def __init__(self, ctx: Ctx):
        self.ctx, self.con = ctx, ctx.con
        self._locations: dict[int, dict] | None = None

    # ---------- the root ----------
    def root(self) -> dict:
        return {
            "orders": self.orders, "order": lambda info, id: self._guarded("order", lambda: self.node(id, "Order")),
            "abandonedCheckouts": self.abandoned_checkouts,
            "fulfillment": lambda info, id: self._guarded("fulfillment", lambda: self.node(id, "Fulfillment")),
            "customer": lambda info, id: self._guarded("customer", lambda: self.node(id, "Customer")),
            "customers": self.customers,
            "return": lambda info, id: self._guarded("return", lambda: self.node(id, "Return")),
            "locations": self.locations,
            "location": lambda info, id=None: self._guarded("location", lambda: self.node(id, "Location") if id
                                                            else self._primary_location()),
            "inventoryLevel": lambda info, id: self._guarded("inventoryLevel", lambda: self.node(id, "InventoryLevel")),
            "inventoryItem": lambda info, id: self._guarded("inventoryItem", lambda: self.node(id, "InventoryItem")),
            "node": lambda info, id: self.node(id),
            "nodes": lambda info, ids: [self.node(one) for one in ids],
            "shop": obj.shop(),
        }

    def _guarded(self, field_name: str, resolve):
        self.ctx.require(field_name)
        return resolve()

    def _page(self, info, listing: Listing, args: dict, where: str = "TRUE", params: list | None = None) -> Page:
        page = fetch_page(self.con, listing, args, info.field_name, self.ctx.options.shopify_pagination_cap,
                          where, params)
        if page.warnings:
            self.ctx.search_warnings.append({"path": [str(p) for p in info.path.as_list()],
                                             "query": args.get("query"), "warnings": page.warnings})
        return page

    def _visible_orders(self) -> tuple[str, list]:
        if "read_all_orders" in self.ctx.scopes:
            return "TRUE", []
        now = max(self.ctx.state.now(), self.ctx.state.anchor.replace(tzinfo=None))
        return "t.created_at >= ?", [now - timedelta(days=ALL_ORDERS_DAYS)]

    def orders(self, info, **args) -> dict:
        self.ctx.require("orders")
        page = self._page(info, ORDERS, args, *self._visible_orders())
        batch = Batch(self.ctx, [r["id"] for r in page.rows],
                      {"shopify_customers": [r["customer_id"] for r in page.rows]})
        return connection(page, lambda row: self.order(row, batch))

    def abandoned_checkouts(self, info, **args) -> dict:
        self.ctx.require("abandonedCheckouts")
        page = self._page(info, CHECKOUTS, args)
        batch = Batch(self.ctx, [r["id"] for r in page.rows],
                      {"shopify_customers": [r["customer_id"] for r in page.rows]})
        return connection(page, lambda row: self.checkout(row, batch))

    def customers(self, info, **args) -> dict:
        self.ctx.require("customers")
        return connection(self._page(info, CUSTOMERS, args), obj.customer)

    def locations(self, info, includeInactive=False, **args) -> dict:  # noqa: N803 (the API's argument name)
        self.ctx.require("locations")
        page = self._page(info, LOCATIONS, args, "TRUE" if includeInactive else "t.is_active")
        return connection(page, self.location)

    # ---------- nested connections ----------
    def _children(self, info, args: dict, name: str, batch: Batch, parent_id: int, build, group_id=None) -> dict:
        """A nested connection: cut from the page's batch when it is a plain first or last page (no
        cursor, query or reverse), else read with SQL."""
        table, key, listing = CHILDREN[name]
        n, backwards = page_size(args, info.field_name)
        if any(args.get(a) for a in ("after", "before", "query", "reverse")):
            return connection(self._page(info, listing, args, f"t.{key} = ?", [parent_id]), build)
        sort_expr, _ = listing.sort_keys.get(args.get("sortKey") or listing.default_sort,
                                             listing.sort_keys[listing.default_sort])
        column = sort_expr.removeprefix("t.")
        group_key = "order_id" if key == "fulfillment_id" else key  # events are batched per order
        rows = batch.children(table, group_key, group_id if group_id is not None else parent_id)
        rows = sorted((r for r in rows if r[key] == parent_id), key=lambda r: (r[column], r["id"]))
        chosen = (rows[-n:] if n else []) if backwards else rows[:n]
        more = len(rows) > n
        with_value = column != "id"
        page = Page(chosen, [encode_cursor(r["id"], r[column], with_value) for r in chosen],
                    has_next=more and not backwards, has_previous=more and backwards, warnings=[])
        return connection(page, build)

    # ---------- objects needing the world ----------
    def order(self, row: dict, batch: Batch) -> dict:
        oid, rate, currency = row["id"], row["presentment_rate"], row["presentment_currency"]

        def bag(amount) -> dict:
            return money_bag(amount, currency, rate)

        lines = batch.children("shopify_line_items", "order_id", oid, "pos")
        quantity = sum(li["quantity"] for li in lines)
        current = row["total"] - row["total_refunded"]
        financial, cancelled = row["financial_status"], row["cancelled_at"] is not None
        received = row["total"] - row["total_outstanding"] if financial not in ("VOIDED", "PENDING") else Decimal(0)
        ship = obj.address(row["ship_first_name"], row["ship_last_name"], row["ship_address1"], row["ship_city"],
                           row["ship_province"], row["ship_province_code"], row["ship_country"],
                           row["ship_country_code"], row["ship_zip"], row["address_validation"])
        fulfillments = batch.children("shopify_fulfillments", "order_id", oid, "pos")
        transactions = batch.children("shopify_transactions", "order_id", oid, "created_at, id")
        refunds = batch.children("shopify_refunds", "order_id", oid, "created_at, id")
        level = row["risk_level"]
        return {
            "__typename": "Order", "id": gid("Order", oid), "legacyResourceId": str(oid), "name": row["name"],
            "number": row["number"], "createdAt": ts(row["created_at"]), "updatedAt": ts(row["updated_at"]),
            "processedAt": ts(row["processed_at"]), "closedAt": ts(row["closed_at"]),
            "closed": row["closed_at"] is not None, "cancelledAt": ts(row["cancelled_at"]),
            "cancelReason": row["cancel_reason"], "test": row["test"], "tags": row["tags"], "email": row["email"],
            "phone": None, "note": None, "confirmed": True, "edited": False, "taxesIncluded": False,
            "taxExempt": False, "dutiesIncluded": False, "estimatedTaxes": False, "requiresShipping": True,
            "customerAcceptsMarketing": False, "hasTimelineComment": False, "merchantEditable": not cancelled,
            "displayFinancialStatus": financial, "displayFulfillmentStatus": row["fulfillment_status"],
            "returnStatus": row["return_status"], "currencyCode": obj.SHOP_CURRENCY,
            "presentmentCurrencyCode": currency, "discountCodes": row["discount_codes"],
            "discountCode": row["discount_codes"][0] if row["discount_codes"] else None,
            "paymentGatewayNames": [row["gateway"]], "sourceName": "web",
            "fullyPaid": financial in ("PAID", "PARTIALLY_REFUNDED", "REFUNDED"),
            "unpaid": financial in ("PENDING", "AUTHORIZED", "EXPIRED"), "canMarkAsPaid": financial == "PENDING",
            "capturable": False, "refundable": financial in ("PAID", "PARTIALLY_REFUNDED") and not cancelled,
            "fulfillable": row["fulfillment_status"] == "UNFULFILLED" and not cancelled,
            "restockable": False, "canNotifyCustomer": not cancelled,
            "subtotalLineItemsQuantity": quantity, "currentSubtotalLineItemsQuantity": quantity,
            "subtotalPriceSet": bag(row["subtotal"]), "currentSubtotalPriceSet": bag(row["subtotal"]),
            "totalPriceSet": bag(row["total"]), "originalTotalPriceSet": bag(row["total"]),
            "currentTotalPriceSet": bag(current), "totalRefundedSet": bag(row["total_refunded"]),
            "totalOutstandingSet": bag(row["total_outstanding"]), "totalReceivedSet": bag(received),
            "netPaymentSet": bag(received - row["total_refunded"]), "totalTaxSet": bag(row["tax"]),
            "currentTotalTaxSet": bag(row["tax"]), "totalShippingPriceSet": bag(row["shipping"]),
            "currentShippingPriceSet": bag(row["shipping"]), "totalDiscountsSet": bag(0),
            "currentTotalDiscountsSet": bag(0), "totalCapturableSet": bag(0), "totalTipReceivedSet": bag(0),
            "totalRefundedShippingSet": bag(0), "refundDiscrepancySet": bag(0),
            "totalPrice": obj.decimal(row["total"]), "totalRefunded": obj.decimal(row["total_refunded"]),
            "shippingAddress": ship, "billingAddress": ship, "displayAddress": ship,
            "billingAddressMatchesShippingAddress": True,
            "risk": obj.risk_summary(row), "riskLevel": {"NONE": "LOW", "PENDING": "LOW"}.get(level, level),
            "customer": lambda info: self._guarded("customer", lambda: self._customer(row["customer_id"], batch)),
            "fulfillments": lambda info, first=None, **_: truncated(
                [self.fulfillment(f, batch) for f in fulfillments], first),
            "fulfillmentsCount": {"count": len(fulfillments), "precision": "EXACT"},
            "transactions": lambda info, first=None, **_: truncated([obj.transaction(t, row) for t in transactions],
                                                                    first),
            "transactionsCount": {"count": len(transactions), "precision": "EXACT"},
            "refunds": lambda info, first=None: truncated([obj.refund(r, row) for r in refunds], first),
            "returns": lambda info, **args: self._guarded("returns", lambda: self._children(
                info, args, "returns", batch, oid, obj.return_)),
            "lineItems": lambda info, **args: self._children(
                info, args, "lineItems", batch, oid, lambda li: obj.line_item(li, rate, currency)),
            "customAttributes": [], "additionalFees": [], "alerts": [], "disputes": [], "taxLines": [],
            "currentTaxLines": [], "merchantEditableErrors": [],
            "statusPageUrl": lambda info, **_: f"https://{obj.SHOP_DOMAIN}/{obj.SHOP_ID}/orders/{oid}/authenticate",
        }

    def _customer(self, customer_id: int | None, batch: Batch) -> dict | None:
        if customer_id is None:
            return None
        row = batch.one("shopify_customers", customer_id)
        return obj.customer(row) if row else None

    def fulfillment(self, row: dict, batch: Batch) -> dict:
        fid, oid = row["id"], row["order_id"]
        tracking = [{"company": row["tracking_company"], "number": row["tracking_number"],
                     "url": row["tracking_url"]}] if row["tracking_number"] else []
        return {
            "__typename": "Fulfillment", "id": gid("Fulfillment", fid), "legacyResourceId": str(fid),
            "name": row["name"], "status": row["status"], "displayStatus": row["display_status"],
            "createdAt": ts(row["created_at"]), "updatedAt": ts(row["updated_at"]),
            "inTransitAt": ts(row["in_transit_at"]), "deliveredAt": ts(row["delivered_at"]),
            "estimatedDeliveryAt": ts(row["estimated_delivery_at"]), "requiresShipping": True,
            "totalQuantity": sum(li["quantity"] for li in batch.children("shopify_line_items", "order_id", oid, "pos")),
            "trackingInfo": lambda info, first=None: truncated(tracking, first),
            "events": lambda info, **args: self._children(info, args, "events", batch, fid, obj.fulfillment_event,
                                                          group_id=oid),
            "location": lambda info: self.location(self._all_locations().get(row["location_id"])),
            "order": lambda info: self.node(gid("Order", oid), "Order"),
            "service": None, "originAddress": None,
        }

    def checkout(self, row: dict, batch: Batch) -> dict:
        cid = row["id"]
        lines = batch.children("shopify_checkout_line_items", "checkout_id", cid, "pos")
        line_total = sum((li["unit_price"] * li["quantity"] for li in lines), Decimal(0))
        return {
            "__typename": "AbandonedCheckout", "id": gid("AbandonedCheckout", cid), "name": f"#{cid}",
            "createdAt": ts(row["created_at"]), "updatedAt": ts(row["updated_at"]),
            "completedAt": ts(row["completed_at"]), "discountCodes": row["discount_codes"], "note": "",
            "abandonedCheckoutUrl": f"https://{obj.SHOP_DOMAIN}/{obj.SHOP_ID}/checkouts/ac/{row['token']}"
                                    f"/recover?key={row['token'][:8]}",
            "defaultCursor": encode_cursor(cid, with_value=False), "taxesIncluded": False, "customAttributes": [],
            "taxLines": [], "lineItemsQuantity": sum(li["quantity"] for li in lines),
            "totalPriceSet": money_bag(row["total"]), "subtotalPriceSet": money_bag(row["subtotal"]),
            "totalTaxSet": money_bag(row["tax"]), "totalLineItemsPriceSet": money_bag(line_total),
            "totalDiscountSet": money_bag(max(Decimal(0), line_total - row["subtotal"])), "totalDutiesSet": None,
            "customer": lambda info: self._guarded("customer", lambda: self._customer(row["customer_id"], batch)),
            "lineItems": lambda info, **args: self._children(info, args, "checkoutLineItems", batch, cid,
                                                             obj.checkout_line_item),
        }

    def _all_locations(self) -> dict[int, dict]:
        if self._locations is None:
            cursor = self.con.execute("SELECT * FROM shopify_locations ORDER BY id")
            names = [d[0] for d in cursor.description]
            self._locations = {r[0]: dict(zip(names, r, strict=True)) for r in cursor.fetchall()}
        return self._locations

    def _primary_location(self) -> dict | None:
        return self.location(next(iter(self._all_locations().values()), None))

    def location(self, row: dict | None) -> dict | None:
        if row is None:
            return None
        lid = row["id"]
        primary = lid == next(iter(self._all_locations()))
        return {
            "__typename": "Location", "id": gid("Location", lid), "legacyResourceId": str(lid), "name": row["name"],
            "isActive": row["is_active"], "isPrimary": primary, "fulfillsOnlineOrders": row["is_active"],
            "createdAt": ts(row["created_at"]), "updatedAt": ts(row["created_at"]),
            "deactivatedAt": None if row["is_active"] else ts(row["created_at"]),
            "address": {"address1": row["address1"], "address2": None, "city": row["city"],
                        "province": row["province"], "countryCode": row["country_code"], "zip": row["zip"],
                        "formatted": [row["address1"], f"{row['city']} {row['zip']}", row["country_code"]]},
            "inventoryLevels": lambda info, **args: self._guarded("inventoryLevels", lambda: self._levels(
                info, args, LEVELS_BY_LOCATION, "t.location_id = ?", lid)),
            "inventoryLevel": lambda info, inventoryItemId: self._guarded(  # noqa: N803
                "inventoryLevel", lambda: self._level_at(lid, inventoryItemId, "InventoryItem")),
        }

    def _levels(self, info, args: dict, listing: Listing, where: str, key: int) -> dict:
        page = self._page(info, listing, args, where, [key])
        batch = Batch(self.ctx, [], {"shopify_inventory_items": [r["item_id"] for r in page.rows]})
        return connection(page, lambda row: self.level(row, batch))

    def _level_at(self, fixed: int, other_gid: str, kind: str) -> dict | None:
        other = self._parse(other_gid)
        if other is None or other[0] != kind:
            return None
        location_id, item_id = (fixed, other[1]) if kind == "InventoryItem" else (other[1], fixed)
        return self._level_row(location_id, item_id)

    def _level_row(self, location_id: int, item_id: int) -> dict | None:
        cursor = self.con.execute("SELECT * FROM shopify_inventory_levels WHERE location_id = ? AND item_id = ?",
                                  [location_id, item_id])
        row = cursor.fetchone()
        if row is None:
            return None
        record = dict(zip([d[0] for d in cursor.description], row, strict=True))
        return self.level(record, Batch(self.ctx, [], {"shopify_inventory_items": [item_id]}))

    def level(self, row: dict, batch: Batch) -> dict:
        location_id, item_id = row["location_id"], row["item_id"]
        quantities = {"available": row["available"], "on_hand": row["available"]}

        def quantities_for(info, names):
            return [{"__typename": "InventoryQuantity", "id": f"{obj.level_gid(location_id, item_id)}&name={name}",
                     "name": name, "quantity": quantities.get(name, 0), "updatedAt": ts(row["updated_at"])}
                    for name in names if name in obj.INVENTORY_NAMES]

        return {
            "__typename": "InventoryLevel", "id": obj.level_gid(location_id, item_id),
            "createdAt": ts(row["created_at"]), "updatedAt": ts(row["updated_at"]), "canDeactivate": True,
            "deactivationAlert": None, "quantities": quantities_for,
            "item": lambda info: self.item(batch.one("shopify_inventory_items", item_id)),
            "location": lambda info: self.location(self._all_locations().get(location_id)),
        }

    def item(self, row: dict | None) -> dict | None:
        if row is None:
            return None
        iid = row["id"]
        title, _, variant_title = (row["display_name"] or "").partition(" / ")
        base, _, color = title.partition(" - ")
        variant = obj.variant(row["product_seq"], row["sku"], base, " / ".join(p for p in (color, variant_title) if p))
        variant["displayName"] = row["display_name"]
        variant["inventoryItem"] = lambda info: self.item(row)
        return {
            "__typename": "InventoryItem", "id": gid("InventoryItem", iid), "legacyResourceId": str(iid),
            "sku": row["sku"], "tracked": row["tracked"], "createdAt": ts(row["created_at"]),
            "updatedAt": ts(row["updated_at"]), "requiresShipping": True, "variant": variant,
            "variants": lambda info, **args: self._single(info, args, variant, row["product_seq"]),
            "inventoryLevels": lambda info, **args: self._guarded("inventoryLevels", lambda: self._levels(
                info, args, LEVELS_BY_ITEM, "t.item_id = ?", iid)),
            "inventoryLevel": lambda info, locationId: self._guarded(  # noqa: N803
                "inventoryLevel", lambda: self._level_at(iid, locationId, "Location")),
        }

    def _single(self, info, args: dict, node: dict, key: int) -> dict:
        n, _ = page_size(args, info.field_name)
        rows = [node] if n and not args.get("after") and not args.get("before") else []
        page = Page([{"id": key}] if rows else [], [encode_cursor(key, with_value=False)] if rows else [],
                    False, False, [])
        return connection(page, lambda _row: node)

    # ---------- ids ----------
    @staticmethod
    def _parse(value: str) -> tuple[str, int, int | None] | None:
        match = GID.match(value or "")
        if not match:
            return None
        return match["kind"], int(match["id"]), int(match["item"]) if match["item"] else None

    def node(self, value: str, expected: str | None = None) -> dict | None:
        """Any emulated object by gid; an id of the right shape naming nothing is null, without error."""
        parsed = self._parse(value)
        if parsed is None:
            raise GraphQLError(f"Invalid global id '{value}'",
                               extensions={"code": "argumentLiteralsIncompatible", "typeName": "CoercionError"})
        kind, number, item = parsed
        if expected and kind != expected:
            return None
        guard = {"Order": "order", "Customer": "customer", "Return": "return", "Location": "location",
                 "InventoryLevel": "inventoryLevel", "InventoryItem": "inventoryItem",
                 "Fulfillment": "fulfillment", "AbandonedCheckout": "abandonedCheckouts"}.get(kind)
        if guard and not expected:
            self.ctx.require(guard)
        if kind == "InventoryLevel":
            return self._level_row(number, item) if item is not None else None
        if kind == "Location":
            return self.location(self._all_locations().get(number))
        if kind == "Shop":
            return obj.shop() if number == obj.SHOP_ID else None
        return self._by_id(kind, number)

    def _by_id(self, kind: str, number: int) -> dict | None:
        table, order_key = {
            "Order": ("shopify_orders", "id"), "Fulfillment": ("shopify_fulfillments", "order_id"),
            "FulfillmentEvent": ("shopify_fulfillment_events", "order_id"),
            "OrderTransaction": ("shopify_transactions", "order_id"), "Refund": ("shopify_refunds", "order_id"),
            "Return": ("shopify_returns", "order_id"), "LineItem": ("shopify_line_items", "order_id"),
            "Customer": ("shopify_customers", None), "AbandonedCheckout": ("shopify_checkouts", None),
            "InventoryItem": ("shopify_inventory_items", None),
        }.get(kind, (None, None))
        if table is None:
            return None
        cursor = self.con.execute(f"SELECT * FROM {table} WHERE id = ?", [number])  # noqa: S608 (fixed names)
        found = cursor.fetchone()
        if found is None:
            return None
        row = dict(zip([d[0] for d in cursor.description], found, strict=True))
        if kind == "Customer":
            return obj.customer(row)
        if kind == "InventoryItem":
            return self.item(row)
        if kind == "AbandonedCheckout":
            return self.checkout(row, Batch(self.ctx, [number], {"shopify_customers": [row["customer_id"]]}))
        order_id = row[order_key]
        order_row = self._order_row(order_id)
        if order_row is None:  # hidden without read_all_orders
            return None
        batch = Batch(self.ctx, [order_id], {"shopify_customers": [order_row["customer_id"]]})
        build = {"Order": lambda: self.order(order_row, batch), "Fulfillment": lambda: self.fulfillment(row, batch),
                 "FulfillmentEvent": lambda: obj.fulfillment_event(row),
                 "OrderTransaction": lambda: obj.transaction(row, order_row),
                 "Refund": lambda: obj.refund(row, order_row), "Return": lambda: obj.return_(row),
                 "LineItem": lambda: obj.line_item(row, order_row["presentment_rate"],
                                                   order_row["presentment_currency"])}[kind]
        return build()

    def _order_row(self, order_id: int) -> dict | None:
        where, params = self._visible_orders()
        cursor = self.con.execute(f"SELECT * FROM shopify_orders t WHERE t.id = ? AND {where}",  # noqa: S608
                                  [order_id, *params])
        found = cursor.fetchone()
        return None if found is None else dict(zip([d[0] for d in cursor.description], found, strict=True))
