"""Threekit extraction (group `configurator`): configurations, orders, 3D assets, and the catalog.

Configurations and orders are read incrementally (threekit.md §7): newest first, until a page
reaches five minutes behind the high-water mark, deduplicated by id; the mark (the read's start) is
stored in `threekit_marks` in the same transaction as the rows, so a failed read leaves it where it
was and the next run reads the gap again. Every version read is kept, in the partition of its day
of change (a configuration's creation, an order's update), and a version already stored is never
stored twice: re-running a day gives the same rows. A run over days the mark has already passed (a
backfill, or the daily run after a sensor's refresh) re-reads from the start of its first day.

3D assets are read in full: a publish moves `publishedAt` but not `updatedAt` (§4.5) and
`publishedAt` cannot be sorted on, so a read by `updatedAt` would never see one. Items and models
are as few as the configurable styles (§7.5: read the catalog in full), and only versions not seen
before are stored. `threekit_catalog` keeps Threekit's current catalog whole: items with their
pricebook prices, pricebooks (deleted ones marked) and variants; variants are re-read only for
items that are new or changed, since a variant has no list of its own to read by date.
"""


import json
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from assets.quarantine import check_storable, quarantine_row, reason_for, share_check, share_check_spec
from assets.warehouse import ensure_tables, staging, table_schema, transaction
from orchestration.partitions import daily_partitions, day_bounds, is_first_partition, partition_days
from orchestration.settings import ProjectSettings
from resources.threekit import Asset, Configuration, Order, ThreekitResource, format_time, time_field

OWNERS = ["team:content-operations"]
EXTRACTION_POLICY = dict(
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool="duckdb_warehouse",
    retry_policy=dg.RetryPolicy(max_retries=2, delay=ProjectSettings().extraction_retry_delay_s,
                                backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS),
)
ASSET_TYPES = ("item", "model")  # the project ignores materials, textures and scenes (§4.5)
# The columns that make a version: a row with the same values is the same version.
VERSION_KEYS = {"threekit_configurations": ("id",), "threekit_orders": ("id", "updated_at"),
                "threekit_asset_changes": ("id", "updated_at", "published_at")}


def first_partition_day() -> date:
    return date.fromisoformat(daily_partitions.get_first_partition_key())


def change_day(moment: datetime | None, first_day: date) -> date:
    """The partition of a change (UTC day); changes from before the first partition join it."""
    return first_day if moment is None else max(moment.astimezone(UTC).date(), first_day)


def read_from(stored: datetime | None, days: list[date]) -> datetime | None:
    """Where an incremental read starts: everything when there is no mark; the mark when it lies in
    or before the run's first day; the start of the first day when the mark has passed it (the run
    covers days already read: re-read them, as a backfill must)."""
    if stored is None:
        return None
    start = day_bounds(days[0])[0]
    return stored if stored < start + timedelta(days=1) else start


# ---------- rows ----------
def configuration_row(raw: dict, first_day: date, now: datetime) -> dict:
    c = Configuration.from_api(raw)
    return {"partition_date": change_day(c.created_at, first_day), "id": c.id, "short_id": c.short_id,
            "product_id": c.product_id, "product_version": c.product_version,
            "variant": json.dumps(raw.get("variant") if isinstance(raw.get("variant"), dict) else {}),
            "metadata": json.dumps(c.metadata), "price": None if c.price is None else str(c.price),
            "currency": c.currency, "pricebook_id": c.pricebook_id, "shopify_line_item_id": c.shopify_line_item_id,
            "customer_id": c.customer_id, "created_at": c.created_at, "extracted_at": now}


def order_row(raw: dict, first_day: date, now: datetime) -> dict:
    o = Order.from_api(raw)
    return {"partition_date": change_day(o.updated_at, first_day), "id": o.id, "short_id": o.short_id,
            "name": o.name, "status": o.status, "shopify_order_id": o.shopify_order_id,
            "configuration_ids": [line.configuration_id for line in o.cart],
            "platform": json.dumps(o.platform), "metadata": json.dumps(o.metadata),
            "cart": json.dumps([line.model_dump() for line in o.cart]), "customer_id": o.customer_id,
            "created_at": o.created_at, "updated_at": o.updated_at, "extracted_at": now}


def asset_row(asset: Asset, first_day: date, now: datetime) -> dict:
    changed = max(t for t in (asset.updated_at, asset.published_at, asset.created_at) if t is not None) \
        if (asset.updated_at or asset.published_at or asset.created_at) else None
    return {"partition_date": change_day(changed, first_day), "id": asset.id, "type": asset.type, "name": asset.name,
            "proxy_id": asset.proxy_id, "metadata": json.dumps(asset.metadata),
            "attributes": json.dumps(asset.attributes), "created_at": asset.created_at,
            "updated_at": asset.updated_at, "published_at": asset.published_at, "extracted_at": now}


def split_page(rows: list[dict], to_row: Callable[[dict], dict], day: date, now: datetime) -> tuple[list[dict], list[dict]]:
    """Warehouse rows and quarantined records: one unreadable record never fails the page."""
    good, bad = [], []
    for raw in rows:
        try:
            check_storable(raw)
            good.append(to_row(raw))
        except Exception as exc:  # whatever makes one record unreadable quarantines it
            bad.append(quarantine_row(day, "threekit", raw, reason_for(exc), now))
    return good, bad


# ---------- storing versions ----------
def merge_versions(con, table: str, source: str) -> int:
    """Insert the rows of `source` whose version `table` does not hold yet; return how many."""
    keys = VERSION_KEYS[table]
    same = " AND ".join(f"t.{k} IS NOT DISTINCT FROM s.{k}" for k in keys)
    return con.execute(
        f"INSERT INTO {table} BY NAME SELECT * FROM {source} s "  # noqa: S608 (fixed names)
        f"WHERE NOT EXISTS (SELECT 1 FROM {table} t WHERE {same}) "
        f"QUALIFY row_number() OVER (PARTITION BY {', '.join(keys)} ORDER BY extracted_at DESC) = 1"
    ).fetchone()[0]


def stored_mark(con, resource: str) -> datetime | None:
    row = con.execute("SELECT mark FROM threekit_marks WHERE resource = ?", [resource]).fetchall()
    return row[0][0].astimezone(UTC) if row else None


def save_mark(con, resource: str, mark: datetime) -> None:
    """Marks only move forward: a backfill that started earlier than the last read leaves it."""
    con.execute("INSERT INTO threekit_marks VALUES (?, ?, now()) ON CONFLICT (resource) DO UPDATE SET "
                "mark = greatest(threekit_marks.mark, excluded.mark), updated_at = excluded.updated_at",
                [resource, mark])


def store(context: dg.AssetExecutionContext, warehouse: DuckDBResource, table: str, days: list[date],
          pages: Iterator[list[dict]], to_row: Callable[[dict], dict], requests: Callable[[], int],
          mark: tuple[str, datetime, datetime | None] | None = None) -> dg.MaterializeResult:
    """Stage every page, then merge the new versions (and move the mark) in one transaction."""
    now, requests_before = datetime.now(UTC), requests()
    with staging(warehouse.database, f"{table}-{days[0]}-{days[-1]}") as area:
        area.create(table)
        area.create("threekit_quarantine")
        if area.resumed:
            context.log.info(f"{table}: an earlier attempt's pages are staged; duplicates are merged away")
        next_mark = None
        if mark is not None:  # a retry keeps the first attempt's start: everything since is re-read now
            next_mark = datetime.fromisoformat(area.remember("next_mark", mark[1].isoformat()))
        read = 0
        for rows in pages:
            good, bad = split_page(rows, to_row, days[0], now)
            area.append({table: good, "threekit_quarantine": bad})
            read += len(rows)
        staged, quarantined = area.count(table), area.count("threekit_quarantine")
        area.finish()
        with warehouse.get_connection() as con:
            ensure_tables(con)
            con.execute(f"ATTACH '{area.path}' AS staged (READ_ONLY)")  # our own path, never input
            try:
                with transaction(con):
                    added = merge_versions(con, table, f"staged.{table}")
                    con.execute("INSERT INTO threekit_quarantine SELECT * FROM staged.threekit_quarantine")
                    if mark is not None:
                        save_mark(con, mark[0], next_mark)
            finally:
                con.execute("DETACH staged")
            total, by_day = con.execute(
                f"SELECT count(*), count(*) FILTER (WHERE partition_date BETWEEN ? AND ?) FROM {table}",  # noqa: S608
                [days[0], days[-1]]).fetchone()
    if quarantined:
        context.log.warning(f"{quarantined} Threekit record(s) quarantined; see table threekit_quarantine")
    start = "everything" if mark is None or mark[2] is None else f"changes since `{format_time(mark[2])}`"
    summary = (f"Read **{read:,}** records ({start}); **{added:,}** new versions stored, "
               f"**{by_day:,}** rows in {days[0]} … {days[-1]}, **{total:,}** in all.")
    return dg.MaterializeResult(check_results=[share_check(table, staged, quarantined)], metadata={
        "dagster/row_count": by_day, "records_read": read, "new_versions": added, "table_rows": total,
        "records_quarantined": quarantined, "api_requests": requests() - requests_before, "read_from": start,
        "dagster/column_schema": table_schema(table), "summary": dg.MetadataValue.md(summary),
    })


def incremental(context: dg.AssetExecutionContext, threekit: ThreekitResource, warehouse: DuckDBResource,
                resource: str, table: str, to_row) -> dg.MaterializeResult:
    days = partition_days(context)
    with warehouse.get_connection() as con:
        ensure_tables(con)
        stored = stored_mark(con, resource)
    # A run from the first partition carries the baseline (everything before it): read it all.
    start = None if is_first_partition(days[0]) else read_from(stored, days)
    client = threekit.get_client()
    read = client.read_incremental(resource, start)
    first, now = first_partition_day(), datetime.now(UTC)
    return store(context, warehouse, table, days, read.pages, lambda raw: to_row(raw, first, now),
                 lambda: client.http.requests_sent, mark=(resource, read.next_mark, start))


@dg.asset(
    group_name="configurator", kinds={"threekit", "duckdb"}, owners=OWNERS,
    description="Every saved Threekit configuration (chosen options, price, currency, pricebook), by day of "
                "creation; read incrementally from the high-water mark.",
    check_specs=[share_check_spec("threekit_configurations")], **EXTRACTION_POLICY,
)
def threekit_configurations(context: dg.AssetExecutionContext, threekit: ThreekitResource,
                            warehouse: DuckDBResource) -> dg.MaterializeResult:
    return incremental(context, threekit, warehouse, "configurations", "threekit_configurations", configuration_row)


@dg.asset(
    group_name="configurator", kinds={"threekit", "duckdb"}, owners=OWNERS,
    description="Every version of every Threekit configurator order (status, cart, status note), by day of "
                "update; read incrementally from the high-water mark.",
    check_specs=[share_check_spec("threekit_orders")], **EXTRACTION_POLICY,
)
def threekit_orders(context: dg.AssetExecutionContext, threekit: ThreekitResource,
                    warehouse: DuckDBResource) -> dg.MaterializeResult:
    return incremental(context, threekit, warehouse, "orders", "threekit_orders", order_row)


@dg.asset(
    group_name="configurator", kinds={"threekit", "duckdb"}, owners=OWNERS,
    description="Every version of the Threekit items and 3D models (edits and publishes), by day of change. "
                "Read in full: a publish does not move updatedAt, so only a full read sees it.",
    check_specs=[share_check_spec("threekit_asset_changes")], **EXTRACTION_POLICY,
)
def threekit_asset_changes(context: dg.AssetExecutionContext, threekit: ThreekitResource,
                           warehouse: DuckDBResource) -> dg.MaterializeResult:
    days = partition_days(context)
    client = threekit.get_client()
    first, now = first_partition_day(), datetime.now(UTC)

    def pages():
        for kind in ASSET_TYPES:
            yield from client.iter_pages("/api/assets", "assets", {"type": kind, "sort": "-updatedAt"})

    return store(context, warehouse, "threekit_asset_changes", days, pages(),
                 lambda raw: asset_row(Asset.from_api(raw), first, now), lambda: client.http.requests_sent)


# ---------- the catalog, whole ----------
def item_rows(item: Asset, now: datetime) -> tuple[dict, list[dict]]:
    meta = item.metadata
    row = {"id": item.id, "name": item.name, "sku": _text(meta.get("sku")),
           "plytix_product_id": _text(meta.get("plytixProductId")), "image_id": _text(meta.get("photoshelterImageId")),
           "proxy_id": item.proxy_id, "metadata": json.dumps(meta), "attributes": json.dumps(item.attributes),
           "attribute_names": [a.get("name") for a in item.attributes if isinstance(a, dict) and a.get("name")],
           "created_at": item.created_at, "updated_at": item.updated_at, "published_at": item.published_at,
           "refreshed_at": now}
    prices = [{"item_id": item.id, "pricebook_id": book, "currency": currency, "amount": str(amount)}
              for book, amounts in item.prices.items() if book for currency, amount in amounts.items()]
    return row, prices


def variant_row(raw: dict, now: datetime) -> dict:
    options = [o for o in raw.get("options") or [] if isinstance(o, dict)]
    values = [(o.get("option") or {}).get("customId") for o in options]
    return {"id": raw["id"], "custom_id": raw.get("customId"), "item_id": raw.get("itemId"),
            "status": raw.get("status"), "option_values": [v for v in values if isinstance(v, str)],
            "options": json.dumps(options), "created_at": time_field(raw, "createdAt"),
            "updated_at": time_field(raw, "updatedAt"), "refreshed_at": now}


def _text(value) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


CATALOG_COLUMNS = {t: [c.split()[0] for c in " ".join(cols.split()).split(", ")] for t, cols in {
    "threekit_items": "id, name, sku, plytix_product_id, image_id, proxy_id, metadata, attributes, attribute_names, "
                      "created_at, updated_at, published_at, refreshed_at",
    "threekit_item_prices": "item_id, pricebook_id, currency, amount",
    "threekit_pricebooks": "id, name, currencies, deleted_at, refreshed_at",
    "threekit_variants": "id, custom_id, item_id, status, option_values, options, created_at, updated_at, "
                         "refreshed_at"}.items()}


class CatalogConfig(dg.Config):
    refresh_all_variants: bool = False  # re-read every item's variants, changed or not


@dg.asset(
    group_name="configurator", kinds={"threekit", "duckdb"}, owners=OWNERS, pool="duckdb_warehouse",
    description="Threekit's catalog as it stands: items with their pricebook prices and Plytix/PhotoShelter "
                "references, pricebooks, and each item's variants. Read in full each run (it is small).",
)
def threekit_catalog(context: dg.AssetExecutionContext, config: CatalogConfig, threekit: ThreekitResource,
                     warehouse: DuckDBResource) -> dg.MaterializeResult:
    client, now = threekit.get_client(), datetime.now(UTC)
    requests_before = client.http.requests_sent
    books = [{"id": b.id, "name": b.name, "currencies": b.currencies, "deleted_at": b.deleted_at, "refreshed_at": now}
             for b in client.pricebooks(include_deleted=True)]
    items, prices = [], []
    for page in client.iter_assets("item"):
        for item in page:
            row, item_prices = item_rows(item, now)
            items.append(row)
            prices += item_prices
    with warehouse.get_connection() as con:
        ensure_tables(con)
        known = dict(con.execute("SELECT id, updated_at FROM threekit_items").fetchall())
    changed = [r["id"] for r in items if config.refresh_all_variants or r["id"] not in known
               or known[r["id"]] is None or r["updated_at"] is None or known[r["id"]] != r["updated_at"]]
    variants = [variant_row(raw, now) for item_id in changed for page in client.iter_variants(item_id) for raw in page]
    frames = {"threekit_items": items, "threekit_item_prices": prices, "threekit_pricebooks": books,
              "threekit_variants": variants}
    with warehouse.get_connection() as con:
        with transaction(con):
            for table in ("threekit_items", "threekit_item_prices", "threekit_pricebooks"):
                con.execute(f"DELETE FROM {table}")  # noqa: S608 (fixed names)
            # Variants of unchanged items stay as read before; those of changed or gone items are replaced.
            redo = set(changed)
            ids = pd.DataFrame({"id": [r["id"] for r in items], "changed": [r["id"] in redo for r in items]},
                               columns=["id", "changed"]).astype({"id": object, "changed": bool})
            con.register("catalog_ids", ids)
            con.execute("DELETE FROM threekit_variants WHERE item_id NOT IN "
                        "(SELECT id FROM catalog_ids WHERE NOT changed)")
            con.unregister("catalog_ids")
            for table, rows in frames.items():
                if rows:
                    frame = pd.DataFrame(rows, columns=CATALOG_COLUMNS[table])  # noqa: F841 (read by SQL)
                    con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM frame")  # noqa: S608
        counts = dict(con.execute(
            "SELECT 'variants', count(*) FROM threekit_variants UNION ALL "
            "SELECT 'variants_not_active', count(*) FROM threekit_variants WHERE status <> 'active' UNION ALL "
            "SELECT 'items_without_any_price', count(*) FROM threekit_items WHERE id NOT IN "
            "(SELECT item_id FROM threekit_item_prices)").fetchall())
    active = sum(1 for b in books if b["deleted_at"] is None)
    summary = (f"**{len(items):,}** items, **{len(prices):,}** prices in **{active}** active pricebooks "
               f"({len(books) - active} deleted), **{counts['variants']:,}** variants "
               f"({counts['variants_not_active']:,} not active); variants re-read for {len(changed):,} items.")
    return dg.MaterializeResult(metadata={
        "dagster/row_count": len(items), "prices": len(prices), "pricebooks_active": active,
        "variants_reread_for_items": len(changed), **counts, "api_requests": client.http.requests_sent - requests_before,
        "dagster/column_schema": table_schema("threekit_items"), "summary": dg.MetadataValue.md(summary),
    })


configurator_extraction_assets = [threekit_configurations, threekit_orders, threekit_asset_changes, threekit_catalog]
