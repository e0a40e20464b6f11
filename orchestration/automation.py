"""Jobs, schedules and sensors that keep the catalog and its actions running without a person.

- `catalog_daily_schedule` closes yesterday: the whole catalog and its actions for the finished day.
- `plytix_changes_sensor` refreshes today's partition when Plytix reports products changed since
  the last refresh (one cheap sorted search per tick; run key = the newest change seen).
- `notification_delivery_schedule` works off the outbox every five minutes: retries what the
  service refused, polls what it accepted.
All are on by default (the demo shows them running) and idempotent across ticks.
"""

from datetime import UTC, datetime, timedelta

import dagster as dg
from dagster_duckdb import DuckDBResource

from assets.audit import AuditLog
from assets.extraction import SETTLE
from assets.notifications import deliver
from assets.warehouse import ensure_tables
from orchestration.service_tags import service_run_tags
from resources.opentext import OpenTextResource
from resources.plytix import PlytixResource, format_timestamp


def catalog_job_for(assets: list):
    return dg.define_asset_job("catalog_daily_job", selection=dg.AssetSelection.assets(*assets),
                               tags=service_run_tags(assets),
                               description="Extraction, snapshot, image join, quality report and the actions for "
                                           "one day (single run per range: a backfill is one run).")


def daily_schedule(job) -> dg.ScheduleDefinition:
    @dg.schedule(job=job, cron_schedule="30 1 * * *", execution_timezone="UTC",
                 default_status=dg.DefaultScheduleStatus.RUNNING,
                 description="At 01:30 UTC, the finished day: every catalog asset and action for yesterday.")
    def catalog_daily_schedule(context: dg.ScheduleEvaluationContext):
        day = (context.scheduled_execution_time.astimezone(UTC) - timedelta(days=1)).date().isoformat()
        return dg.RunRequest(run_key=f"daily:{day}", partition_key=day)

    return catalog_daily_schedule


def plytix_changes_sensor_for(job) -> dg.SensorDefinition:
    @dg.sensor(job=job, minimum_interval_seconds=300, default_status=dg.DefaultSensorStatus.RUNNING,
               description="Products changed in Plytix since the last refresh: re-materialise today's partition.")
    def plytix_changes_sensor(context: dg.SensorEvaluationContext, plytix: PlytixResource):
        active = context.instance.get_run_records(dg.RunsFilter(job_name=job.name, statuses=[
            dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]), limit=1)
        if active:
            return dg.SkipReason("a catalog run is in progress; its extraction will see these changes")
        # An unsorted count (no 10 000-record sort cap) of what changed since the last look.
        now = datetime.now(UTC) - SETTLE
        since = datetime.fromisoformat(context.cursor) if context.cursor else now - timedelta(days=1)
        changed = plytix.get_client().count_products(
            [[{"field": "modified", "operator": "gt", "value": format_timestamp(since)},
              {"field": "modified", "operator": "lte", "value": format_timestamp(now)}]])
        context.update_cursor(now.isoformat())
        if not changed:
            return dg.SkipReason(f"no product changed since {since.isoformat()}")
        return dg.RunRequest(run_key=f"plytix-changes:{now.isoformat()}", partition_key=now.date().isoformat(),
                             tags={"catalog-ops/changed-products": str(changed)})

    return plytix_changes_sensor


@dg.op(pool="duckdb_warehouse",  # writes the warehouse: queue behind backfills, never fail on the lock
       description="One pass over the notification outbox: submit what is due, poll what was accepted.")
def deliver_notifications(context: dg.OpExecutionContext, warehouse: DuckDBResource,
                          opentext: OpenTextResource) -> dg.Output:
    with warehouse.get_connection() as con:
        ensure_tables(con)
        figures = deliver(con, opentext.get_client(), AuditLog(con, context.run.run_id, "deliver_notifications", False))
    return dg.Output(None, metadata=figures)


@dg.job(description="Works off the notification outbox.", tags=service_run_tags([deliver_notifications]))
def notification_delivery_job():
    deliver_notifications()


notification_delivery_schedule = dg.ScheduleDefinition(
    name="notification_delivery_schedule", job=notification_delivery_job, cron_schedule="*/5 * * * *", execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every five minutes: resubmit refused notifications, poll accepted ones.")
