"""`product_images`: the asset-image join, by SKU, else style code, else product family.

A product takes the images tagged with its SKU (case and whitespace ignored). Only if it has none
does it fall back to style-level shots (no SKU, its style code), and only then to family-level shots.
An image can therefore reach several products only through one shared key: a SKU typed twice (marked
`shared_by_duplicate_sku`, counted in metadata, reported by the duplicate-SKU rule) or a style/family
shot serving every product of that style/family without images of its own. Each row records the key it
matched on, and the asset check fails on anything else: rows are never multiplied silently.
"""


from datetime import date, timedelta

import dagster as dg
from dagster_duckdb import DuckDBResource

from assets.checks import NO_FAN_OUT, join_does_not_fan_out
from assets.extraction import photoshelter_image_changes
from assets.snapshot import catalog_snapshot
from assets.warehouse import ensure_tables, replace_rows, table_schema, transaction
from orchestration.partitions import daily_partitions, partition_days

IMAGES_AS_OF_SQL = """
CREATE OR REPLACE TEMP VIEW images_as_of AS
SELECT *, upper(trim(sku)) AS sku_key FROM photoshelter_image_changes WHERE partition_date <= $day
QUALIFY row_number() OVER (PARTITION BY image_id ORDER BY updated_at DESC, extracted_at DESC) = 1
"""

MATCHES_SQL = """
CREATE OR REPLACE TEMP TABLE image_matches AS
WITH products AS (SELECT * FROM catalog_snapshot WHERE snapshot_date = $day),
by_sku AS (
    SELECT p.product_id, i.image_id, 'sku' AS match_type, p.sku_key AS match_key
    FROM products p JOIN images_as_of i ON i.sku_key = p.sku_key
),
by_style AS (
    SELECT p.product_id, i.image_id, 'style_code' AS match_type, p.style_code AS match_key
    FROM products p JOIN images_as_of i ON i.sku IS NULL AND i.style_code = p.style_code
    WHERE p.product_id NOT IN (SELECT product_id FROM by_sku)
),
by_family AS (
    SELECT p.product_id, i.image_id, 'product_family' AS match_type, p.product_family AS match_key
    FROM products p JOIN images_as_of i
      ON i.sku IS NULL AND i.style_code IS NULL AND i.product_family = p.product_family
    WHERE p.product_id NOT IN (SELECT product_id FROM by_sku UNION ALL SELECT product_id FROM by_style)
)
SELECT * FROM by_sku UNION ALL SELECT * FROM by_style UNION ALL SELECT * FROM by_family
"""

# Usable: approved and licensed on D. Hero: the first usable image by id (front shots come first).
# Hero and sharing come from two hash aggregates, not window functions: sorting 3M matches per product
# and per image was a third of this asset's time at 1M products.
PRODUCT_IMAGES_SQL = """
WITH matched AS (
    SELECT m.product_id, m.image_id, m.match_type, m.match_key, i.approval_status, i.license_expiration_date,
           i.licensed_market,
           coalesce(i.approval_status = 'Approved'
                    AND (i.license_expiration_date IS NULL OR i.license_expiration_date >= $day), false) AS usable,
           list_filter([CASE WHEN i.usage_ecommerce = 'Allowed' THEN 'E-commerce' END,
                        CASE WHEN i.usage_social = 'Allowed' THEN 'Social' END,
                        CASE WHEN i.usage_print = 'Allowed' THEN 'Print' END,
                        CASE WHEN i.usage_marketplaces = 'Allowed' THEN 'Marketplaces' END], lambda x: x IS NOT NULL)
               AS allowed_channels
    FROM image_matches m JOIN images_as_of i USING (image_id)
),
shared AS (SELECT image_id FROM image_matches GROUP BY image_id HAVING count(*) > 1),
hero AS (SELECT product_id, min(image_id) AS image_id FROM matched WHERE usable GROUP BY product_id)
SELECT $day AS snapshot_date, p.product_id, p.sku, r.image_id, coalesce(r.match_type, 'none') AS match_type,
       r.match_key,
       CASE WHEN r.image_id IS NULL THEN NULL WHEN NOT r.usable THEN 'unusable'
            WHEN r.image_id = h.image_id THEN 'hero' ELSE 'alternate' END AS image_role,
       r.approval_status, coalesce(r.usable, false) AS usable, r.license_expiration_date, r.licensed_market,
       coalesce(r.allowed_channels, []) AS allowed_channels,
       CASE WHEN r.usable THEN r.allowed_channels ELSE [] END AS rights_valid_channels,
       coalesce(r.image_id IN (SELECT image_id FROM shared), false) AS shared_by_duplicate_sku
FROM catalog_snapshot p LEFT JOIN matched r USING (product_id) LEFT JOIN hero h USING (product_id)
WHERE p.snapshot_date = $day
"""

ORPHANS_SQL = """
SELECT $day AS snapshot_date, i.image_id, i.gallery_id, i.sku, i.style_code, i.product_family, i.approval_status
FROM images_as_of i ANTI JOIN image_matches m USING (image_id)
"""


def build_product_images(con, day: date) -> None:
    params = {"day": day}
    end = day + timedelta(days=1)
    con.execute(IMAGES_AS_OF_SQL.replace("$day", f"DATE '{day.isoformat()}'"))  # views take no parameters
    con.execute(MATCHES_SQL, params)
    with transaction(con):
        replace_rows(con, "product_images", "snapshot_date", day, end, PRODUCT_IMAGES_SQL, params)
        replace_rows(con, "orphan_images", "snapshot_date", day, end, ORPHANS_SQL, params)


def join_summary(con, day: date) -> tuple[dict, str]:
    row = con.execute(
        """SELECT count(*), count(DISTINCT product_id),
                  count(DISTINCT product_id) FILTER (WHERE match_type = 'none'),
                  count(DISTINCT product_id) - count(DISTINCT product_id) FILTER (WHERE usable),
                  count(*) FILTER (WHERE shared_by_duplicate_sku),
                  count(*) FILTER (WHERE match_type = 'sku'), count(*) FILTER (WHERE match_type = 'style_code'),
                  count(*) FILTER (WHERE match_type = 'product_family')
           FROM product_images WHERE snapshot_date = ?""", [day]).fetchone()
    orphans = con.execute("SELECT count(*) FROM orphan_images WHERE snapshot_date = ?", [day]).fetchone()[0]
    rows, products, no_images, no_usable, shared, by_sku, by_style, by_family = row
    metadata = {"dagster/row_count": rows, "products": products, "products_without_images": no_images,
                "products_without_usable_image": no_usable, "orphan_images": orphans,
                "rows_shared_by_duplicate_sku": shared, "matched_by_sku": by_sku, "matched_by_style_code": by_style,
                "matched_by_family": by_family,
                "usable_image_coverage_pct": round(100 * (products - no_usable) / products, 2) if products else 0.0}
    markdown = (f"**{products:,} products**, {rows:,} rows on {day}.\n\n"
                f"| | |\n|---|---|\n| matched by SKU / style / family | {by_sku:,} / {by_style:,} / {by_family:,} |\n"
                f"| products with no image | {no_images:,} |\n| products with no usable image | {no_usable:,} |\n"
                f"| orphan images | {orphans:,} |\n| rows shared by duplicate SKUs | {shared:,} |")
    return metadata, markdown


@dg.asset(
    deps=[catalog_snapshot, photoshelter_image_changes], partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(), pool="duckdb_warehouse", group_name="images",
    kinds={"duckdb"}, owners=["team:content-operations"], check_specs=[NO_FAN_OUT],
    description="Each product with its PhotoShelter images matched by SKU, else style code, else family: hero and "
                "alternates, approval, usage rights valid on D per channel; products with no usable image; "
                "orphan images (table orphan_images).",
)
def product_images(context: dg.AssetExecutionContext, warehouse: DuckDBResource) -> dg.MaterializeResult:
    with warehouse.get_connection() as con:
        ensure_tables(con)
        for day in partition_days(context):
            build_product_images(con, day)
        metadata, markdown = join_summary(con, partition_days(context)[-1])
        checks = [join_does_not_fan_out(con, partition_days(context))]
    return dg.MaterializeResult(metadata={**metadata, "dagster/column_schema": table_schema("product_images"),
                                          "summary": dg.MetadataValue.md(markdown)}, check_results=checks)
