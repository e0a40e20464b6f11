"""`catalog_notifications`: the day's catalog news, planned into the outbox and delivered through OpenText.

Planning only happens for recent days (`CATALOG_OPS_ACTIONS_MAX_AGE_DAYS`): a backfill of last
quarter rebuilds the reports, it does not page people about August. Delivery works off the whole
outbox, whatever day planned it, so a failed send is retried by the next run or tick.
"""


from datetime import UTC, date, datetime

import dagster as dg
from dagster_duckdb import DuckDBResource

from assets.audit import ActionConfig, AuditLog, acting_days
from assets.notification_plan import plan_items, render
from assets.outbox import enqueue, outbox_counts, poll_accepted, recover_interrupted, send_pending
from assets.quality import catalog_quality_report
from assets.rules import load_rules
from assets.warehouse import ensure_tables, table_schema
from orchestration.partitions import daily_partitions
from orchestration.settings import ProjectSettings
from resources.opentext import OpenTextResource

# The workflow stages that count as "in enrichment" and as "approved/published" for the messages.
STAGES = {"enrichment": ["New", "Enrichment", "Creative assignment", "Image review"],
          "published": ["Approved", "Published"]}


def report_link(day: date) -> str:
    base = ProjectSettings().dagster_ui_url.rstrip("/")
    return f"{base}/assets/catalog_quality_report?partition={day.isoformat()}"


def deliver(con, client, audit: AuditLog) -> dict[str, int]:
    """One pass over the outbox: settle interrupted sends, submit what is due, poll what was accepted."""
    now = datetime.now(UTC)
    figures = {"interrupted_marked_unknown": recover_interrupted(con)}
    figures.update({f"submit_{k}": v for k, v in send_pending(con, client, audit, now).items()})
    if not audit.dry_run:
        figures.update({f"poll_{k}": v for k, v in poll_accepted(con, client, now).items()})
    return figures


@dg.asset(
    deps=[catalog_quality_report], partitions_def=daily_partitions, backfill_policy=dg.BackfillPolicy.single_run(),
    pool="duckdb_warehouse", group_name="actions", kinds={"duckdb"}, owners=["team:catalog-operations"],
    description="Routed notifications for day D (findings, approvals, publications, milestones, escalations), "
                "planned into the outbox with dedupe keys and sent through OpenText exactly once.",
)
def catalog_notifications(context: dg.AssetExecutionContext, config: ActionConfig, warehouse: DuckDBResource,
                          opentext: OpenTextResource) -> dg.MaterializeResult:
    rules = load_rules(ProjectSettings().rules_path)
    days, skipped_days = acting_days(context)
    planned = 0
    with warehouse.get_connection() as con:
        ensure_tables(con)
        audit = AuditLog(con, context.run.run_id, context.asset_key.to_user_string(), config.dry_run)
        for day in days:
            plan_items(con, day, rules, STAGES)
            rows = render(con, day, rules, report_link(day))
            planned += enqueue(con, rows, context.run.run_id) if not config.dry_run else 0
            if config.dry_run:
                for row in rows:
                    audit.record("opentext", f"plan_{row.channel}", row.dedupe_key, recipient=row.recipient)
        delivered = deliver(con, opentext.get_client(), audit)
        counts = outbox_counts(con)
    return dg.MaterializeResult(metadata={
        "planned_new": planned, "skipped_old_days": skipped_days, **delivered,
        **{f"outbox/{status}": n for status, n in sorted(counts.items())}, **audit.metadata(),
        "dagster/column_schema": table_schema("notification_outbox"),
    })
