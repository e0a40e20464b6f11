"""The DuckDB warehouse: table layouts and the one way partitions are written.

A partition is replaced, never appended to: its window is deleted and the new rows inserted in one
transaction, so a re-run (or a backfill over it) gives the same table and a crash mid-write leaves
the previous complete version. Extraction streams API pages into a per-run staging file first, so
the warehouse's single writer lock is held only for the swap, not for an hour of HTTP.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import duckdb
import pandas as pd

QUARANTINE_COLUMNS = """
        partition_date DATE, source VARCHAR, record_id VARCHAR, reason VARCHAR, record JSON,
        quarantined_at TIMESTAMPTZ"""
# Every table the assets write, created on first use. Names are fixed here, never taken from input.
TABLES: dict[str, str] = {
    "plytix_product_changes": """
        partition_date DATE, id VARCHAR, sku VARCHAR, label VARCHAR, status VARCHAR, modified TIMESTAMPTZ,
        parent_id VARCHAR, num_variations INTEGER, categories VARCHAR[], thumbnail VARCHAR, attributes JSON,
        extracted_at TIMESTAMPTZ""",
    "photoshelter_image_changes": """
        partition_date DATE, image_id VARCHAR, gallery_id VARCHAR, file_name VARCHAR, updated_at TIMESTAMPTZ,
        keywords VARCHAR[], link VARCHAR, sku VARCHAR, style_code VARCHAR, product_family VARCHAR,
        approval_status VARCHAR, usage_ecommerce VARCHAR, usage_social VARCHAR, usage_print VARCHAR,
        usage_marketplaces VARCHAR, licensed_market VARCHAR, license_expiration_date DATE,
        extracted_at TIMESTAMPTZ""",
    "plytix_quarantine": QUARANTINE_COLUMNS,
    "photoshelter_quarantine": QUARANTINE_COLUMNS,
    "plytix_categories": "id VARCHAR, name VARCHAR, path VARCHAR[], refreshed_at TIMESTAMPTZ",
    "plytix_deletions": "id VARCHAR, detected_at TIMESTAMPTZ",
    "catalog_snapshot": """
        snapshot_date DATE, product_id VARCHAR, sku VARCHAR, sku_key VARCHAR, label VARCHAR, status VARCHAR,
        workflow_stage VARCHAR, modified TIMESTAMPTZ, parent_id VARCHAR, num_variations INTEGER,
        is_variant BOOLEAN, category_ids VARCHAR[], category_path VARCHAR[], category_root VARCHAR,
        style_code VARCHAR, product_family VARCHAR, brand VARCHAR, sales_channels VARCHAR[],
        hero_image_id VARCHAR, alternate_image_ids VARCHAR[], locales VARCHAR[], attributes JSON""",
    "product_images": """
        snapshot_date DATE, product_id VARCHAR, sku VARCHAR, image_id VARCHAR, match_type VARCHAR,
        match_key VARCHAR, image_role VARCHAR, approval_status VARCHAR, usable BOOLEAN, license_expiration_date DATE,
        licensed_market VARCHAR, allowed_channels VARCHAR[], rights_valid_channels VARCHAR[],
        shared_by_duplicate_sku BOOLEAN""",
    "orphan_images": """
        snapshot_date DATE, image_id VARCHAR, gallery_id VARCHAR, sku VARCHAR, style_code VARCHAR,
        product_family VARCHAR, approval_status VARCHAR""",
    "catalog_quality_report": """
        report_date DATE, product_id VARCHAR, sku VARCHAR, rule VARCHAR, severity VARCHAR, owner VARCHAR,
        category_root VARCHAR, detail VARCHAR, first_seen DATE, last_seen DATE, state VARCHAR""",
    # One row per notification and channel. `dedupe_key` says what, which record and which window, so a
    # re-run plans nothing twice; the status moves pending -> submitting -> accepted -> delivered/failed
    # (or unknown: the service may have it, and it is never sent again without a person deciding).
    "notification_outbox": """
        dedupe_key VARCHAR PRIMARY KEY, reference VARCHAR, kind VARCHAR, channel VARCHAR, recipient VARCHAR,
        destination VARCHAR, subject VARCHAR, body VARCHAR, record_id VARCHAR, window_date DATE,
        planned_at TIMESTAMPTZ, planned_by_run VARCHAR, status VARCHAR, attempts INTEGER, job_id VARCHAR,
        next_attempt_at TIMESTAMPTZ, submitted_at TIMESTAMPTZ, accepted_at TIMESTAMPTZ, last_polled_at TIMESTAMPTZ,
        finished_at TIMESTAMPTZ, last_error VARCHAR""",
    "launch_packages": """
        package_date DATE, launch VARCHAR, product_id VARCHAR, sku VARCHAR, label VARCHAR, workflow_stage VARCHAR,
        hero_image_id VARCHAR, image_ids VARCHAR[], missing VARCHAR[], complete BOOLEAN, attributes JSON""",
    # The Planner tasks this project keeps: their last etag and a hash of what we wanted, so an
    # unchanged task costs nothing on the next run.
    "planner_task_state": """
        key VARCHAR PRIMARY KEY, product_id VARCHAR, task_id VARCHAR, etag VARCHAR, desired_hash VARCHAR, status VARCHAR,
        updated_at TIMESTAMPTZ""",
    # Every write the project makes to an outside service (or would make, in a dry run).
    "action_audit": """
        recorded_at TIMESTAMPTZ, run_id VARCHAR, asset VARCHAR, service VARCHAR, action VARCHAR,
        record_id VARCHAR, detail JSON, dry_run BOOLEAN""",
    # Threekit (assets/configurator_extraction.py): every version read, by day of change; the current
    # catalog whole; the incremental reads' high-water marks. Then the configurator's rules and ledger.
    "threekit_configurations": """
        partition_date DATE, id VARCHAR, short_id VARCHAR, product_id VARCHAR, product_version VARCHAR, variant JSON,
        metadata JSON, price DECIMAL, currency VARCHAR, pricebook_id VARCHAR, shopify_line_item_id VARCHAR,
        customer_id VARCHAR, created_at TIMESTAMPTZ, extracted_at TIMESTAMPTZ""",
    "threekit_orders": """
        partition_date DATE, id VARCHAR, short_id VARCHAR, name VARCHAR, status VARCHAR, shopify_order_id VARCHAR,
        configuration_ids VARCHAR[], platform JSON, metadata JSON, cart JSON, customer_id VARCHAR,
        created_at TIMESTAMPTZ, updated_at TIMESTAMPTZ, extracted_at TIMESTAMPTZ""",
    "threekit_asset_changes": """
        partition_date DATE, id VARCHAR, type VARCHAR, name VARCHAR, proxy_id VARCHAR, metadata JSON, attributes JSON,
        created_at TIMESTAMPTZ, updated_at TIMESTAMPTZ, published_at TIMESTAMPTZ, extracted_at TIMESTAMPTZ""",
    "threekit_items": """
        id VARCHAR, name VARCHAR, sku VARCHAR, plytix_product_id VARCHAR, image_id VARCHAR, proxy_id VARCHAR,
        metadata JSON, attributes JSON, attribute_names VARCHAR[], created_at TIMESTAMPTZ, updated_at TIMESTAMPTZ,
        published_at TIMESTAMPTZ, refreshed_at TIMESTAMPTZ""",
    "threekit_item_prices": "item_id VARCHAR, pricebook_id VARCHAR, currency VARCHAR, amount DECIMAL",
    "threekit_pricebooks": "id VARCHAR, name VARCHAR, currencies VARCHAR[], deleted_at TIMESTAMPTZ, refreshed_at TIMESTAMPTZ",
    "threekit_variants": """
        id VARCHAR, custom_id VARCHAR, item_id VARCHAR, status VARCHAR, option_values VARCHAR[], options JSON,
        created_at TIMESTAMPTZ, updated_at TIMESTAMPTZ, refreshed_at TIMESTAMPTZ""",
    "threekit_marks": "resource VARCHAR PRIMARY KEY, mark TIMESTAMPTZ, updated_at TIMESTAMPTZ",
    "threekit_quarantine": QUARANTINE_COLUMNS,
    "configurator_findings": "report_date DATE, kind VARCHAR, record_id VARCHAR, ref VARCHAR, detail VARCHAR",
    # Each item told (or written back) once: the key of the outbox row (or write) that carried it.
    "configurator_items": """
        item_key VARCHAR PRIMARY KEY, kind VARCHAR, recipient VARCHAR, record_id VARCHAR, ref VARCHAR, line VARCHAR,
        level INTEGER, first_day DATE, message_key VARCHAR, planned_at TIMESTAMPTZ""",
    # Shopify (assets/commerce_extraction.py): by the day of the order's (checkout's) last change; an
    # order's children carry its partition. Money in the shop currency, DECIMAL(18,3) from its string.
    "shopify_orders": """
        partition_date DATE, order_id VARCHAR, name VARCHAR, created_at TIMESTAMPTZ, updated_at TIMESTAMPTZ,
        processed_at TIMESTAMPTZ, closed_at TIMESTAMPTZ, cancelled_at TIMESTAMPTZ, cancel_reason VARCHAR,
        test BOOLEAN, tags VARCHAR[], financial_status VARCHAR, fulfillment_status VARCHAR, return_status VARCHAR,
        customer_id VARCHAR, customer_name VARCHAR, customer_tags VARCHAR[], email VARCHAR, total DECIMAL,
        current_total DECIMAL, refunded DECIMAL, outstanding DECIMAL, currency VARCHAR, risk_level VARCHAR,
        risk_recommendation VARCHAR, risk_facts VARCHAR[], address_validation VARCHAR, ship_country VARCHAR,
        skus VARCHAR[], source VARCHAR, extracted_at TIMESTAMPTZ""",
    "shopify_fulfillments": """
        partition_date DATE, fulfillment_id VARCHAR, order_id VARCHAR, name VARCHAR, status VARCHAR,
        display_status VARCHAR, created_at TIMESTAMPTZ, updated_at TIMESTAMPTZ, in_transit_at TIMESTAMPTZ,
        delivered_at TIMESTAMPTZ, estimated_delivery_at TIMESTAMPTZ, tracking_company VARCHAR,
        tracking_number VARCHAR, tracking_url VARCHAR""",
    "shopify_fulfillment_events": """
        partition_date DATE, event_id VARCHAR, fulfillment_id VARCHAR, order_id VARCHAR, status VARCHAR,
        happened_at TIMESTAMPTZ, created_at TIMESTAMPTZ, message VARCHAR, city VARCHAR, province VARCHAR,
        country VARCHAR""",
    "shopify_transactions": """
        partition_date DATE, transaction_id VARCHAR, order_id VARCHAR, kind VARCHAR, status VARCHAR,
        error_code VARCHAR, gateway VARCHAR, created_at TIMESTAMPTZ, processed_at TIMESTAMPTZ, test BOOLEAN,
        amount DECIMAL, currency VARCHAR""",
    "shopify_refunds": """
        partition_date DATE, refund_id VARCHAR, order_id VARCHAR, created_at TIMESTAMPTZ, note VARCHAR,
        amount DECIMAL, currency VARCHAR""",
    "shopify_returns": """
        partition_date DATE, return_id VARCHAR, order_id VARCHAR, name VARCHAR, status VARCHAR,
        created_at TIMESTAMPTZ, closed_at TIMESTAMPTZ, total_quantity INTEGER, decline_reason VARCHAR,
        decline_note VARCHAR""",
    "shopify_abandoned_checkouts": """
        partition_date DATE, checkout_id VARCHAR, name VARCHAR, created_at TIMESTAMPTZ, updated_at TIMESTAMPTZ,
        completed_at TIMESTAMPTZ, recovery_url VARCHAR, discount_codes VARCHAR[], total DECIMAL, currency VARCHAR,
        customer_id VARCHAR, customer_name VARCHAR, customer_tags VARCHAR[], email VARCHAR, skus VARCHAR[],
        extracted_at TIMESTAMPTZ""",
    "shopify_inventory_levels": """
        level_id VARCHAR PRIMARY KEY, location_id VARCHAR, location_name VARCHAR, item_id VARCHAR, sku VARCHAR,
        tracked BOOLEAN, variant VARCHAR, available INTEGER, updated_at TIMESTAMPTZ, observed_at TIMESTAMPTZ""",
    "shopify_inventory_snapshots": """
        snapshot_date DATE, level_id VARCHAR, location_id VARCHAR, location_name VARCHAR, item_id VARCHAR,
        sku VARCHAR, tracked BOOLEAN, variant VARCHAR, available INTEGER, updated_at TIMESTAMPTZ""",
    # Low stock, once per crossing (assets/commerce_rules.py): open while the level stays at or below.
    "shopify_stock_crossings": """
        level_id VARCHAR, crossed_at TIMESTAMPTZ, threshold INTEGER, available INTEGER,
        recovered_at TIMESTAMPTZ""",
}


# Tables that exist only in staging files, never in the warehouse.
STAGING_TABLES = {"plytix_live_ids": "id VARCHAR"}


def table_schema(table: str):
    """The table's columns as Dagster column-schema metadata."""
    import dagster as dg

    columns = [c.strip() for c in " ".join(TABLES[table].split()).split(",") if c.strip()]
    return dg.TableSchema(columns=[dg.TableColumn(c.split(" ", 1)[0], c.split(" ", 1)[1]) for c in columns])


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    for name, columns in TABLES.items():
        con.execute(f"CREATE TABLE IF NOT EXISTS {name} ({columns})")


def replace_partitions(con: duckdb.DuckDBPyConnection, table: str, date_column: str, start: date, end: date,
                       select_sql: str, params: list | dict | None = None) -> int:
    """Delete `table`'s rows with `start <= date_column < end`, insert `select_sql`, atomically.

    For backfills and re-execution: the same partition written twice is the same partition.
    """
    with transaction(con):
        return replace_rows(con, table, date_column, start, end, select_sql, params)


@contextlib.contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    con.execute("BEGIN TRANSACTION")
    try:
        yield
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def replace_rows(con, table: str, date_column: str, start: date, end: date, select_sql: str,
             params: list | dict | None = None) -> int:
    if table not in TABLES or date_column not in TABLES[table]:
        raise ValueError(f"unknown warehouse table or column: {table}.{date_column}")
    con.execute(f"DELETE FROM {table} WHERE {date_column} >= $start AND {date_column} < $end",  # noqa: S608
                {"start": start, "end": end})
    return con.execute(f"INSERT INTO {table} BY NAME {select_sql}", params or []).fetchone()[0]


class StagingArea:
    """A DuckDB file that extraction streams pages into before the warehouse swap.

    Named after the work it holds (table and days), so a retried run finds what the failed attempt
    had staged, with the units it finished (e.g. galleries) and the window it used, and resumes.
    """

    def __init__(self, warehouse_path: str | Path, name: str):
        folder = Path(warehouse_path).resolve().parent / "staging"
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{name}.duckdb"
        self.resumed = self.path.exists()
        self.con = duckdb.connect(str(self.path))
        self.con.execute("CREATE TABLE IF NOT EXISTS staging_meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
        self.con.execute("CREATE TABLE IF NOT EXISTS staging_done (unit VARCHAR PRIMARY KEY)")

    def create(self, table: str) -> None:
        self.con.execute(f"CREATE TABLE IF NOT EXISTS {table} ({TABLES.get(table) or STAGING_TABLES[table]})")

    def remember(self, key: str, value: str) -> str:
        """The value stored under `key` by the first attempt, else `value` (now stored)."""
        self.con.execute("INSERT INTO staging_meta VALUES (?, ?) ON CONFLICT DO NOTHING", [key, value])
        return self.con.execute("SELECT value FROM staging_meta WHERE key = ?", [key]).fetchone()[0]

    def done_units(self) -> set[str]:
        return {row[0] for row in self.con.execute("SELECT unit FROM staging_done").fetchall()}

    def append(self, frames: dict[str, list[dict]], unit: str | None = None) -> None:
        """Stage rows for several tables, and mark `unit` finished, all or nothing."""
        with transaction(self.con):
            for table, rows in frames.items():
                if rows:
                    self.con.register("page_frame", pd.DataFrame(rows))
                    self.con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM page_frame")  # noqa: S608
                    self.con.unregister("page_frame")
            if unit is not None:
                self.con.execute("INSERT INTO staging_done VALUES (?)", [unit])

    def count(self, table: str) -> int:
        return self.con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608

    def finish(self) -> None:
        """Flush and close the staging file so the warehouse can attach it."""
        self.con.execute("CHECKPOINT")
        self.con.close()

    def discard(self) -> None:
        self.con.close()
        self.path.unlink(missing_ok=True)
        self.path.with_suffix(".duckdb.wal").unlink(missing_ok=True)


@contextlib.contextmanager
def staging(warehouse_path: str | Path, name: str) -> Iterator[StagingArea]:
    """Kept after a failure (the retry resumes from it), discarded once swapped in."""
    area = StagingArea(warehouse_path, name)
    try:
        yield area
    except BaseException:
        area.con.close()
        raise
    area.discard()


def swap_in_staged(con: duckdb.DuckDBPyConnection, area: StagingArea, tables: list[str], start: date,
                   end: date) -> dict[str, int]:
    """Replace partitions [start, end) of each staged table (by `partition_date`) in one transaction."""
    area.finish()
    con.execute(f"ATTACH '{area.path}' AS staged (READ_ONLY)")  # our own path, never input
    try:
        with transaction(con):
            return {t: replace_rows(con, t, "partition_date", start, end, f"SELECT * FROM staged.{t}")  # noqa: S608
                    for t in tables}
    finally:
        con.execute("DETACH staged")
