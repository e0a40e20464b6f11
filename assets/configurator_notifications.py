"""`configurator_notifications`: what Threekit's data asks of people on day D, told once, and the
design-review outcome written back to Threekit orders.

The rules (`configurator_rules`) run in SQL over the Threekit tables joined with the catalog's and
give the day's candidate items, also kept as the day's `configurator_findings`. An item is planned
only if no earlier run carried it (`configurator_items`, the ledger), so a re-run, or tomorrow's run
over a finding still open, sends nothing twice. Per recipient and kind, up to `digest_above` items go
out one by one, more as one digest; each outbox row's dedupe key names the item (or the digest's
items), and the outbox ignores a key it holds. Ledger and outbox are written in one transaction.

Write-back (threekit.md §4.3): a new order's design review outcome (validated, or pending with the
reasons) is written once as the order's status note: read, merge `metadata`, PUT `status`-less, read
back. A refused write is a `sync_failure` for IT, never retried blindly.
"""


import hashlib
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from assets.audit import ActionConfig, AuditLog, acting_days
from assets.configurator_extraction import (
    threekit_asset_changes,
    threekit_catalog,
    threekit_configurations,
    threekit_orders,
)
from assets.configurator_rules import (
    CONFIG_PROBLEMS_SQL,
    CONFIG_VALUES_SQL,
    ITEM_OPTIONS_SQL,
    ITEM_PROBLEMS_SQL,
    ITEMS_SQL,
    ORDER_REVIEW_SQL,
    VIEWS_SQL,
    unknown_recipients,
)
from assets.images import product_images
from assets.notification_plan import sms_number
from assets.notifications import deliver
from assets.outbox import Planned, enqueue, outbox_counts
from assets.rules import QualityRules, RulesError, load_rules
from assets.snapshot import catalog_snapshot
from assets.warehouse import ensure_tables, replace_rows, table_schema, transaction
from orchestration.partitions import daily_partitions
from orchestration.settings import ProjectSettings
from resources.opentext import OpenTextResource
from resources.threekit import ThreekitResource

DIGEST_LINES = 50
KIND_TITLES = {
    "missing_price": "Threekit item without a price",
    "missing_attributes": "Threekit item missing attributes",
    "broken_sku_ref": "Threekit item points at a product Plytix does not have",
    "broken_image_ref": "Threekit item points at an image PhotoShelter does not have",
    "image_not_usable": "Threekit item shows an image that is not usable",
    "variant_unavailable": "Threekit variants unavailable",
    "config_needs_review": "Configuration needs review",
    "config_invalid_option": "Configuration outside the manufacturing rules",
    "config_missing_price": "Configuration saved without a price",
    "config_escalation": "Escalation: configuration waiting for review",
    "unpublished_model_change": "3D model with unpublished changes",
    "published": "Published in Threekit",
    "new_model": "New 3D model",
    "new_variant": "New Threekit variant",
    "order_milestone": "Configured order update",
    "localisation_needed": "Localisation needed",
    "localisation_completed": "Localisation completed",
    "sync_stale": "Threekit sync stopped",
    "sync_failure": "Threekit write-back failed",
}
ITEM_COLUMNS = ["kind", "recipient", "record_id", "ref", "line", "item_key", "level"]


def config_tables(rules: QualityRules) -> dict[str, pd.DataFrame]:
    """The rules' lists and maps as tables the SQL joins."""
    c = rules.configurator
    return {
        "cfg_thresholds": pd.DataFrame(list(c.review.price_threshold_by_currency.items()),
                                       columns=["currency", "threshold"]).astype({"currency": object, "threshold": float}),
        "cfg_limits": pd.DataFrame([(name, lim.min, lim.max) for name, lim in c.review.manufacturing_limits.items()],
                                   columns=["attribute", "min", "max"]).astype({"attribute": object, "min": float,
                                                                                "max": float}),
        "cfg_escalation": pd.DataFrame([(n, level.after_days, person) for n, level in
                                        enumerate(c.review.escalation, start=1) for person in level.to],
                                       columns=["level", "after_days", "recipient"]).astype(
                                           {"level": "int32", "after_days": "int32", "recipient": object}),
        "cfg_milestones": pd.DataFrame([(status, name, n) for n, (status, name) in
                                        enumerate(c.orders.milestones.items(), start=1)],
                                       columns=["status", "milestone", "rank"]).astype(
                                           {"status": object, "milestone": object, "rank": "int32"}),
    }


def evaluate(con, day: date, rules: QualityRules, now: datetime) -> dict[str, int]:
    """Fill `tk_items` (and the temp tables behind it) for day D; return what the checks could see."""
    c = rules.configurator
    con.execute("SET TimeZone = 'UTC'")  # day boundaries and timestamps in the texts are UTC
    for name, frame in config_tables(rules).items():
        con.register(f"{name}_frame", frame)
        con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM {name}_frame")  # noqa: S608 (fixed)
        con.unregister(f"{name}_frame")
    for view in VIEWS_SQL.split(";"):  # DuckDB binds parameters in one statement at a time
        if view.strip():
            params = {"day": day, "review_days": c.review.within_days}
            con.execute(view, {k: v for k, v in params.items() if f"${k}" in view})
    seen = dict(zip(("snapshot", "images"), con.execute(
        "SELECT (SELECT count(*) FROM tk_snapshot), (SELECT count(*) FROM tk_images)").fetchone(), strict=True))
    for statement in (CONFIG_VALUES_SQL, ITEM_OPTIONS_SQL):
        con.execute(statement)
    con.execute(CONFIG_PROBLEMS_SQL, {"threshold": c.review.price_threshold,
                                      "restricted": list(c.review.restricted_components)})
    con.execute(ITEM_PROBLEMS_SQL, {"day": day, "required_attributes": list(c.catalog.required_item_attributes),
                                    "required_metadata": list(c.catalog.required_item_metadata),
                                    # Without the day's catalog every reference would look broken: skip those.
                                    "have_snapshot": seen["snapshot"] > 0, "have_images": seen["images"] > 0})
    con.execute(ORDER_REVIEW_SQL, {"day": day, "news_days": c.news_within_days,
                                   "design_validated": c.orders.design_validated})
    con.execute(ITEMS_SQL, {
        "day": day, "news_days": c.news_within_days, "design_validated": c.orders.design_validated,
        "data_steward": c.catalog.data_steward, "approvers": c.review.approvers, "publishing": c.publishing.notify,
        "unpublished_to": c.publishing.unpublished_changes_to, "customer": c.orders.notify,
        "needed_to": c.localisation.needed_to, "completed_to": c.localisation.completed_to, "it": c.sync.notify,
        "locales": list(rules.locales), "stale_before": now - timedelta(hours=c.sync.stale_after_hours),
    })
    return seen


def write_back(con, day: date, rules: QualityRules, client, audit: AuditLog) -> dict[str, int]:
    """Each new order's design-review outcome as its status note, once (the ledger remembers)."""
    figures = {"order_notes_written": 0, "order_notes_already_there": 0, "order_notes_failed": 0}
    if not rules.configurator.orders.write_back:
        return figures
    pending = con.execute(
        "SELECT r.id, r.short_id, r.name, r.outcome, r.note FROM tk_order_review r WHERE r.outcome <> 'unknown' "
        "AND 'order-note/' || r.id || '/' || r.outcome NOT IN (SELECT item_key FROM configurator_items) "
        "ORDER BY r.id").fetchall()
    failures = []
    for order_id, short_id, name, outcome, note in pending:
        key = f"order-note/{order_id}/{outcome}"
        audit.record("threekit", "status_note", order_id, outcome=outcome, note=note)
        if audit.dry_run:
            continue
        try:
            result = client.write_status_note(order_id, note)
        except Exception as exc:  # one order's failure is IT's news, not the end of the run
            result, problem = None, f"{type(exc).__name__}: {str(exc)[:200]}"
        else:
            problem = None if result.applied else ("refused: " + "; ".join(
                f"{d.get('path')}: {d.get('message')}" for d in result.details) if result.details
                else "not confirmed on re-read (another writer won)")
        if problem is None:
            figures["order_notes_written" if result.written else "order_notes_already_there"] += 1
            con.execute("INSERT OR IGNORE INTO configurator_items VALUES (?, 'order_note', NULL, ?, ?, ?, 1, ?, ?, ?)",
                        [key, order_id, short_id, note, day, "threekit:PUT" if result.written else "threekit:present",
                         datetime.now(UTC)])
            continue
        figures["order_notes_failed"] += 1
        label = name or short_id or order_id
        failures += [("sync_failure", person, order_id, label, f"{label}: status note not written ({problem})",
                      f"sync-failure/{order_id}/{outcome}/{day}/{person}", 1)
                     for person in rules.configurator.sync.notify]
    if failures:
        con.executemany("INSERT INTO tk_items VALUES (?, ?, ?, ?, ?, ?, ?)", failures)
    return figures


def plan(con, day: date, rules: QualityRules, link: str) -> tuple[list[Planned], list[tuple]]:
    """Outbox rows for the items no earlier run carried, and the ledger rows that say which carried which."""
    rows = con.execute(
        "SELECT DISTINCT kind, recipient, record_id, ref, line, item_key, level FROM tk_items "
        "WHERE recipient IS NOT NULL AND item_key NOT IN (SELECT item_key FROM configurator_items) "
        "ORDER BY kind, recipient, ref, item_key").fetchall()
    groups: dict[tuple[str, str], list[tuple]] = {}
    for row in rows:
        groups.setdefault((row[0], row[1]), []).append(row)
    digest_above = rules.notifications.digest_above
    planned, ledger, now = [], [], datetime.now(UTC)
    for (kind, recipient), items in groups.items():
        title = KIND_TITLES.get(kind, kind)
        if len(items) <= digest_above:
            for _, _, record_id, ref, line, item_key, level in items:
                key = f"configurator/{item_key}"
                planned += channels(rules, kind, recipient, key, f"{title}: {ref}"[:200],
                                    f"{line}\n\nRecord: {record_id}\nDetails: {link}", record_id, day, level)
                ledger.append((item_key, kind, recipient, record_id, ref, line, level, day, key, now))
            continue
        digest = hashlib.sha256("\n".join(sorted(i[5] for i in items)).encode()).hexdigest()[:12]
        key = f"configurator/digest/{kind}/{recipient}/{day}/{digest}"
        listed = "\n".join(f"- {ref}: {line}" for _, _, _, ref, line, _, _ in items[:DIGEST_LINES])
        more = f"... and {len(items) - DIGEST_LINES} more.\n" if len(items) > DIGEST_LINES else ""
        planned += channels(rules, kind, recipient, key, f"{title}: {len(items)} on {day}",
                            f"{listed}\n{more}\nDetails: {link}", None, day, max(i[6] for i in items))
        ledger += [(i[5], kind, recipient, i[2], i[3], i[4], i[6], day, key, now) for i in items]
    return planned, ledger


def channels(rules: QualityRules, kind: str, recipient: str, key: str, subject: str, body: str,
             record_id: str | None, day: date, level: int) -> list[Planned]:
    """Email always; an SMS too for escalations from level 2 when the person has a phone number."""
    out = [Planned(f"{key}|email", kind, "email", recipient, recipient, subject, body, record_id, day)]
    person = rules.people.get(recipient)
    if kind == "config_escalation" and level >= 2 and person and person.phone:
        out.append(Planned(f"{key}|sms", kind, "sms", recipient, sms_number(person.phone), subject,
                           f"Threekit escalation: {subject}"[:160], record_id, day))
    return out


# The day's findings without recipients (escalations are about findings already listed).
FINDINGS_SQL = """
SELECT DISTINCT CAST($day AS DATE) AS report_date, kind, record_id, ref, line AS detail
FROM tk_items WHERE kind <> 'config_escalation'
"""


def record(con, day: date, planned: list[Planned], ledger: list[tuple], run_id: str) -> int:
    """The day's findings, the ledger and the outbox, all or nothing."""
    with transaction(con):
        replace_rows(con, "configurator_findings", "report_date", day, day + timedelta(days=1), FINDINGS_SQL,
                     {"day": day})
        if ledger:
            con.executemany("INSERT OR IGNORE INTO configurator_items VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", ledger)
        return enqueue(con, planned, run_id)


def details_link(day: date) -> str:
    return f"{ProjectSettings().dagster_ui_url.rstrip('/')}/assets/configurator_notifications?partition={day}"


@dg.asset(
    deps=[threekit_configurations, threekit_orders, threekit_asset_changes, threekit_catalog, catalog_snapshot,
          product_images],
    partitions_def=daily_partitions, backfill_policy=dg.BackfillPolicy.single_run(), pool="duckdb_warehouse",
    group_name="configurator", kinds={"threekit", "duckdb"}, owners=["team:catalog-operations"],
    description="Threekit's news and problems for day D, routed by the rules' `configurator:` section (reviews and "
                "escalations, catalog references checked against Plytix and PhotoShelter, publishes, order "
                "milestones, localisation, sync failures), told once through the outbox; the design-review "
                "outcome written back to each new order as its status note.",
)
def configurator_notifications(context: dg.AssetExecutionContext, config: ActionConfig, warehouse: DuckDBResource,
                               opentext: OpenTextResource, threekit: ThreekitResource) -> dg.MaterializeResult:
    rules = load_rules(ProjectSettings().rules_path)
    missing = unknown_recipients(rules)
    if missing:
        raise RulesError(f"configurator recipients not in people: {', '.join(missing)}")
    days, skipped = acting_days(context)
    totals: dict[str, int] = {"planned_new": 0, "items_new": 0}
    findings: dict[str, int] = {}
    with warehouse.get_connection() as con:
        ensure_tables(con)
        audit = AuditLog(con, context.run.run_id, context.asset_key.to_user_string(), config.dry_run)
        for day in days:
            seen = evaluate(con, day, rules, datetime.now(UTC))
            if not seen["snapshot"]:
                context.log.warning(f"no catalog snapshot for {day}: Threekit references to Plytix not checked")
            for key, n in write_back(con, day, rules, threekit.get_client(), audit).items():
                totals[key] = totals.get(key, 0) + n
            planned, ledger = plan(con, day, rules, details_link(day))
            if config.dry_run:
                for row in planned:
                    audit.record("opentext", f"plan_{row.channel}", row.dedupe_key, recipient=row.recipient)
            else:
                totals["planned_new"] += record(con, day, planned, ledger, context.run.run_id)
                totals["items_new"] += len(ledger)
            findings = dict(con.execute("SELECT kind, count(DISTINCT record_id) FROM tk_items GROUP BY kind "
                                        "ORDER BY kind").fetchall())
        delivered = deliver(con, opentext.get_client(), audit)
        counts = outbox_counts(con)
    table = "\n".join(f"| {k} | {n:,} |" for k, n in sorted(findings.items())) or "| (none) | 0 |"
    summary = (f"Acted on {len(days)} day(s) ({skipped} too old to act on). **{totals['items_new']:,}** new items in "
               f"**{totals['planned_new']:,}** messages; {totals.get('order_notes_written', 0)} status notes written "
               f"back.\n\nOpen on the last day, by kind (distinct records):\n\n| kind | records |\n| --- | --- |\n"
               f"{table}")
    return dg.MaterializeResult(metadata={
        **totals, "skipped_old_days": skipped, **{f"findings/{k}": n for k, n in sorted(findings.items())},
        **delivered, **{f"outbox/{status}": n for status, n in sorted(counts.items())}, **audit.metadata(),
        "dagster/column_schema": table_schema("configurator_findings"), "summary": dg.MetadataValue.md(summary),
    })


configurator_assets = [threekit_configurations, threekit_orders, threekit_asset_changes, threekit_catalog,
                       configurator_notifications]
