"""`launch_packages`: for each seasonal launch in the rules, every product's complete package (its
attributes and the approved images licensed for the launch's channels on D) and what is missing."""


from datetime import timedelta

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from assets.quality import catalog_quality_report
from assets.rules import load_rules
from assets.warehouse import ensure_tables, replace_partitions, table_schema
from orchestration.partitions import daily_partitions, partition_days
from orchestration.settings import ProjectSettings

# Attribute-level findings that keep a product's package incomplete.
BLOCKING_RULES = ["missing_required_attribute", "missing_category_attribute", "channel_attribute_invalid",
                  "missing_translation", "unknown_category", "family_mismatch", "duplicate_sku"]

PACKAGES_SQL = """
WITH members AS (
    SELECT DISTINCT l.launch, s.*, l.channels
    FROM catalog_snapshot s JOIN cfg_launch l
      ON (l.prefix IS NOT NULL AND s.category_path[1:len(l.prefix)] = l.prefix)
      OR (l.sku_key IS NOT NULL AND s.sku_key = l.sku_key)
    WHERE s.snapshot_date = $day
),
images AS (  -- usable images licensed for every channel of the launch
    SELECT m.launch, m.product_id,
           list(pi.image_id ORDER BY pi.image_role = 'hero' DESC, pi.image_id) AS image_ids,
           max(pi.image_id) FILTER (WHERE pi.image_role = 'hero') AS hero
    FROM members m JOIN product_images pi ON pi.product_id = m.product_id AND pi.snapshot_date = $day
    WHERE pi.usable AND list_has_all(pi.rights_valid_channels, m.channels)
    GROUP BY ALL
),
blockers AS (
    SELECT product_id, list(DISTINCT rule ORDER BY rule) AS rules FROM catalog_quality_report
    WHERE report_date = $day AND state <> 'resolved' AND list_contains($blocking, rule) GROUP BY ALL
)
SELECT $day AS package_date, m.launch, m.product_id, m.sku, m.label, m.workflow_stage, i.hero AS hero_image_id,
       coalesce(i.image_ids, []) AS image_ids,
       list_concat(coalesce(b.rules, []),
                   CASE WHEN i.hero IS NULL THEN ['approved image licensed for ' || array_to_string(m.channels, ', ')]
                        ELSE [] END) AS missing,
       len(missing) = 0 AS complete, m.attributes
FROM members m LEFT JOIN images i USING (launch, product_id) LEFT JOIN blockers b USING (product_id)
"""


def launch_table(rules) -> pd.DataFrame:
    rows = [(launch.name, prefix, None, launch.channels) for launch in rules.launches for prefix in launch.categories]
    rows += [(launch.name, None, sku.strip().upper(), launch.channels) for launch in rules.launches for sku in launch.skus]
    return pd.DataFrame(rows, columns=["launch", "prefix", "sku_key", "channels"])


@dg.asset(
    deps=[catalog_quality_report], partitions_def=daily_partitions, backfill_policy=dg.BackfillPolicy.single_run(),
    pool="duckdb_warehouse", group_name="actions", kinds={"duckdb"}, owners=["team:merchandising"],
    description="Seasonal launch packages (rules.yaml `launches`): per product, its attributes and the approved "
                "images licensed for the launch's channels on D, complete or with what is missing.",
)
def launch_packages(context: dg.AssetExecutionContext, warehouse: DuckDBResource) -> dg.MaterializeResult:
    rules = load_rules(ProjectSettings().rules_path)
    with warehouse.get_connection() as con:
        ensure_tables(con)
        frame = launch_table(rules)  # noqa: F841 (read by SQL)
        con.execute("CREATE OR REPLACE TEMP TABLE cfg_launch AS SELECT launch, CAST(prefix AS VARCHAR[]) AS prefix, "
                    "sku_key, CAST(channels AS VARCHAR[]) AS channels FROM frame")
        for day in partition_days(context):
            replace_partitions(con, "launch_packages", "package_date", day, day + timedelta(days=1), PACKAGES_SQL,
                               {"day": day, "blocking": BLOCKING_RULES})
        last = partition_days(context)[-1]
        per_launch = con.execute("SELECT launch, count(*), count(*) FILTER (WHERE complete) FROM launch_packages "
                                 "WHERE package_date = ? GROUP BY launch ORDER BY launch", [last]).fetchall()
    lines = "\n".join(f"| {name} | {n:,} | {ok:,} | {n - ok:,} |" for name, n, ok in per_launch)
    return dg.MaterializeResult(metadata={
        "dagster/row_count": sum(n for _, n, _ in per_launch),
        "complete_packages": sum(ok for _, _, ok in per_launch),
        "dagster/column_schema": table_schema("launch_packages"),
        "summary": dg.MetadataValue.md(f"| launch | products | complete | incomplete |\n|---|---|---|---|\n{lines}"),
    })
