"""The Shopify world (shopify.md): orders tied to the catalog's SKUs, customers, fulfillments and
their tracking events, transactions, refunds and returns, abandoned checkouts, locations and
inventory levels, with planted cases.

- Orders scale with the catalog (`shopify_orders_per_product`); order `i` is `gid://shopify/Order/
  {6214737500000 + i}`, named `#{1001 + i}` (the Threekit world links its orders by that number).
  Line items are catalog variants; their SKU and title are copied from `products` at build, as
  Shopify snapshots them when the order is placed.
- Each order tells one story (`shopify_story.py`): a normal purchase whose
  fulfillment has progressed with the order's age, or one planted case. Planted cases are exclusive.
- Ground truth is derived from the finished tables with SQL, by the rule a reader of the API would
  apply, so it holds whatever the draws were: `shopify_high_risk_order` (risk HIGH),
  `shopify_payment_pending` (financial PENDING), `shopify_large_order` (total ≥
  `shopify_large_order_threshold`), `shopify_declined_payment` (a FAILURE/ERROR transaction),
  `shopify_return`, `shopify_fulfillment_exception` (a fulfillment DELAYED, ATTEMPTED_DELIVERY or
  FAILURE), `shopify_address_needs_review` (shipping address WARNING/ERROR),
  `shopify_abandoned_after_failed_payment` (checkout gid), `shopify_low_stock` (InventoryLevel gid:
  tracked and available ≤ `shopify_low_stock_threshold`) and `shopify_vip_customer`.

Draw kinds (numpy blocks per chunk of 20 000 records): 100 orders, 110 customers, 120 checkouts,
150 inventory. Prices are a hash of seed and style, so orders and checkouts agree without a draw.
"""

from __future__ import annotations

from datetime import UTC, timedelta

import numpy as np
import pandas as pd

from sandbox.worlds import shopify_story as story
from sandbox.worlds.shopify_story import INVENTORY_ITEM_BASE, LOCATION_BASE, LOCATIONS

CHUNK = 20_000
ITEM_CHUNK = 100_000

SCHEMA = """
CREATE TABLE shopify_customers (id BIGINT PRIMARY KEY, first_name VARCHAR, last_name VARCHAR, email VARCHAR,
    tags VARCHAR[], created_at TIMESTAMP, updated_at TIMESTAMP, number_of_orders BIGINT,
    amount_spent DECIMAL(14, 2));
CREATE TABLE shopify_orders (id BIGINT PRIMARY KEY, seq BIGINT, number INTEGER, name VARCHAR, email VARCHAR,
    customer_id BIGINT, created_at TIMESTAMP, processed_at TIMESTAMP, updated_at TIMESTAMP, closed_at TIMESTAMP,
    cancelled_at TIMESTAMP, cancel_reason VARCHAR, test BOOLEAN, tags VARCHAR[], financial_status VARCHAR,
    fulfillment_status VARCHAR, return_status VARCHAR, presentment_currency VARCHAR, presentment_rate DECIMAL(8, 4),
    subtotal DECIMAL(14, 2), shipping DECIMAL(14, 2), tax DECIMAL(14, 2), total DECIMAL(14, 2),
    total_refunded DECIMAL(14, 2), total_outstanding DECIMAL(14, 2), risk_level VARCHAR,
    risk_recommendation VARCHAR, risk_assessments JSON, gateway VARCHAR, discount_codes VARCHAR[],
    ship_first_name VARCHAR, ship_last_name VARCHAR, ship_address1 VARCHAR, ship_city VARCHAR,
    ship_province VARCHAR, ship_province_code VARCHAR, ship_country VARCHAR, ship_country_code VARCHAR,
    ship_zip VARCHAR, address_validation VARCHAR);
CREATE TABLE shopify_line_items (id BIGINT PRIMARY KEY, order_id BIGINT, pos INTEGER, product_seq BIGINT,
    quantity INTEGER, unit_price DECIMAL(14, 2), sku VARCHAR, title VARCHAR, variant_title VARCHAR);
CREATE TABLE shopify_fulfillments (id BIGINT PRIMARY KEY, order_id BIGINT, pos INTEGER, name VARCHAR,
    status VARCHAR, display_status VARCHAR, created_at TIMESTAMP, updated_at TIMESTAMP, in_transit_at TIMESTAMP,
    delivered_at TIMESTAMP, estimated_delivery_at TIMESTAMP, tracking_company VARCHAR, tracking_number VARCHAR,
    tracking_url VARCHAR, location_id BIGINT);
CREATE TABLE shopify_fulfillment_events (id BIGINT PRIMARY KEY, fulfillment_id BIGINT, order_id BIGINT,
    status VARCHAR, happened_at TIMESTAMP, created_at TIMESTAMP, message VARCHAR, city VARCHAR, province VARCHAR,
    country VARCHAR, zip VARCHAR, estimated_delivery_at TIMESTAMP);
CREATE TABLE shopify_transactions (id BIGINT PRIMARY KEY, order_id BIGINT, parent_id BIGINT, kind VARCHAR,
    status VARCHAR, error_code VARCHAR, gateway VARCHAR, created_at TIMESTAMP, processed_at TIMESTAMP,
    test BOOLEAN, amount DECIMAL(14, 2));
CREATE TABLE shopify_refunds (id BIGINT PRIMARY KEY, order_id BIGINT, return_id BIGINT, created_at TIMESTAMP,
    note VARCHAR, amount DECIMAL(14, 2));
CREATE TABLE shopify_returns (id BIGINT PRIMARY KEY, order_id BIGINT, name VARCHAR, status VARCHAR,
    created_at TIMESTAMP, closed_at TIMESTAMP, total_quantity INTEGER, decline_reason VARCHAR, decline_note VARCHAR);
CREATE TABLE shopify_checkouts (id BIGINT PRIMARY KEY, token VARCHAR, created_at TIMESTAMP, updated_at TIMESTAMP,
    completed_at TIMESTAMP, customer_id BIGINT, email VARCHAR, discount_codes VARCHAR[], subtotal DECIMAL(14, 2),
    tax DECIMAL(14, 2), total DECIMAL(14, 2), gateway VARCHAR, after_failed_payment BOOLEAN);
CREATE TABLE shopify_checkout_line_items (id BIGINT PRIMARY KEY, checkout_id BIGINT, pos INTEGER,
    product_seq BIGINT, quantity INTEGER, unit_price DECIMAL(14, 2), sku VARCHAR, title VARCHAR,
    variant_title VARCHAR);
CREATE TABLE shopify_locations (id BIGINT PRIMARY KEY, name VARCHAR, is_active BOOLEAN, address1 VARCHAR,
    city VARCHAR, province VARCHAR, country_code VARCHAR, zip VARCHAR, created_at TIMESTAMP);
CREATE TABLE shopify_inventory_items (id BIGINT PRIMARY KEY, product_seq BIGINT, sku VARCHAR, tracked BOOLEAN,
    display_name VARCHAR, created_at TIMESTAMP, updated_at TIMESTAMP);
CREATE TABLE shopify_inventory_levels (location_id BIGINT, item_id BIGINT, available INTEGER,
    created_at TIMESTAMP, updated_at TIMESTAMP, PRIMARY KEY (location_id, item_id));
"""


def build(con, gen) -> None:
    con.execute(SCHEMA)
    n_orders = round(gen.n * gen.o.shopify_orders_per_product)
    n_customers = max(1, n_orders // 3)
    world = story.World(gen, int(gen.now.replace(tzinfo=UTC).timestamp()), n_customers)
    _customers(con, gen, n_customers)
    planted_checkouts = _orders(con, world, n_orders)
    _checkouts(con, world, round(n_orders * gen.o.shopify_checkouts_per_order), planted_checkouts)
    _customer_totals(con)
    _locations(con, gen)
    _inventory(con, gen)
    _ground_truth(con, gen)


def _draws(gen, kind: int, chunk_no: int, count: int) -> list[list[float]]:
    """One row of uniforms per record of a chunk: record k of chunk c always gets the same row."""
    block = np.random.default_rng([gen.o.seed, kind, chunk_no]).random((count, story.DRAWS_PER_RECORD))
    return block.tolist()


def _insert(con, table: str, rows: list[tuple]) -> None:
    """Tuples in `COLUMNS` order; int instants become TIMESTAMPs, cent strings DECIMALs (by the column
    types), and line items take their SKU and titles from the catalog as it is now: Shopify snapshots
    them when the order is placed. `Noun - Color / Size` is product `Noun`, variant `Color / Size`."""
    if not rows:
        return
    columns = story.COLUMNS[table]
    con.register("shopify_frame", pd.DataFrame(rows, columns=columns, dtype=object))  # no inference: DuckDB types it
    types = dict(con.execute(f"SELECT column_name, data_type FROM duckdb_columns() "  # noqa: S608
                             f"WHERE table_name = '{table}'").fetchall())
    select = ", ".join(f"make_timestamp(CAST(f.{c} AS BIGINT) * 1000000) AS {c}" if types[c] == "TIMESTAMP"
                       else f"f.{c}" for c in columns)
    if table.endswith("line_items"):
        select += (", p.sku, split_part(p.label, ' - ', 1) AS title, "
                   "nullif(substr(p.label, length(split_part(p.label, ' - ', 1)) + 4), '') AS variant_title")
    con.execute(f"INSERT INTO {table} BY NAME SELECT {select} FROM shopify_frame f "  # noqa: S608 (fixed names)
                f"LEFT JOIN products p ON p.seq = {'f.product_seq' if 'product_seq' in columns else '-1'}")
    con.unregister("shopify_frame")


def _customers(con, gen, count: int) -> None:
    o = gen.o
    for chunk_no, start in enumerate(range(0, count, CHUNK)):
        size = min(CHUNK, count - start)
        rng = np.random.default_rng([o.seed, 110, chunk_no])
        first = rng.integers(0, len(story.FIRST_NAMES), size)
        last = rng.integers(0, len(story.LAST_NAMES), size)
        vip, news, wholesale = (rng.random(size) < share for share in (o.share_shopify_vip_customers, 0.4, 0.05))
        created = gen.now - pd.to_timedelta(rng.uniform(30, 400, size), unit="D")
        ids = story.CUSTOMER_BASE + np.arange(start, start + size)
        firsts, lasts = np.array(story.FIRST_NAMES)[first], np.array(story.LAST_NAMES)[last]
        frame = pd.DataFrame({  # noqa: F841 (read by SQL)
            "id": ids, "first_name": firsts, "last_name": lasts,
            "email": [f"{f}.{n}{k}@example.com".lower() for f, n, k in zip(firsts, lasts, range(start, start + size),
                                                                             strict=True)],
            "tags": [[t for t, on in (("VIP", v), ("newsletter", n), ("wholesale", w)) if on]
                     for v, n, w in zip(vip, news, wholesale, strict=True)],
            "created_at": created.floor("s"), "updated_at": created.floor("s")})
        con.execute("INSERT INTO shopify_customers BY NAME SELECT * FROM frame")


def _orders(con, world: story.World, n_orders: int) -> list[tuple]:
    """Orders in chunks; returns the checkouts left behind by planted failed payments."""
    checkouts: list[tuple] = []
    for chunk_no, start in enumerate(range(0, n_orders, CHUNK)):
        tables: dict[str, list] = {name: [] for name in story.ORDER_TABLES}
        for k, row in enumerate(_draws(world.gen, 100, chunk_no, min(CHUNK, n_orders - start))):
            story.tell(world, start + k, iter(row).__next__, tables, checkouts)
        for name, rows in tables.items():
            _insert(con, name, rows)
    return checkouts


def _checkouts(con, world: story.World, count: int, planted: list[tuple]) -> None:
    total = count + len(planted)
    for chunk_no, start in enumerate(range(0, total, CHUNK)):
        tables: dict[str, list] = {"shopify_checkouts": [], "shopify_checkout_line_items": []}
        for k, row in enumerate(_draws(world.gen, 120, chunk_no, min(CHUNK, total - start))):
            j = start + k
            story.checkout(world, j, iter(row).__next__, planted[j - count] if j >= count else None, tables)
        for name, rows in tables.items():
            _insert(con, name, rows)


def _customer_totals(con) -> None:
    con.execute("""
        UPDATE shopify_customers AS c SET number_of_orders = s.n, amount_spent = s.spent,
            updated_at = greatest(c.updated_at, s.last_update)
        FROM (SELECT customer_id, count(*) AS n, sum(CASE WHEN cancelled_at IS NULL THEN total - total_refunded
                     ELSE 0 END) AS spent, max(updated_at) AS last_update
              FROM shopify_orders WHERE customer_id IS NOT NULL GROUP BY customer_id) s
        WHERE s.customer_id = c.id""")
    con.execute("UPDATE shopify_customers SET number_of_orders = 0, amount_spent = 0 WHERE number_of_orders IS NULL")


def _locations(con, gen) -> None:
    for k, (name, active, street, city, province, country, zip_code) in enumerate(LOCATIONS):
        con.execute("INSERT INTO shopify_locations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [LOCATION_BASE + k, name, active, street, city, province, country, zip_code,
                     gen.now - timedelta(days=900 - 100 * k)])


def _inventory(con, gen) -> None:
    """One inventory item per sellable variant (a style's parent is not sold), stocked at the two
    warehouses, half the time at the store and sometimes at the closed location. Vectorised with
    numpy: at a million products this is millions of levels."""
    o = gen.o
    threshold = o.shopify_low_stock_threshold
    history_s = o.history_days * 86400
    total = con.execute("SELECT max(seq) + 1 FROM products").fetchone()[0] or 0
    for chunk_no, start in enumerate(range(0, total, ITEM_CHUNK)):
        frame = con.execute(
            "SELECT seq, sku, label, created FROM products WHERE num_variations = 0 AND seq >= ? AND seq < ? "
            "ORDER BY seq", [start, start + ITEM_CHUNK]).df()
        if frame.empty:
            continue
        rng = np.random.default_rng([o.seed, 150, chunk_no])
        n = len(frame)
        seconds = rng.uniform(60, history_s, n)
        items = pd.DataFrame({
            "id": INVENTORY_ITEM_BASE + frame["seq"].to_numpy(), "product_seq": frame["seq"],
            "sku": frame["sku"].where(rng.random(n) >= 0.01, None), "tracked": rng.random(n) >= 0.03,
            "display_name": frame["label"], "created_at": frame["created"],
            "updated_at": (pd.Timestamp(gen.now) - pd.to_timedelta(seconds, unit="s")).floor("s")})
        con.register("shopify_items", items)
        con.execute("INSERT INTO shopify_inventory_items BY NAME SELECT * FROM shopify_items")
        con.unregister("shopify_items")
        stocked = {0: np.ones(n, bool), 1: np.ones(n, bool), 2: rng.random(n) < 0.5, 3: rng.random(n) < 0.2}
        for k, mask in stocked.items():
            m = int(mask.sum())
            low = rng.random(m) < o.share_shopify_low_stock
            available = np.where(low, rng.integers(0, threshold + 1, m), rng.integers(threshold + 1, 250, m))
            updated = (pd.Timestamp(gen.now) - pd.to_timedelta(rng.uniform(60, history_s, m), unit="s")).floor("s")
            levels = pd.DataFrame({"location_id": LOCATION_BASE + k, "item_id": items["id"].to_numpy()[mask],
                                   "available": available, "created_at": items["created_at"].to_numpy()[mask],
                                   "updated_at": updated})
            con.register("shopify_levels", levels)
            con.execute("INSERT INTO shopify_inventory_levels BY NAME SELECT * FROM shopify_levels")
            con.unregister("shopify_levels")


# Order-level ground truth: the order ids each kind's rule selects (`$1` is the large-order threshold).
ORDER_TRUTH = {
    "shopify_high_risk_order": "SELECT id FROM shopify_orders WHERE risk_level = 'HIGH'",
    "shopify_payment_pending": "SELECT id FROM shopify_orders WHERE financial_status = 'PENDING'",
    "shopify_large_order": "SELECT id FROM shopify_orders WHERE total >= $1",
    "shopify_declined_payment": "SELECT order_id FROM shopify_transactions WHERE status IN ('FAILURE', 'ERROR')",
    "shopify_return": "SELECT order_id FROM shopify_returns",
    "shopify_fulfillment_exception": ("SELECT order_id FROM shopify_fulfillments "
                                      "WHERE display_status IN ('DELAYED', 'ATTEMPTED_DELIVERY', 'FAILURE')"),
    "shopify_address_needs_review": "SELECT id FROM shopify_orders WHERE address_validation IN ('WARNING', 'ERROR')",
}


def _ground_truth(con, gen) -> None:
    for kind, sql in ORDER_TRUTH.items():
        con.execute(f"INSERT INTO ground_truth SELECT DISTINCT '{kind}', 'gid://shopify/Order/' || id "  # noqa: S608
                    f"FROM ({sql}) AS hit(id) WHERE $1 = $1", [gen.o.shopify_large_order_threshold])
    con.execute("INSERT INTO ground_truth SELECT 'shopify_abandoned_after_failed_payment', "
                "'gid://shopify/AbandonedCheckout/' || id FROM shopify_checkouts WHERE after_failed_payment")
    con.execute("INSERT INTO ground_truth SELECT 'shopify_vip_customer', 'gid://shopify/Customer/' || id "
                "FROM shopify_customers WHERE list_contains(tags, 'VIP')")
    con.execute("INSERT INTO ground_truth SELECT 'shopify_low_stock', 'gid://shopify/InventoryLevel/' || "
                "l.location_id || '?inventory_item_id=' || l.item_id FROM shopify_inventory_levels l "
                "JOIN shopify_inventory_items i ON i.id = l.item_id WHERE i.tracked AND l.available <= ?",
                [gen.o.shopify_low_stock_threshold])


def order_truth(con, order_id: int, threshold: float) -> None:
    """Re-derive one order's ground truth after a sandbox world change (the admin events)."""
    gid = f"gid://shopify/Order/{order_id}"
    con.execute("DELETE FROM ground_truth WHERE record_id = ? AND kind LIKE 'shopify_%'", [gid])
    for kind, sql in ORDER_TRUTH.items():
        if con.execute(f"SELECT 1 FROM ({sql}) AS hit(id) WHERE id = $2 AND $1 = $1",  # noqa: S608
                       [threshold, order_id]).fetchone():
            con.execute("INSERT INTO ground_truth VALUES (?, ?)", [kind, gid])

