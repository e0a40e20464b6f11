"""`commerce_notifications`: the day's Shopify events, routed to the teams rules.yaml `commerce:` names,
planned into the shared outbox and sent through OpenText exactly once.

The rules (assets/commerce_rules.py) read the tables, whichever way their rows came (a poll, or a
webhook applied by `shopify_webhook_job`); both paths call `notify_commerce`, and the outbox's dedupe
keys make an event seen both ways one message. Like every action, planning only happens for recent
days (`CATALOG_OPS_ACTIONS_MAX_AGE_DAYS`) and `dry_run` plans and audits without sending.

`commerce_job` runs the extraction and this asset; `commerce_refresh_schedule` runs it for today every
15 minutes (and closes yesterday just after midnight), so polling catches what webhooks missed.
"""


from datetime import UTC, date, datetime, timedelta

import dagster as dg
from dagster_duckdb import DuckDBResource

from assets.audit import ActionConfig, AuditLog, acting_days
from assets.commerce_extraction import (
    ORDER_SPECS,
    commerce_extraction_assets,
    shopify_abandoned_checkouts,
    shopify_inventory_levels,
)
from assets.commerce_rules import Problem, evaluate, render, unknown_recipients
from assets.notifications import deliver
from assets.outbox import enqueue
from assets.rules import RulesError, load_rules
from assets.warehouse import ensure_tables, table_schema
from orchestration.partitions import daily_partitions
from orchestration.service_tags import service_run_tags
from orchestration.settings import ProjectSettings, env_value
from orchestration.webhooks import Inbox, inbox_path
from resources.opentext import OpenTextResource


def inbox_problems(now: datetime, backlog_minutes: int) -> list[Problem]:
    """Webhook events no run could apply, and events waiting longer than the backlog allows (the sensor or
    its runs are down): told to IT, once per event or per oldest waiting event."""
    path = inbox_path()
    if not path.exists():
        return []
    inbox = Inbox(path)
    try:
        problems = [Problem(f"webhook-failed/{seq}", f"Shopify webhook {topic} could not be applied",
                            f"Inbox event {seq}, received {received}: {error[:300]}")
                    for seq, topic, error, received in inbox.failed()]
        count, oldest, since = inbox.waiting_since(now - timedelta(minutes=backlog_minutes))
        if count:
            problems.append(Problem(f"webhook-backlog/{oldest}", f"{count} Shopify webhook event(s) not processed",
                                    f"Waiting since {since}: is webhook_inbox_sensor running, and do its "
                                    f"shopify_webhook_job runs succeed?"))
        return problems
    finally:
        inbox.close()


def notify_commerce(con, days: list[date], audit: AuditLog, opentext_client, run_id: str) -> dict:
    """Evaluate the commerce rules for `days` (contiguous), plan into the outbox, deliver. Returns figures."""
    rules = load_rules(ProjectSettings().rules_path)
    unknown = unknown_recipients(rules)
    if unknown:
        raise RulesError(f"commerce.teams: not in people: {', '.join(unknown)} (every recipient needs an entry)")
    commerce, now = rules.commerce, datetime.now(UTC)
    figures: dict = {"planned_new": 0, "items_unrouted": 0}
    if commerce.enabled and days:
        con.execute("SET TimeZone = 'UTC'")  # day boundaries and message times are UTC
        evaluate(con, commerce, days[0], days[-1], now, inbox_problems(now, commerce.webhook_backlog_minutes))
        ui = ProjectSettings().dagster_ui_url.rstrip("/") + "/assets/commerce_notifications"
        planned, figures["items_unrouted"] = render(con, commerce, {"shop": env_value("SHOPIFY_SHOP_URL"), "ui": ui})
        for kind, n in con.execute("SELECT kind, count(*) FROM commerce_items GROUP BY kind ORDER BY kind").fetchall():
            figures[f"items/{kind}"] = n
        if audit.dry_run:
            for row in planned:
                audit.record("opentext", f"plan_{row.channel}", row.dedupe_key, recipient=row.recipient)
        else:
            figures["planned_new"] = enqueue(con, planned, run_id)
    figures.update(deliver(con, opentext_client, audit))
    return figures


@dg.asset(
    deps=[*(spec.key for spec in ORDER_SPECS), shopify_abandoned_checkouts, shopify_inventory_levels],
    partitions_def=daily_partitions, backfill_policy=dg.BackfillPolicy.single_run(), pool="duckdb_warehouse",
    group_name="commerce", kinds={"duckdb"}, owners=["team:commerce-operations"],
    description="Shopify alerts for day D routed by rules.yaml `commerce:`: high risk, payment pending and address "
                "review to order operations; delivery exceptions (and premium customers' packed/shipped news) to "
                "customer service; low stock once per crossing to procurement; declined payments and checkouts "
                "abandoned after one to finance, fraud review and retention; large or sensitive orders for "
                "approval; returns and refunds; a stopped order sync and webhook ingestion failures to IT.",
)
def commerce_notifications(context: dg.AssetExecutionContext, config: ActionConfig, warehouse: DuckDBResource,
                           opentext: OpenTextResource) -> dg.MaterializeResult:
    days, skipped = acting_days(context)
    with warehouse.get_connection() as con:
        ensure_tables(con)
        audit = AuditLog(con, context.run.run_id, context.asset_key.to_user_string(), config.dry_run)
        figures = notify_commerce(con, days, audit, opentext.get_client(), context.run.run_id)
        kinds = dict(con.execute("SELECT kind, count(*) FROM notification_outbox WHERE kind LIKE 'shopify_%' "
                                 "GROUP BY kind ORDER BY kind").fetchall())
        open_crossings = con.execute("SELECT count(*) FROM shopify_stock_crossings WHERE recovered_at IS NULL"
                                     ).fetchone()[0]
    lines = "\n".join(f"| `{kind}` | {n} |" for kind, n in kinds.items()) or "| (none yet) | 0 |"
    return dg.MaterializeResult(metadata={
        **figures, "skipped_old_days": skipped, "low_stock_open_crossings": open_crossings,
        **{f"outbox/{kind}": n for kind, n in kinds.items()}, **audit.metadata(),
        "dagster/column_schema": table_schema("notification_outbox"),
        "summary": dg.MetadataValue.md(f"**{figures['planned_new']}** new messages planned for "
                                       f"{', '.join(map(str, days)) or 'no recent day'}.\n\n| kind | messages in "
                                       f"the outbox |\n| --- | --- |\n{lines}"),
    })


commerce_assets = [*commerce_extraction_assets, commerce_notifications]

commerce_job = dg.define_asset_job(
    "commerce_job", selection=dg.AssetSelection.assets(*commerce_assets), tags=service_run_tags(commerce_assets),
    description="Shopify extraction (orders, fulfillments, transactions, returns, checkouts, inventory) and the "
                "commerce notifications for one day (single run per range).")


@dg.schedule(job=commerce_job, cron_schedule="*/15 * * * *", execution_timezone="UTC",
             default_status=dg.DefaultScheduleStatus.RUNNING,
             description="Every 15 minutes: today's Shopify partition and its alerts (what webhooks missed); in the "
                         "first quarter hour of a day, yesterday's too, closed.")
def commerce_refresh_schedule(context: dg.ScheduleEvaluationContext):
    at = context.scheduled_execution_time.astimezone(UTC)
    days = [at.date()] + ([at.date() - timedelta(days=1)] if at.hour == 0 and at.minute < 15 else [])
    return [dg.RunRequest(run_key=f"commerce:{day}:{at:%Y%m%dT%H%M}", partition_key=day.isoformat()) for day in days]
