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
# `attributes` is parsed once per product: one multi-path json_extract (`$paths`, see SNAPSHOT_PATHS)
# whose small results are read with ->> and casts. Seven single-path calls plus one per locale
# re-parsed the whole document each time: three quarters of the snapshot's time at 100k products.
SNAPSHOT_SQL = """
WITH latest AS (  -- by row id from a narrow aggregate: a window would sort every wide row (its attributes)
    SELECT * FROM plytix_product_changes WHERE rowid IN (
        SELECT arg_max(rowid, (modified, extracted_at)) FROM plytix_product_changes WHERE partition_date <= $day
        GROUP BY id)
),
gone AS (  -- deleted by the end of D, per the full-ID reconciliation
    SELECT id FROM plytix_deletions WHERE detected_at < $day + INTERVAL 1 DAY
),
parsed AS (
    SELECT *, json_extract(attributes, $paths) AS v FROM latest
)
SELECT $day AS snapshot_date, l.id AS product_id, l.sku, upper(trim(l.sku)) AS sku_key, l.label, l.status,
       l.v[1] ->> '$' AS workflow_stage, l.modified, l.parent_id,
       l.num_variations, l.parent_id IS NOT NULL AS is_variant, l.categories AS category_ids,
       c.path AS category_path, c.path[1] AS category_root,
       l.v[2] ->> '$' AS style_code,
       l.v[3] ->> '$' AS product_family,
       l.v[4] ->> '$' AS brand,
       coalesce(CAST(l.v[5] AS VARCHAR[]), []) AS sales_channels,
       l.v[6] ->> '$' AS hero_image_id,
       coalesce(json_extract_string(l.v[7], '$[*].id'), []) AS alternate_image_ids,  -- ids, not JSON strings
       coalesce(list_sort([x[1] FOR x IN list_zip($locales, l.v[8:]) IF coalesce(x[2] ->> '$', '') <> '']), [])
           AS locales,
       l.attributes
FROM parsed l
LEFT JOIN plytix_categories c ON c.id = l.categories[1]
WHERE l.id NOT IN (SELECT id FROM gone)
"""
# The paths of `v` in SNAPSHOT_SQL, in order; the locales' attributes follow.
SNAPSHOT_PATHS = ["$.workflow_stage", "$.style_code", "$.product_family", "$.brand", "$.sales_channels",
                  "$.hero_image.id", "$.alternate_images"]


def build_snapshot(con, day: date) -> int:
    rules = load_rules(ProjectSettings().rules_path)
    locales = ["en", *rules.locales]
    attributes = ["description", *rules.locales.values()]
    paths = SNAPSHOT_PATHS + [f"$.{attribute}" for attribute in attributes]
    return replace_partitions(con, "catalog_snapshot", "snapshot_date", day, day + timedelta(days=1), SNAPSHOT_SQL,
                              {"day": day, "locales": locales, "paths": paths})


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
