"""`catalog_quality_report`: one row per (product, rule) finding, routed to an owner, tracked day to day.

The rules file is loaded into small temp tables and every rule is a SQL query over the snapshot and
the image join, so a million products are evaluated by DuckDB, not by a Python loop.
"""


from datetime import date, timedelta

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from assets.checks import REPORT_NOT_EMPTY, report_not_empty
from assets.images import product_images
from assets.rules import QualityRules, load_rules
from assets.warehouse import ensure_tables, replace_partitions, table_schema
from orchestration.partitions import daily_partitions, partition_days
from orchestration.settings import ProjectSettings

FINDINGS_SQL = """
CREATE OR REPLACE TEMP TABLE raw_findings AS
WITH p AS (  -- every attribute a rule reads, parsed once per product (`field_value` looks one up)
    SELECT *, json_extract_string(attributes, $paths) AS vals FROM catalog_snapshot WHERE snapshot_date = $day
),
-- Two flags for every product, then the lists only for the few products with expired or expiring
-- rights: list aggregates over all 3M image rows (one state per product) were most of this SQL's memory.
img_flags AS (
    SELECT product_id, bool_or(image_id IS NOT NULL) AS has_images,
           bool_or(approval_status = 'Approved') AS has_approved
    FROM product_images WHERE snapshot_date = $day GROUP BY product_id
),
img_rights AS (
    SELECT product_id,
           list(DISTINCT image_id ORDER BY image_id) FILTER (WHERE license_expiration_date < $day) AS expired,
           list(DISTINCT image_id ORDER BY image_id) FILTER (WHERE license_expiration_date >= $day) AS expiring,
           flatten(list(allowed_channels) FILTER (WHERE license_expiration_date < $day)) AS expired_channels,
           flatten(list(allowed_channels) FILTER (WHERE license_expiration_date >= $day)) AS expiring_channels
    FROM product_images
    WHERE snapshot_date = $day AND approval_status = 'Approved' AND license_expiration_date < $day + $expiring_days
    GROUP BY product_id
),
img AS (
    SELECT f.product_id, f.has_images, f.has_approved, r.expired, r.expiring, r.expired_channels,
           r.expiring_channels
    FROM img_flags f LEFT JOIN img_rights r USING (product_id)
),
known_category AS (
    SELECT p.product_id, bool_or(p.category_path[1:len(f.prefix)] = f.prefix) AS known,
           bool_or(f.family = p.product_family AND p.category_path[1:len(f.prefix)] = f.prefix) AS family_ok
    FROM p CROSS JOIN cfg_family_prefix f GROUP BY p.product_id
),
findings AS (
    SELECT p.product_id, 'missing_required_attribute' AS rule, r.attribute AS detail, NULL AS channel
    FROM p JOIN cfg_required r ON r.category_root IS NULL
    WHERE field_value(p.label, p.vals, $names, r.attribute) = ''
  UNION ALL
    SELECT p.product_id, 'missing_category_attribute', r.attribute, NULL
    FROM p JOIN cfg_required r ON r.category_root = p.category_root
    WHERE field_value(p.label, p.vals, $names, r.attribute) = ''
  UNION ALL
    SELECT p.product_id, 'channel_attribute_invalid',
           c.channel || ': ' || c.attribute || CASE WHEN v.value = '' THEN ' missing'
                ELSE ' longer than ' || c.max_length || ' characters' END, c.channel
    FROM p JOIN cfg_channel c ON list_contains(p.sales_channels, c.channel),
         LATERAL (SELECT field_value(p.label, p.vals, $names, c.attribute) AS value) v
    WHERE v.value = '' OR (c.max_length IS NOT NULL AND length(v.value) > c.max_length)
  UNION ALL
    SELECT p.product_id, 'missing_images', 'no image matched by SKU, style code or family', NULL
    FROM p JOIN img USING (product_id) WHERE NOT img.has_images
  UNION ALL
    SELECT p.product_id, 'unapproved_images', 'no approved image', NULL
    FROM p JOIN img USING (product_id) WHERE img.has_images AND NOT img.has_approved
  UNION ALL
    SELECT p.product_id, 'no_hero_image', 'stage ' || p.workflow_stage || ' without a hero image', NULL
    FROM p WHERE list_contains($hero_stages, p.workflow_stage) AND p.hero_image_id IS NULL
  UNION ALL
    SELECT p.product_id, 'usage_rights_expired', 'expired: ' || array_to_string(img.expired, ', '), NULL
    FROM p JOIN img USING (product_id)
    WHERE len(img.expired) > 0 AND list_has_any(img.expired_channels, p.sales_channels)
  UNION ALL
    SELECT p.product_id, 'usage_rights_expiring', 'expiring: ' || array_to_string(img.expiring, ', '), NULL
    FROM p JOIN img USING (product_id)
    WHERE len(img.expiring) > 0 AND list_has_any(img.expiring_channels, p.sales_channels)
  UNION ALL
    SELECT p.product_id, 'duplicate_sku', 'SKU ' || p.sku_key || ' used by ' || d.n || ' products', NULL
    FROM p JOIN (SELECT sku_key, count(*) AS n FROM p GROUP BY sku_key HAVING count(*) > 1) d USING (sku_key)
  UNION ALL
    SELECT p.product_id, 'unknown_category',
           coalesce(array_to_string(p.category_path, ' > '), 'no category'), NULL
    FROM p LEFT JOIN known_category k USING (product_id) WHERE NOT coalesce(k.known, false)
  UNION ALL
    SELECT p.product_id, 'family_mismatch',
           'family ' || coalesce(p.product_family, '(none)') || ' in ' || array_to_string(p.category_path, ' > '), NULL
    FROM p JOIN known_category k USING (product_id) WHERE k.known AND NOT k.family_ok
  UNION ALL
    SELECT p.product_id, 'missing_translation', l.locale, NULL
    FROM p JOIN cfg_locale l ON field_value(p.label, p.vals, $names, l.attribute) = ''
)
SELECT product_id, rule, string_agg(detail, '; ' ORDER BY detail) AS detail, min(channel) AS channel
FROM findings GROUP BY product_id, rule
"""

# Derived rules, routing and the comparison with D-1.
REPORT_SQL = """
WITH p AS (SELECT * FROM catalog_snapshot WHERE snapshot_date = $day),
with_severity AS (
    SELECT f.*, s.severity FROM raw_findings f JOIN cfg_severity s USING (rule)
),
derived AS (
    SELECT p.product_id, 'publish_blocked' AS rule,
           'published with failing rules: ' || string_agg(f.rule, ', ' ORDER BY f.rule) AS detail, NULL AS channel
    FROM p JOIN with_severity f USING (product_id)
    WHERE f.severity = 'error' AND (p.status = 'Completed' OR p.workflow_stage = 'Published')
    GROUP BY p.product_id
  UNION ALL
    SELECT p.product_id, 'launch_ready', 'all launch checklist rules pass', NULL
    FROM p WHERE p.workflow_stage = $launch_stage AND p.product_id NOT IN (
        SELECT product_id FROM with_severity WHERE severity IN ('error', 'warning'))
),
current AS (
    SELECT f.product_id, p.sku, f.rule, s.severity, f.detail, p.category_root,
           coalesce(ro.owner, co.owner, ca.owner, $default_owner) AS owner
    FROM (SELECT * FROM raw_findings UNION ALL SELECT * FROM derived) f
    JOIN p USING (product_id) JOIN cfg_severity s USING (rule)
    LEFT JOIN cfg_owner ro ON ro.kind = 'rule' AND ro.key = f.rule
    LEFT JOIN cfg_owner co ON co.kind = 'channel' AND co.key = f.channel
    LEFT JOIN cfg_owner ca ON ca.kind = 'category' AND ca.key = p.category_root
),
previous AS (
    SELECT * FROM catalog_quality_report WHERE report_date = $day - 1 AND state <> 'resolved'
)
SELECT $day AS report_date, c.product_id, c.sku, c.rule, c.severity, c.owner, c.category_root, c.detail,
       coalesce(pr.first_seen, $day) AS first_seen, $day AS last_seen,
       CASE WHEN pr.product_id IS NULL THEN 'new' ELSE 'persisting' END AS state
FROM current c LEFT JOIN previous pr USING (product_id, rule)
UNION ALL
SELECT $day, pr.product_id, pr.sku, pr.rule, pr.severity, pr.owner, pr.category_root, pr.detail,
       pr.first_seen, pr.last_seen, 'resolved'
FROM previous pr ANTI JOIN current c USING (product_id, rule)
"""


def load_rule_tables(con, rules: QualityRules) -> None:
    """The rules file as temp tables the SQL joins against."""
    required = [(None, a) for a in rules.required_attributes.global_] + [
        (root, a) for root, attrs in rules.required_attributes.by_category.items() for a in attrs]
    tables = {
        "cfg_required": pd.DataFrame(required, columns=["category_root", "attribute"]),
        "cfg_channel": pd.DataFrame([(ch, r.attribute, r.max_length) for ch, rs in rules.channel_rules.items()
                                     for r in rs], columns=["channel", "attribute", "max_length"]),
        "cfg_family_prefix": pd.DataFrame([(fam, prefix) for fam, prefixes in rules.taxonomy.families.items()
                                           for prefix in prefixes], columns=["family", "prefix"]),
        "cfg_locale": pd.DataFrame(list(rules.locales.items()), columns=["locale", "attribute"]),
        "cfg_severity": pd.DataFrame(list(rules.severity.items()), columns=["rule", "severity"]),
        "cfg_owner": pd.DataFrame(
            [("rule", k, v) for k, v in rules.owners.by_rule.items()]
            + [("channel", k, v) for k, v in rules.owners.by_channel.items()]
            + [("category", k, v) for k, v in rules.owners.by_category.items()], columns=["kind", "key", "owner"]),
    }
    for name, frame in tables.items():
        con.register(f"{name}_frame", frame)
        con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM {name}_frame")  # noqa: S608 (fixed names)
        con.unregister(f"{name}_frame")
    con.execute("ALTER TABLE cfg_family_prefix ALTER prefix TYPE VARCHAR[]")
    con.execute("ALTER TABLE cfg_channel ALTER max_length TYPE INTEGER")


# A rule's attribute on one product: `label` is the product's own field, the rest come from `vals`,
# the product's attributes at `names`' paths. Missing, null and empty all read as ''.
FIELD_VALUE_MACRO = """
CREATE OR REPLACE TEMP MACRO field_value(label, vals, names, attribute) AS
    coalesce(CASE WHEN attribute = 'label' THEN label ELSE vals[list_position(names, attribute)] END, '')
"""


def rule_attributes(rules: QualityRules) -> list[str]:
    """Every attribute a rule reads, in a fixed order."""
    names = {*rules.required_attributes.global_, *rules.locales.values(),
             *(a for attrs in rules.required_attributes.by_category.values() for a in attrs),
             *(r.attribute for rs in rules.channel_rules.values() for r in rs)}
    return sorted(names)


def build_report(con, day: date, rules: QualityRules) -> int:
    load_rule_tables(con, rules)
    con.execute(FIELD_VALUE_MACRO)
    names = rule_attributes(rules)
    con.execute(FINDINGS_SQL, {"day": day, "expiring_days": rules.images.expiring_within_days,
                               "hero_stages": rules.images.stages_needing_hero, "names": names,
                               "paths": [f"$.{name}" for name in names]})
    return replace_partitions(con, "catalog_quality_report", "report_date", day, day + timedelta(days=1), REPORT_SQL,
                              {"day": day, "launch_stage": rules.launch.stage, "default_owner": rules.owners.default})


def report_summary(con, day: date) -> tuple[dict, str]:
    by_state = dict(con.execute("SELECT state, count(*) FROM catalog_quality_report WHERE report_date = ? "
                                "GROUP BY state", [day]).fetchall())
    by_severity = dict(con.execute("SELECT severity, count(*) FROM catalog_quality_report WHERE report_date = ? "
                                   "AND state <> 'resolved' GROUP BY severity", [day]).fetchall())
    products, clean = con.execute(
        """SELECT count(*), count(*) FILTER (WHERE product_id NOT IN (
               SELECT product_id FROM catalog_quality_report WHERE report_date = $day AND state <> 'resolved'
               AND severity = 'error'))
           FROM catalog_snapshot WHERE snapshot_date = $day""", {"day": day}).fetchone()
    top_rules = con.execute("SELECT rule, severity, count(*) AS n FROM catalog_quality_report WHERE report_date = ? "
                            "AND state <> 'resolved' AND severity <> 'info' GROUP BY ALL ORDER BY n DESC LIMIT 5",
                            [day]).fetchall()
    worst = con.execute("SELECT coalesce(category_root, '(none)'), count(*) AS n FROM catalog_quality_report "
                        "WHERE report_date = ? AND state <> 'resolved' AND severity = 'error' GROUP BY 1 "
                        "ORDER BY n DESC LIMIT 5", [day]).fetchall()
    open_rows = sum(n for s, n in by_state.items() if s != "resolved")
    completeness = round(100 * clean / products, 2) if products else 0.0
    metadata = {
        "dagster/row_count": sum(by_state.values()), "open_findings": open_rows,
        "completeness_pct": completeness, "findings_error": by_severity.get("error", 0),
        "findings_warning": by_severity.get("warning", 0), "findings_info": by_severity.get("info", 0),
        "new_findings": by_state.get("new", 0), "persisting_findings": by_state.get("persisting", 0),
        "resolved_findings": by_state.get("resolved", 0),
    }
    rule_lines = "\n".join(f"| {r} | {s} | {n:,} |" for r, s, n in top_rules)
    worst_lines = "\n".join(f"| {c} | {n:,} |" for c, n in worst)
    markdown = (f"**{completeness}%** of {products:,} products pass every error-level rule on {day}. "
                f"{by_state.get('new', 0):,} new, {by_state.get('resolved', 0):,} resolved since the day before.\n\n"
                f"**Top failing rules**\n\n| rule | severity | findings |\n|---|---|---|\n{rule_lines}\n\n"
                f"**Worst categories (error findings)**\n\n| category | findings |\n|---|---|\n{worst_lines}")
    return metadata, markdown


@dg.asset(
    deps=[product_images], partitions_def=daily_partitions, backfill_policy=dg.BackfillPolicy.single_run(),
    pool="duckdb_warehouse", group_name="quality", kinds={"duckdb"}, owners=["team:catalog-operations"],
    check_specs=[REPORT_NOT_EMPTY],
    description="One row per (product, rule) finding with severity, owner, first/last seen and whether it is new, "
                "persisting or resolved compared with D-1. Rules, owners and thresholds: orchestration/rules.yaml.",
)
def catalog_quality_report(context: dg.AssetExecutionContext, warehouse: DuckDBResource) -> dg.MaterializeResult:
    rules = load_rules(ProjectSettings().rules_path)
    with warehouse.get_connection() as con:
        ensure_tables(con)
        for day in partition_days(context):  # in order: each day is compared with the one before
            build_report(con, day, rules)
        metadata, markdown = report_summary(con, partition_days(context)[-1])
        checks = [report_not_empty(con, partition_days(context))]
    return dg.MaterializeResult(metadata={**metadata, "dagster/column_schema": table_schema("catalog_quality_report"),
                                          "summary": dg.MetadataValue.md(markdown)}, check_results=checks)
