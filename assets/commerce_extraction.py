"""Shopify extraction (group commerce): orders with their fulfillments and tracking events, transactions,
refunds and returns; abandoned checkouts; inventory levels. Read through `resources/shopify.py`, which
keeps shopify.md §10's rules (cost pacing, THROTTLED waited out, windows halved at the 25 000 cap).

Partitioned by the day of `updatedAt`: an order and everything beneath it land in the partition of the
day the order last changed (its `updatedAt` moves whenever anything beneath it does), a checkout in its
own. Pages are streamed into a staging DuckDB file and swapped in per partition in one transaction, so
a re-run gives the same rows. The webhook path (sensors/webhook_inbox.py) writes the same rows with
`upsert_rows`; a poll's swap keeps those a webhook brought in after the poll's window closed.

§5.1 reads no shipping address, e-mail or line items, which the address-review and abandoned-checkout
rules need: `DETAILS_QUERY` reads them for each page's orders by id (cost 2 + 14 n, n <= 14).
"""


from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from assets.extraction import EXTRACTION_POLICY, extraction_window, partition_date
from assets.warehouse import ensure_tables, staging, table_schema, transaction
from orchestration.partitions import daily_partitions, day_bounds, partition_days
from resources.shopify import FULL_LISTS, ORDERS_PAGE, ShopifyClient, ShopifyResource, decimal_money, parse_time
from resources.shopify_queries import LEVELS_QUERY, ORDERS_QUERY

DETAILS_QUERY = """
query OrderDetails($first: Int!, $after: String, $query: String!) {
  orders(first: $first, after: $after, query: $query) {
    pageInfo { hasNextPage endCursor }
    nodes { id email shippingAddress { countryCodeV2 validationResultSummary } lineItems(first: 10) { nodes { sku } } }
  }
}"""
ORDER_TABLES = ("shopify_orders", "shopify_fulfillments", "shopify_fulfillment_events", "shopify_transactions",
                "shopify_refunds", "shopify_returns")
RISK_RANK = {"NONE": 0, "PENDING": 1, "LOW": 2, "MEDIUM": 3, "HIGH": 4}
LISTS = 5
COMMERCE = dict(group_name="commerce", kinds={"shopify", "duckdb"}, owners=["team:commerce-operations"])


def first_day() -> date:
    return date.fromisoformat(daily_partitions.get_first_partition_key())


def _time(value: str | None) -> datetime | None:
    return parse_time(value) if value else None


def _money(bag: dict | None) -> tuple[str | None, str | None]:
    """A MoneyBag's shop money as (exact decimal string, currency): DuckDB casts it to DECIMAL, never float."""
    shop = (bag or {}).get("shopMoney") or {}
    return (None if shop.get("amount") is None else str(shop["amount"])), shop.get("currencyCode")


def _number(gid: str) -> str:
    return gid.rsplit("/", 1)[-1]


# ---------- rows ----------
def order_rows(order: dict, details: dict | None, day: date, now: datetime, source: str) -> dict[str, list[dict]]:
    """One §5.1 order (plus its details) as rows of the six order tables, all in partition `day`."""
    oid, details = order["id"], details or {}
    assessments = (order.get("risk") or {}).get("assessments") or []
    levels = [a["riskLevel"] for a in assessments if a.get("riskLevel")]
    customer, address = order.get("customer") or {}, details.get("shippingAddress") or {}
    total, currency = _money(order.get("totalPriceSet"))
    row = {
        "partition_date": day, "order_id": oid, "name": order["name"], "created_at": _time(order["createdAt"]),
        "updated_at": _time(order["updatedAt"]), "processed_at": _time(order.get("processedAt")),
        "closed_at": _time(order.get("closedAt")), "cancelled_at": _time(order.get("cancelledAt")),
        "cancel_reason": order.get("cancelReason"), "test": order.get("test"), "tags": order.get("tags") or [],
        "financial_status": order.get("displayFinancialStatus"),
        "fulfillment_status": order.get("displayFulfillmentStatus"), "return_status": order.get("returnStatus"),
        "customer_id": customer.get("id"), "customer_name": customer.get("displayName"),
        "customer_tags": customer.get("tags") or [], "email": details.get("email"), "total": total,
        "current_total": _money(order.get("currentTotalPriceSet"))[0],
        "refunded": _money(order.get("totalRefundedSet"))[0], "outstanding": _money(order.get("totalOutstandingSet"))[0],
        "currency": currency, "risk_level": max(levels, key=lambda v: RISK_RANK.get(v, 0)) if levels else None,
        "risk_recommendation": (order.get("risk") or {}).get("recommendation"),
        "risk_facts": [f["description"] for a in assessments for f in a.get("facts") or []
                       if f.get("sentiment") == "NEGATIVE"],
        "address_validation": address.get("validationResultSummary"), "ship_country": address.get("countryCodeV2"),
        "skus": [li["sku"] for li in (details.get("lineItems") or {}).get("nodes") or [] if li.get("sku")],
        "source": source, "extracted_at": now,
    }
    out: dict[str, list[dict]] = {"shopify_orders": [row], **{t: [] for t in ORDER_TABLES[1:]}}
    for f in order.get("fulfillments") or []:
        tracking = (f.get("trackingInfo") or [{}])[0] if f.get("trackingInfo") else {}
        out["shopify_fulfillments"].append({
            "partition_date": day, "fulfillment_id": f["id"], "order_id": oid, "name": f.get("name"),
            "status": f.get("status"), "display_status": f.get("displayStatus"), "created_at": _time(f["createdAt"]),
            "updated_at": _time(f["updatedAt"]), "in_transit_at": _time(f.get("inTransitAt")),
            "delivered_at": _time(f.get("deliveredAt")), "estimated_delivery_at": _time(f.get("estimatedDeliveryAt")),
            "tracking_company": tracking.get("company"), "tracking_number": tracking.get("number"),
            "tracking_url": tracking.get("url")})
        for e in f.get("events") or []:
            out["shopify_fulfillment_events"].append({
                "partition_date": day, "event_id": e["id"], "fulfillment_id": f["id"], "order_id": oid,
                "status": e.get("status"), "happened_at": _time(e.get("happenedAt")),
                "created_at": _time(e.get("createdAt")), "message": e.get("message"), "city": e.get("city"),
                "province": e.get("province"), "country": e.get("country")})
    for t in order.get("transactions") or []:
        amount, money = _money(t.get("amountSet"))
        out["shopify_transactions"].append({
            "partition_date": day, "transaction_id": t["id"], "order_id": oid, "kind": t.get("kind"),
            "status": t.get("status"), "error_code": t.get("errorCode"), "gateway": t.get("gateway"),
            "created_at": _time(t.get("createdAt")), "processed_at": _time(t.get("processedAt")),
            "test": t.get("test"), "amount": amount, "currency": money})
    for r in order.get("refunds") or []:
        amount, money = _money(r.get("totalRefundedSet"))
        out["shopify_refunds"].append({"partition_date": day, "refund_id": r["id"], "order_id": oid,
                                       "created_at": _time(r.get("createdAt")), "note": r.get("note"),
                                       "amount": amount, "currency": money})
    for r in (order.get("returns") or {}).get("nodes") or []:
        decline = r.get("decline") or {}
        out["shopify_returns"].append({
            "partition_date": day, "return_id": r["id"], "order_id": oid, "name": r.get("name"),
            "status": r.get("status"), "created_at": _time(r.get("createdAt")), "closed_at": _time(r.get("closedAt")),
            "total_quantity": r.get("totalQuantity"), "decline_reason": decline.get("reason"),
            "decline_note": decline.get("note")})
    return out


def checkout_row(checkout: dict, day: date, now: datetime) -> dict:
    customer = checkout.get("customer") or {}
    total, currency = _money(checkout.get("totalPriceSet"))
    return {
        "partition_date": day, "checkout_id": checkout["id"], "name": checkout.get("name"),
        "created_at": _time(checkout["createdAt"]), "updated_at": _time(checkout["updatedAt"]),
        "completed_at": _time(checkout.get("completedAt")), "recovery_url": checkout.get("abandonedCheckoutUrl"),
        "discount_codes": checkout.get("discountCodes") or [], "total": total, "currency": currency,
        "customer_id": customer.get("id"), "customer_name": customer.get("displayName"),
        "customer_tags": customer.get("tags") or [],
        "email": (customer.get("defaultEmailAddress") or {}).get("emailAddress"),
        "skus": [li["sku"] for li in (checkout.get("lineItems") or {}).get("nodes") or [] if li.get("sku")],
        "extracted_at": now,
    }


def level_row(level: dict, location: dict, now: datetime) -> dict:
    item = level.get("item") or {}
    variants = (item.get("variants") or {}).get("nodes") or []
    available = next((q["quantity"] for q in level.get("quantities") or [] if q.get("name") == "available"), None)
    return {"level_id": level["id"], "location_id": location["id"], "location_name": location.get("name"),
            "item_id": item.get("id"), "sku": item.get("sku"), "tracked": item.get("tracked"),
            "variant": variants[0]["displayName"] if variants else None, "available": available,
            "updated_at": _time(level.get("updatedAt")), "observed_at": now}


# ---------- reads beyond the client's windows ----------
def _chunks(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _by_ids(client: ShopifyClient, query: str, ids: list[str], variables: dict) -> list[dict]:
    """Every node of `orders(query: "id:a OR id:b ...")`, page by page."""
    nodes: list[dict] = []
    for chunk in _chunks(ids, ORDERS_PAGE):
        search, after = " OR ".join(f"id:{_number(i)}" for i in chunk), None
        while True:
            data = client.execute(query, {**variables, "first": len(chunk), "after": after, "query": search},
                                  page_size_var="first")
            nodes += data["orders"]["nodes"]
            if not data["orders"]["pageInfo"]["hasNextPage"]:
                break
            after = data["orders"]["pageInfo"]["endCursor"]
    return nodes


def order_details(client: ShopifyClient, ids: list[str]) -> dict[str, dict]:
    return {node["id"]: node for node in _by_ids(client, DETAILS_QUERY, ids, {})}


def read_orders(client: ShopifyClient, ids: list[str]) -> list[dict]:
    """The current version of these orders, as a one-day poll of their `updatedAt` day would read them:
    lists completed when full, tracking events for fulfillments updated that day."""
    orders = []
    for order in decimal_money(_by_ids(client, ORDERS_QUERY, ids, {"lists": LISTS})):
        full = any(len(order.get(n) or []) >= LISTS for n in ("fulfillments", "transactions", "refunds")) \
            or len((order.get("returns") or {}).get("nodes") or []) >= LISTS
        if full:
            order = decimal_money(_by_ids(client, ORDERS_QUERY, [order["id"]], {"lists": FULL_LISTS}))[0]
        lo, hi = day_bounds(parse_time(order["updatedAt"]).date())
        for fulfillment in order.get("fulfillments") or []:
            if lo <= parse_time(fulfillment["updatedAt"]) < hi:
                fulfillment["events"] = client.fulfillment_events(fulfillment["id"])
        orders.append(order)
    return orders


def read_level(client: ShopifyClient, location: dict, item_id: str) -> dict | None:
    data = client.execute(LEVELS_QUERY, {"locationId": location["id"], "first": 1, "after": None,
                                         "query": f"inventory_item_id:{_number(item_id)}"})
    nodes = ((data.get("location") or {}).get("inventoryLevels") or {}).get("nodes") or []
    return level_row(decimal_money(nodes[0]), location, datetime.now(UTC)) if nodes else None


def order_tables_for(client: ShopifyClient, orders: list[dict], now: datetime, source: str) -> dict[str, list[dict]]:
    """Rows of the six order tables for a page of §5.1 orders (details read by id)."""
    details = order_details(client, [o["id"] for o in orders]) if orders else {}
    out: dict[str, list[dict]] = {t: [] for t in ORDER_TABLES}
    for order in orders:
        day = partition_date(parse_time(order["updatedAt"]), first_day())
        for table, rows in order_rows(order, details.get(order["id"]), day, now, source).items():
            out[table] += rows
    return out


# ---------- writing ----------
ID_COLUMNS = {"shopify_orders": "order_id", "shopify_abandoned_checkouts": "checkout_id"}


def _insert(con, table: str, rows: list[dict]) -> None:
    if rows:
        con.register("rows_frame", pd.DataFrame(rows))
        con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM rows_frame")  # noqa: S608 (fixed names)
        con.unregister("rows_frame")


def upsert_rows(con, tables: dict[str, list[dict]], parent: str) -> None:
    """Webhook rows: each parent record (order or checkout) replaces its rows in its partition, children too."""
    key = ID_COLUMNS[parent]
    with transaction(con):
        for row in tables[parent]:
            for table in tables:
                con.execute(f"DELETE FROM {table} WHERE {key} = ? AND partition_date = ?",  # noqa: S608
                            [row[key], row["partition_date"]])
        for table, rows in tables.items():
            _insert(con, table, rows)


def swap_keeping_newer(con, staged_path, parent: str, tables: tuple[str, ...], start: date, end: date,
                       hi: datetime) -> dict[str, int]:
    """Replace partitions [start, end) of `tables` with the staged rows, except records a webhook wrote
    after the poll's window closed (`updated_at >= hi`, not staged): those stay until a later poll."""
    key = ID_COLUMNS[parent]
    con.execute(f"ATTACH '{staged_path}' AS staged (READ_ONLY)")  # our own path, never input
    try:
        with transaction(con):
            con.execute(f"CREATE OR REPLACE TEMP TABLE kept AS SELECT {key}, partition_date FROM {parent} "  # noqa: S608
                        f"WHERE partition_date >= $start AND partition_date < $end AND updated_at >= $hi "
                        f"AND {key} NOT IN (SELECT {key} FROM staged.{parent})", {"start": start, "end": end, "hi": hi})
            counts = {}
            for table in tables:
                con.execute(f"DELETE FROM {table} t WHERE partition_date >= $start AND partition_date < $end "  # noqa: S608
                            f"AND NOT EXISTS (SELECT 1 FROM kept k WHERE k.{key} = t.{key} "
                            f"AND k.partition_date = t.partition_date)", {"start": start, "end": end})
                counts[table] = con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM staged.{table}"  # noqa: S608
                                            ).fetchone()[0]
            return counts
    finally:
        con.execute("DETACH staged")


def swap_levels(con, staged_path, days: list[date], now: datetime) -> int:
    """The listing becomes the current state, except levels a webhook changed since (newer `updated_at`,
    or not listed but observed after the listing began); each day's snapshot is replaced."""
    con.execute(f"ATTACH '{staged_path}' AS staged (READ_ONLY)")  # our own path, never input
    try:
        with transaction(con):
            con.execute("""
                DELETE FROM shopify_inventory_levels l WHERE CASE
                    WHEN EXISTS (SELECT 1 FROM staged.shopify_inventory_levels s WHERE s.level_id = l.level_id)
                    THEN NOT EXISTS (SELECT 1 FROM staged.shopify_inventory_levels s WHERE s.level_id = l.level_id
                                     AND s.updated_at < l.updated_at)
                    ELSE l.observed_at < $now END""", {"now": now})
            con.execute("INSERT INTO shopify_inventory_levels BY NAME SELECT * FROM staged.shopify_inventory_levels s "
                        "WHERE s.level_id NOT IN (SELECT level_id FROM shopify_inventory_levels)")
            con.execute("DELETE FROM shopify_inventory_snapshots WHERE snapshot_date >= ? AND snapshot_date <= ?",
                        [days[0], days[-1]])
            for day in days:  # a day's snapshot: the levels whose last change was before its end
                con.execute("INSERT INTO shopify_inventory_snapshots BY NAME SELECT ? AS snapshot_date, "
                            "* EXCLUDE (observed_at) FROM staged.shopify_inventory_levels WHERE updated_at < ?",
                            [day, day_bounds(day)[1]])
            return con.execute("SELECT count(*) FROM shopify_inventory_snapshots WHERE snapshot_date >= ? "
                               "AND snapshot_date <= ?", [days[0], days[-1]]).fetchone()[0]
    finally:
        con.execute("DETACH staged")


def upsert_levels(con, rows: list[dict]) -> None:
    """Webhook inventory: the current state (when newer than what is stored) and today's snapshot."""
    with transaction(con):
        for row in rows:
            stored = con.execute("SELECT updated_at FROM shopify_inventory_levels WHERE level_id = ?",
                                 [row["level_id"]]).fetchone()
            if stored and stored[0] is not None and row["updated_at"] is not None and stored[0] > row["updated_at"]:
                continue
            day = partition_date(row["updated_at"] or row["observed_at"], first_day())
            con.execute("DELETE FROM shopify_inventory_levels WHERE level_id = ?", [row["level_id"]])
            con.execute("DELETE FROM shopify_inventory_snapshots WHERE level_id = ? AND snapshot_date = ?",
                        [row["level_id"], day])
            _insert(con, "shopify_inventory_levels", [row])
            snapshot = {k: v for k, v in row.items() if k != "observed_at"}
            _insert(con, "shopify_inventory_snapshots", [{**snapshot, "snapshot_date": day}])


# ---------- assets ----------
def _client_figures(client: ShopifyClient) -> dict:
    return {"api_requests": client.http.requests_sent, "throttled_retries": client.throttled,
            "throttle_wait_s": round(client.pacer.waited_s, 2)}


ORDER_SPECS = [
    dg.AssetSpec("shopify_orders", description="Every Shopify order by day of its last change: risk, financial and "
                 "fulfillment status, customer and premium tags, totals (exact DECIMAL), shipping-address check.",
                 **COMMERCE),
    dg.AssetSpec("shopify_fulfillments", description="Fulfillments of the day's orders, with their tracking events "
                 "(table shopify_fulfillment_events).", **COMMERCE),
    dg.AssetSpec("shopify_transactions", description="Payments, refunds and captures of the day's orders, failed "
                 "and declined ones included (status, error code).", **COMMERCE),
    dg.AssetSpec("shopify_returns", description="Returns (requested, open, closed, declined) and refunds (table "
                 "shopify_refunds) of the day's orders.", **COMMERCE),
]
ORDER_ASSET_TABLES = {"shopify_orders": ("shopify_orders",),
                      "shopify_fulfillments": ("shopify_fulfillments", "shopify_fulfillment_events"),
                      "shopify_transactions": ("shopify_transactions",),
                      "shopify_returns": ("shopify_returns", "shopify_refunds")}


@dg.multi_asset(specs=ORDER_SPECS, name="shopify_order_extraction", **EXTRACTION_POLICY)
def shopify_order_extraction(context: dg.AssetExecutionContext, shopify: ShopifyResource,
                             warehouse: DuckDBResource):
    """One pass over the orders changed in the run's days (§5.1 in `updated_at` windows, UPDATED_AT order),
    with tracking events for fulfillments changed then (§5.2), into six tables."""
    days, client, now = partition_days(context), shopify.get_client(), datetime.now(UTC)
    lo, hi = extraction_window(days, now)
    start, end = days[0], days[-1] + timedelta(days=1)
    with staging(warehouse.database, f"shopify_orders-{days[0]}-{days[-1]}") as area:
        for table in ORDER_TABLES:
            area.create(table)
            area.con.execute(f"DELETE FROM {table}")  # noqa: S608 (a keyset read is redone whole on a retry)
        for page in client.iter_orders(lo, hi, lists=LISTS, with_events=True):
            ids = [o["id"] for o in page]
            for table in ORDER_TABLES:  # a newer version of an order read again replaces the older one
                area.con.execute(f"DELETE FROM {table} WHERE order_id IN (SELECT unnest(?))", [ids])  # noqa: S608
            area.append(order_tables_for(client, page, now, "poll"))
        area.finish()
        with warehouse.get_connection() as con:
            ensure_tables(con)
            counts = swap_keeping_newer(con, area.path, "shopify_orders", ORDER_TABLES, start, end, hi)
    figures = {**_client_figures(client), "window_start": lo.isoformat(), "window_end": hi.isoformat()}
    context.log.info(f"shopify orders {lo:%Y-%m-%d %H:%M} .. {hi:%Y-%m-%d %H:%M}: {counts}")
    for spec in ORDER_SPECS:
        name = spec.key.to_user_string()
        tables = ORDER_ASSET_TABLES[name]
        rows = {t: counts[t] for t in tables}
        summary = ", ".join(f"**{n:,}** {t.removeprefix('shopify_').replace('_', ' ')}" for t, n in rows.items())
        yield dg.MaterializeResult(asset_key=name, metadata={
            "dagster/row_count": rows[tables[0]], **{f"rows/{t}": n for t, n in rows.items()}, **figures,
            "dagster/column_schema": table_schema(tables[0]),
            "summary": dg.MetadataValue.md(f"{summary} for {days[0]} … {days[-1]}.")})


@dg.asset(description="Abandoned checkouts by day of their last change (§5.3, read by window in full: there "
                      "is no UPDATED_AT sort), with the buyer and the SKUs left in the cart.",
          **COMMERCE, **EXTRACTION_POLICY)
def shopify_abandoned_checkouts(context: dg.AssetExecutionContext, shopify: ShopifyResource,
                                warehouse: DuckDBResource) -> dg.MaterializeResult:
    days, client, now = partition_days(context), shopify.get_client(), datetime.now(UTC)
    lo, hi = extraction_window(days, now)
    table = "shopify_abandoned_checkouts"
    with staging(warehouse.database, f"{table}-{days[0]}-{days[-1]}") as area:
        area.create(table)
        area.con.execute(f"DELETE FROM {table}")  # noqa: S608
        for page in client.iter_abandoned_checkouts(lo, hi):
            area.append({table: [checkout_row(c, partition_date(parse_time(c["updatedAt"]), first_day()), now)
                                 for c in page]})
        area.finish()
        with warehouse.get_connection() as con:
            ensure_tables(con)
            rows = swap_keeping_newer(con, area.path, table, (table,), days[0], days[-1] + timedelta(days=1), hi)[table]
            open_count = con.execute(f"SELECT count(*) FROM {table} WHERE partition_date BETWEEN ? AND ? "  # noqa: S608
                                     f"AND completed_at IS NULL", [days[0], days[-1]]).fetchone()[0]
    return dg.MaterializeResult(metadata={
        "dagster/row_count": rows, "not_recovered": open_count, **_client_figures(client),
        "dagster/column_schema": table_schema(table),
        "summary": dg.MetadataValue.md(f"**{rows:,}** abandoned checkouts changed {days[0]} … {days[-1]}, "
                                       f"**{open_count:,}** not recovered.")})


@dg.asset(description="Inventory levels per item and location (§5.4): the current state (table "
                      "shopify_inventory_levels) and each day's snapshot (the levels as they stood at the end of "
                      "the day; a backfilled past day holds the levels unchanged since).",
          **COMMERCE, **EXTRACTION_POLICY)
def shopify_inventory_levels(context: dg.AssetExecutionContext, shopify: ShopifyResource,
                             warehouse: DuckDBResource) -> dg.MaterializeResult:
    days, client, now = partition_days(context), shopify.get_client(), datetime.now(UTC)
    locations = [loc for loc in client.locations() if loc.get("isActive")]
    with staging(warehouse.database, f"shopify_inventory_levels-{days[0]}-{days[-1]}") as area:
        area.create("shopify_inventory_levels")
        area.con.execute("DELETE FROM shopify_inventory_levels")
        for location in locations:
            for page in client.iter_inventory_levels(location["id"]):
                area.append({"shopify_inventory_levels": [level_row(level, location, now) for level in page]})
        area.finish()
        with warehouse.get_connection() as con:
            ensure_tables(con)
            snapshots = swap_levels(con, area.path, days, now)
            current, tracked = con.execute("SELECT count(*), count(*) FILTER (WHERE tracked) "
                                           "FROM shopify_inventory_levels").fetchone()
    return dg.MaterializeResult(metadata={
        "dagster/row_count": current, "tracked_levels": tracked, "snapshot_rows": snapshots,
        "locations": len(locations), **_client_figures(client),
        "dagster/column_schema": table_schema("shopify_inventory_levels"),
        "summary": dg.MetadataValue.md(f"**{current:,}** inventory levels at {len(locations)} active locations "
                                       f"({tracked:,} tracked); {snapshots:,} snapshot rows for {days[0]} … {days[-1]}.")})


commerce_extraction_assets = [shopify_order_extraction, shopify_abandoned_checkouts, shopify_inventory_levels]
