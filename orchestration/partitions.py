"""Daily partitions by day of change. The start date is configurable (CATALOG_OPS_PARTITIONS_START)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import dagster as dg

from orchestration.settings import ProjectSettings

daily_partitions = dg.DailyPartitionsDefinition(
    start_date=ProjectSettings().partitions_start.isoformat(), timezone="UTC",
    end_offset=1,  # today is a partition too, in progress: sensors refresh it as changes arrive
)


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time.min, tzinfo=UTC)
    return start, start + timedelta(days=1)


def partition_days(context: dg.AssetExecutionContext) -> list[date]:
    """The days a run covers: one partition, or a whole range in a single-run backfill."""
    window = context.partition_time_window
    first, last = window.start.date(), window.end.date()
    return [first + timedelta(days=n) for n in range((last - first).days)]


def is_first_partition(day: date) -> bool:
    return day.isoformat() == daily_partitions.get_first_partition_key()
