"""Extraction assets: what changed in Plytix and PhotoShelter on each day, streamed into DuckDB.

Partitioned by day of change, so any past range can be backfilled from the APIs, in one run per
range (`BackfillPolicy.single_run()`): one pass over the services for the whole window. The first
partition also carries everything changed before it (the baseline). A malformed record goes to
the source's quarantine table with its reason; the rest of the page is kept.
"""


import json
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from assets.quarantine import check_storable, quarantine_row, reason_for, share_check, share_check_spec
from assets.warehouse import StagingArea, ensure_tables, staging, swap_in_staged, table_schema
from orchestration.partitions import daily_partitions, day_bounds, is_first_partition, partition_days
from orchestration.settings import ProjectSettings
from resources.http import NotFound
from resources.photoshelter import PhotoShelterImage, PhotoShelterResource
from resources.plytix import PlytixProduct, PlytixResource, format_timestamp

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Changes younger than this may still be settling in the service's index (contract §7: hi = now - 2 min).
SETTLE = timedelta(minutes=2)
# The product fields read on every change: within Plytix's 50-field limit.
PLYTIX_FIELDS = ["label", "status", "modified", "categories", "thumbnail"] + [
    f"attributes.{label}" for label in (
        "workflow_stage", "style_code", "product_family", "brand", "color", "size", "material", "sales_channels",
        "description", "description_de", "description_fr", "marketplace_title", "launch_date", "hero_image",
        "alternate_images", "image_approval_status", "usage_rights_channels", "usage_rights_market",
        "license_expiration_date")
]
EXTRACTION_POLICY = dict(
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool="duckdb_warehouse",
    retry_policy=dg.RetryPolicy(max_retries=2, delay=ProjectSettings().extraction_retry_delay_s,
                                backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS),
)


def extraction_window(days: list[date], now: datetime) -> tuple[datetime, datetime]:
    """[lo, hi) for a run over `days`; the first partition reaches back to the epoch."""
    lo = EPOCH if is_first_partition(days[0]) else day_bounds(days[0])[0]
    return lo, min(day_bounds(days[-1])[1], now - SETTLE)


def partition_date(moment: datetime, first_day: date) -> date:
    """The partition a change belongs to; baseline changes from before the range join its first day."""
    return max(moment.astimezone(UTC).date(), first_day)


def plytix_rows(page: list[dict], first_day: date, now: datetime) -> tuple[list[dict], list[dict]]:
    """Split one search page into warehouse rows and quarantined records."""
    good, bad = [], []
    for item in page:
        try:
            product = PlytixProduct.model_validate(item)
            if product.modified is None:
                raise ValueError("modified: missing")
            row = {
                "partition_date": partition_date(product.modified, first_day), "id": product.id, "sku": product.sku,
                "label": product.label, "status": product.status, "modified": product.modified,
                "parent_id": product.parent_id, "num_variations": product.num_variations,
                "categories": product.categories, "thumbnail": product.thumbnail,
                "attributes": json.dumps(product.attributes), "extracted_at": now,
            }
            check_storable(item, row, "plytix_product_changes")
        except Exception as exc:  # whatever makes one record unreadable quarantines it, never the page
            bad.append(quarantine_row(first_day, "plytix", item, reason_for(exc), now))
            continue
        good.append(row)
    return good, bad


# A producer yields (unit, kept rows, quarantined rows); a unit (e.g. a gallery) is staged all or
# nothing and skipped when a retried run resumes. Producers get (lo, hi, units already done).
Producer = Callable[[datetime, datetime, set[str]], Iterator[tuple[str | None, list[dict], list[dict]]]]


# Pages without a unit are staged in batches of about this many rows: a DataFrame and a committed
# transaction per 100-product page was a quarter of the Plytix ingest's CPU.
STAGE_BATCH_ROWS = 5_000


def stage_pages(area: StagingArea, table: str, quarantine: str,
                pages: Iterator[tuple[str | None, list[dict], list[dict]]]) -> int:
    """Stage what a producer yields and return the number of pages (units) read. A unit is committed
    with its rows and the batch before it, all or nothing, so a resumed run never sees half a unit."""
    batch: dict[str, list[dict]] = {table: [], quarantine: []}
    read = 0
    for unit, good, bad in pages:
        batch[table] += good
        batch[quarantine] += bad
        read += 1
        if unit is not None or len(batch[table]) + len(batch[quarantine]) >= STAGE_BATCH_ROWS:
            area.append(batch, unit)
            batch = {table: [], quarantine: []}
    if batch[table] or batch[quarantine]:
        area.append(batch)
    return read


def stream_changes(context: dg.AssetExecutionContext, warehouse: DuckDBResource, source: str, table: str,
                   days: list[date], produce: Producer, requests_sent: Callable[[], int]) -> dg.MaterializeResult:
    """Stage every page, then swap the run's days into the warehouse at once."""
    quarantine = f"{source}_quarantine"
    lo, hi = extraction_window(days, datetime.now(UTC))
    with staging(warehouse.database, f"{table}-{days[0]}-{days[-1]}") as area:
        area.create(table)
        area.create(quarantine)
        hi = datetime.fromisoformat(area.remember("window_end", hi.isoformat()))  # a resumed run keeps its window
        done = area.done_units()
        if not done:  # an earlier attempt's batches without a unit (a keyset read) are read again whole:
            # drop them, or the swap would insert them twice
            for staged in (table, quarantine):
                area.con.execute(f"DELETE FROM {staged}")  # noqa: S608 (our fixed table names)
        if area.resumed:
            context.log.info(f"resuming {table}: {len(done)} unit(s) already staged by an earlier attempt")
        read = stage_pages(area, table, quarantine, produce(lo, hi, done))
        kept, quarantined = area.count(table), area.count(quarantine)
        with warehouse.get_connection() as con:
            ensure_tables(con)
            swap_in_staged(con, area, [table, quarantine], days[0], days[-1] + timedelta(days=1))
    if quarantined:
        context.log.warning(f"{quarantined} {source} record(s) quarantined; see table {quarantine}")
    return dg.MaterializeResult(check_results=[share_check(table, kept, quarantined)], metadata={
        "dagster/row_count": kept, "records_quarantined": quarantined, "units_read": read,
        "resumed": area.resumed, "api_requests": requests_sent(), "window_start": lo.isoformat(),
        "window_end": hi.isoformat(), "dagster/column_schema": table_schema(table),
        "summary": dg.MetadataValue.md(_summary(kept, quarantined, lo, hi, days)),
    })


def _summary(rows: int, quarantined: int, lo: datetime, hi: datetime, days: list[date]) -> str:
    share = quarantined / (rows + quarantined) if rows + quarantined else 0.0
    return (f"**{rows:,}** changes kept, **{quarantined:,}** quarantined ({share:.2%}) for "
            f"{days[0]} … {days[-1]} (window `{format_timestamp(lo)}` → `{format_timestamp(hi)}`).")


@dg.asset(
    group_name="catalog", kinds={"plytix", "duckdb"}, owners=["team:catalog-operations"],
    description="Every Plytix product change, by day of change (one row per product version).",
    check_specs=[share_check_spec("plytix_product_changes")], **EXTRACTION_POLICY,
)
def plytix_product_changes(context: dg.AssetExecutionContext, plytix: PlytixResource,
                           warehouse: DuckDBResource) -> dg.MaterializeResult:
    days = partition_days(context)
    client = plytix.get_client()

    def pages(lo: datetime, hi: datetime, done: set[str]):
        # Not resumable by unit: a keyset read is cheap to redo next to the PhotoShelter walk.
        now = datetime.now(UTC)
        for page in client.iter_modified(lo, hi, PLYTIX_FIELDS):
            yield None, *plytix_rows(page, days[0], now)

    return stream_changes(context, warehouse, "plytix", "plytix_product_changes", days, pages,
                          lambda: client.api.requests_sent)


def photoshelter_rows(images: list[PhotoShelterImage], lo: datetime, hi: datetime, first_day: date,
                      now: datetime) -> list[dict]:
    rows = []
    for image in images:
        if image.updated_at is None or not lo <= image.updated_at < hi:
            continue
        row = image.model_dump(include={
            "image_id", "gallery_id", "file_name", "updated_at", "link", "sku", "style_code", "product_family",
            "approval_status", "usage_ecommerce", "usage_social", "usage_print", "usage_marketplaces",
            "licensed_market", "license_expiration_date"})
        rows.append({**row, "keywords": image.keywords, "partition_date": partition_date(image.updated_at, first_day),
                     "extracted_at": now})
    return rows


@dg.asset(
    group_name="images", kinds={"photoshelter", "duckdb"}, owners=["team:content-operations"],
    description="Every PhotoShelter image change (metadata, approval, usage rights), by day of change. "
                "The DAM has no 'updated since' filter, so each run walks every gallery.",
    check_specs=[share_check_spec("photoshelter_image_changes")], **EXTRACTION_POLICY,
)
def photoshelter_image_changes(context: dg.AssetExecutionContext, photoshelter: PhotoShelterResource,
                               warehouse: DuckDBResource) -> dg.MaterializeResult:
    days = partition_days(context)
    client = photoshelter.get_client()

    def galleries(lo: datetime, hi: datetime, done: set[str]):
        """One unit per gallery: a retried run skips the galleries the failed attempt finished."""
        now = datetime.now(UTC)
        for gallery in client.iter_galleries():
            if gallery["gallery_id"] in done:
                continue
            rows, bad = [], []
            for page in client.iter_gallery_pages(gallery["gallery_id"]):
                images = []
                for item in page.items:
                    try:
                        check_storable(item)
                        images.append(PhotoShelterImage.from_listing(item, page.gallery_id))
                    except Exception as exc:  # one unreadable record is quarantined, never the gallery
                        bad.append(quarantine_row(days[0], "photoshelter", item, reason_for(exc), now))
                rows += photoshelter_rows(images, lo, hi, days[0], now)
            yield gallery["gallery_id"], rows, bad

    return stream_changes(context, warehouse, "photoshelter", "photoshelter_image_changes", days, galleries,
                          lambda: client.http.requests_sent)


@dg.asset(
    group_name="catalog", kinds={"plytix", "duckdb"}, owners=["team:catalog-operations"], pool="duckdb_warehouse",
    description="The Plytix category tree (id, name, path), refreshed whole: it is small.",
)
def plytix_categories(plytix: PlytixResource, warehouse: DuckDBResource) -> dg.MaterializeResult:
    now = datetime.now(UTC)
    rows = [{"id": c["id"], "name": c["name"], "path": c["path"], "refreshed_at": now}
            for c in plytix.get_client().iter_categories()]
    frame = pd.DataFrame(rows, columns=["id", "name", "path", "refreshed_at"])  # noqa: F841 (read by SQL)
    with warehouse.get_connection() as con:
        ensure_tables(con)
        con.execute("BEGIN TRANSACTION")
        con.execute("DELETE FROM plytix_categories")
        con.execute("INSERT INTO plytix_categories BY NAME SELECT * FROM frame")
        con.execute("COMMIT")
    return dg.MaterializeResult(metadata={"dagster/row_count": len(rows),
                                          "dagster/column_schema": table_schema("plytix_categories")})


# Ids the warehouse knows that Plytix did not list: candidates, confirmed one by one below.
CANDIDATES_SQL = """
SELECT DISTINCT c.id FROM plytix_product_changes c
WHERE c.id NOT IN (SELECT id FROM staged.plytix_live_ids) AND c.id NOT IN (SELECT id FROM plytix_deletions)
ORDER BY c.id
"""


@dg.asset(
    deps=[plytix_product_changes], group_name="catalog", kinds={"plytix", "duckdb"},
    owners=["team:catalog-operations"], pool="duckdb_warehouse",
    description="Full-ID reconciliation: every product id Plytix lists now, compared with the ids the warehouse "
                "knows. Products no longer listed are recorded as deleted (table plytix_deletions) and leave "
                "every snapshot of a day after their detection. Run it periodically (a full list costs one "
                "request per 100 products).",
)
def plytix_deleted_products(context: dg.AssetExecutionContext, plytix: PlytixResource,
                            warehouse: DuckDBResource) -> dg.MaterializeResult:
    now = datetime.now(UTC)
    client = plytix.get_client()
    with staging(warehouse.database, f"plytix_live_ids-{now:%Y%m%dT%H%M%S}") as area:
        area.create("plytix_live_ids")
        for page in client.iter_product_pages([], []):  # ids only: a page of 100 is tiny
            area.append({"plytix_live_ids": [{"id": item["id"]} for item in page]})
        live = area.con.execute("SELECT count(DISTINCT id) FROM plytix_live_ids").fetchone()[0]
        area.finish()
        with warehouse.get_connection() as con:
            ensure_tables(con)
            con.execute(f"ATTACH '{area.path}' AS staged (READ_ONLY)")  # our own path, never input
            try:
                candidates = [r[0] for r in con.execute(CANDIDATES_SQL).fetchall()]
                con.execute("DELETE FROM plytix_deletions WHERE id IN (SELECT id FROM staged.plytix_live_ids)")
            finally:
                con.execute("DETACH staged")
    # An unsorted listing can miss a product that moved mid-scan: only a 404 proves a deletion.
    confirmed = [pid for pid in candidates if _is_gone(client, pid)]
    if len(confirmed) < len(candidates):
        context.log.info(f"{len(candidates) - len(confirmed)} unlisted product(s) still exist; not deleted")
    with warehouse.get_connection() as con:
        if confirmed:
            con.executemany("INSERT INTO plytix_deletions VALUES (?, ?)", [[pid, now] for pid in confirmed])
        deleted = con.execute("SELECT count(*) FROM plytix_deletions").fetchone()[0]
    recent = len(confirmed)
    return dg.MaterializeResult(metadata={
        "live_products": live, "deleted_products": deleted, "newly_detected": recent,
        "api_requests": client.api.requests_sent,
        "summary": dg.MetadataValue.md(f"{live:,} products listed; {recent:,} newly detected as deleted, "
                                       f"{deleted:,} deleted in all."),
    })


def _is_gone(client, product_id: str) -> bool:
    try:
        client.get_product(product_id)
    except NotFound:
        return True
    return False
