"""`catalog_snapshot`: every product as it stood at the end of day D, built in SQL from the changes."""


from datetime import date, timedelta

import dagster as dg
from dagster_duckdb import DuckDBResource

from assets.checks import MATCHES_SOURCE, SKU_UNIQUE, matches_source_total, sku_unique
from assets.extraction import EPOCH, plytix_categories, plytix_deleted_products, plytix_product_changes
from assets.rules import load_rules
from assets.warehouse import ensure_tables, replace_partitions, table_schema
from orchestration.partitions import daily_partitions, partition_days
from orchestration.settings import ProjectSettings
from resources.plytix import PlytixResource, format_timestamp

# Latest version of each product from every change up to D; categories resolved to their paths.
SNAPSHOT_SQL = """
WITH latest AS (
    SELECT * FROM plytix_product_changes WHERE partition_date <= $day
    QUALIFY row_number() OVER (PARTITION BY id ORDER BY modified DESC, extracted_at DESC) = 1
),
gone AS (  -- deleted by the end of D, per the full-ID reconciliation
    SELECT id FROM plytix_deletions WHERE detected_at < $day + INTERVAL 1 DAY
),
locales AS (
    SELECT l.id, list(t.locale ORDER BY t.locale) FILTER (
        WHERE coalesce(json_extract_string(l.attributes, '$.' || t.attribute), '') <> '') AS present
    FROM latest l, (SELECT unnest($locales) AS locale, unnest($locale_attributes) AS attribute) t
    GROUP BY l.id
)
SELECT $day AS snapshot_date, l.id AS product_id, l.sku, upper(trim(l.sku)) AS sku_key, l.label, l.status,
       json_extract_string(l.attributes, '$.workflow_stage') AS workflow_stage, l.modified, l.parent_id,
       l.num_variations, l.parent_id IS NOT NULL AS is_variant, l.categories AS category_ids,
       c.path AS category_path, c.path[1] AS category_root,
       json_extract_string(l.attributes, '$.style_code') AS style_code,
       json_extract_string(l.attributes, '$.product_family') AS product_family,
       json_extract_string(l.attributes, '$.brand') AS brand,
       coalesce(CAST(json_extract(l.attributes, '$.sales_channels') AS VARCHAR[]), []) AS sales_channels,
       json_extract_string(l.attributes, '$.hero_image.id') AS hero_image_id,
       coalesce(CAST(json_extract(l.attributes, '$.alternate_images[*].id') AS VARCHAR[]), []) AS alternate_image_ids,
       coalesce(loc.present, []) AS locales, l.attributes
FROM latest l
LEFT JOIN plytix_categories c ON c.id = l.categories[1]
LEFT JOIN locales loc ON loc.id = l.id
WHERE l.id NOT IN (SELECT id FROM gone)
"""


def build_snapshot(con, day: date) -> int:
    rules = load_rules(ProjectSettings().rules_path)
    locales = ["en", *rules.locales]
    attributes = ["description", *rules.locales.values()]
    return replace_partitions(con, "catalog_snapshot", "snapshot_date", day, day + timedelta(days=1), SNAPSHOT_SQL,
                              {"day": day, "locales": locales, "locale_attributes": attributes})


def snapshot_summary(con, day: date) -> tuple[dict, str]:
    rows, variants, stages = con.execute(
        """SELECT count(*), count(*) FILTER (WHERE is_variant),
                  histogram(coalesce(workflow_stage, '(none)'))
           FROM catalog_snapshot WHERE snapshot_date = ?""", [day]).fetchone()
    by_stage = "\n".join(f"| {stage} | {count:,} |" for stage, count in sorted((stages or {}).items()))
    markdown = (f"**{rows:,} products** on {day} ({variants:,} variants).\n\n| workflow stage | products |\n"
                f"|---|---|\n{by_stage}")
    return {"dagster/row_count": rows, "variants": variants}, markdown


@dg.asset(
    deps=[plytix_product_changes, plytix_categories, plytix_deleted_products], partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(), pool="duckdb_warehouse", group_name="catalog",
    kinds={"duckdb"}, owners=["team:catalog-operations"], check_specs=[SKU_UNIQUE, MATCHES_SOURCE],
    description="Every product as it stood at the end of day D: the latest version of each product from all "
                "changes up to D, with workflow stage, category path, family/variants and locales present.",
)
def catalog_snapshot(context: dg.AssetExecutionContext, warehouse: DuckDBResource,
                     plytix: PlytixResource) -> dg.MaterializeResult:
    days = partition_days(context)
    client = plytix.get_client()

    def count_source(hi):
        return client.count_products([[{"field": "modified", "operator": "gte", "value": format_timestamp(EPOCH)},
                                       {"field": "modified", "operator": "lt", "value": format_timestamp(hi)}]])

    with warehouse.get_connection() as con:
        ensure_tables(con)
        for day in days:
            build_snapshot(con, day)
        metadata, markdown = snapshot_summary(con, days[-1])
        checks = [sku_unique(con, days), matches_source_total(con, days, count_source)]
    return dg.MaterializeResult(metadata={**metadata, "dagster/column_schema": table_schema("catalog_snapshot"),
                                          "summary": dg.MetadataValue.md(markdown)}, check_results=checks)
