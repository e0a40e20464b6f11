"""Asset checks, evaluated inside the assets' runs over each day they wrote.

Severities are chosen on purpose: only a blocking ERROR check stops downstream assets in the run,
so it is kept for what makes downstream output wrong (a fanned-out join, an empty report over a
non-empty catalog). Facts a person should fix but that must not stop the report (duplicate SKUs,
a snapshot behind its source) are WARN: the report is where they are routed to their owners.
"""

from datetime import date, datetime

import dagster as dg

from orchestration.partitions import day_bounds

SKU_UNIQUE = dg.AssetCheckSpec("sku_unique", asset="catalog_snapshot",
                               description="No two products share a SKU (case and whitespace ignored).")
MATCHES_SOURCE = dg.AssetCheckSpec("matches_source_total", asset="catalog_snapshot",
                                   description="Products last changed before the end of D: Plytix's reported "
                                               "total equals the snapshot's (nothing lost).")
NO_FAN_OUT = dg.AssetCheckSpec("join_does_not_fan_out", asset="product_images", blocking=True,
                               description="Each (product, image) pair appears once, and an image reaches several "
                                           "products only through one shared key (SKU, style code or family).")
REPORT_NOT_EMPTY = dg.AssetCheckSpec("not_empty_when_snapshot_is_not", asset="catalog_quality_report", blocking=True,
                                     description="A non-empty catalog always yields findings (launch_ready at least).")


def _per_day(days: list[date], failures: dict[date, str], spec: dg.AssetCheckSpec,
             severity: dg.AssetCheckSeverity, metadata: dict) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=spec.name, asset_key=spec.asset_key, passed=not failures, severity=severity,
        metadata={**metadata, "days_checked": len(days), "days_failed": len(failures),
                  "failures": dg.MetadataValue.md("\n".join(f"- {d}: {why}" for d, why in failures.items()) or "none")},
    )


def sku_unique(con, days: list[date]) -> dg.AssetCheckResult:
    failures, duplicates = {}, 0
    for day in days:
        groups = con.execute("SELECT sku_key, count(*) FROM catalog_snapshot WHERE snapshot_date = ? "
                             "GROUP BY sku_key HAVING count(*) > 1 ORDER BY sku_key", [day]).fetchall()
        if groups:
            duplicates = len(groups)
            failures[day] = f"{len(groups)} SKU(s) shared, e.g. " + ", ".join(g[0] for g in groups[:5])
    return _per_day(days, failures, SKU_UNIQUE, dg.AssetCheckSeverity.WARN, {"duplicate_skus": duplicates})


def matches_source_total(con, days: list[date], count_source) -> dg.AssetCheckResult:
    """`count_source(hi)` asks Plytix how many products were last modified before `hi`.

    Comparable side: snapshot products whose latest extracted change is before the end of D. A
    product changed later but not yet extracted, or deleted since, shows up as a difference: worth
    a warning (extraction is behind), not a stop.
    """
    failures, last = {}, {}
    for day in days:
        hi: datetime = day_bounds(day)[1]
        ours = con.execute(
            """SELECT count(*) FROM catalog_snapshot s WHERE s.snapshot_date = $day AND NOT EXISTS (
                   SELECT 1 FROM plytix_product_changes c WHERE c.id = s.product_id AND c.modified >= $hi)""",
            {"day": day, "hi": hi}).fetchone()[0]
        theirs = count_source(hi)
        last = {"snapshot_products": ours, "source_total": theirs}
        if ours != theirs:
            failures[day] = f"snapshot {ours:,} vs Plytix {theirs:,}"
    return _per_day(days, failures, MATCHES_SOURCE, dg.AssetCheckSeverity.WARN, last)


def join_does_not_fan_out(con, days: list[date]) -> dg.AssetCheckResult:
    failures = {}
    for day in days:
        repeated = con.execute(
            """SELECT count(*) FROM (SELECT product_id, image_id FROM product_images
               WHERE snapshot_date = ? AND image_id IS NOT NULL GROUP BY ALL HAVING count(*) > 1)""", [day]).fetchone()[0]
        unexplained = con.execute(
            """SELECT count(*) FROM (SELECT image_id FROM product_images WHERE snapshot_date = ? AND image_id IS NOT NULL
               GROUP BY image_id  -- more than one (type, key) pair, without counting distinct pairs
               HAVING min(match_type) <> max(match_type) OR min(match_key) <> max(match_key)
                   OR bool_or(match_key IS NULL))""",
            [day]).fetchone()[0]
        if repeated or unexplained:
            failures[day] = f"{repeated} repeated pair(s), {unexplained} image(s) reaching products through different keys"
    return _per_day(days, failures, NO_FAN_OUT, dg.AssetCheckSeverity.ERROR, {})


def report_not_empty(con, days: list[date]) -> dg.AssetCheckResult:
    failures = {}
    for day in days:
        products, findings = con.execute(
            """SELECT (SELECT count(*) FROM catalog_snapshot WHERE snapshot_date = $day),
                      (SELECT count(*) FROM catalog_quality_report WHERE report_date = $day)""", {"day": day}).fetchone()
        if products and not findings:
            failures[day] = f"{products:,} products but no findings"
    return _per_day(days, failures, REPORT_NOT_EMPTY, dg.AssetCheckSeverity.ERROR, {})


