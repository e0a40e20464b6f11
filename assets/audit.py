"""The audit trail of writes to outside services, and the `dry_run` switch every action asset takes.

An action asset first computes its plan (what it would create, update, complete or send), records
each step here with the run that made it, and only then, unless it is a dry run, writes. The
materialisation's metadata sums the audit rows of its run, so the UI shows what a run did.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import duckdb
from pydantic import Field

from orchestration.settings import ProjectSettings


class ActionConfig(dg.Config):
    """Run config of every action asset."""

    dry_run: bool = Field(
        default_factory=lambda: ProjectSettings().dry_run,
        description="Compute and record the plan without writing to any outside service.",
    )


class AuditLog:
    """Audit rows of one run of one asset, kept in the warehouse as they happen."""

    def __init__(self, con: duckdb.DuckDBPyConnection, run_id: str, asset: str, dry_run: bool):
        self.con, self.run_id, self.asset, self.dry_run = con, run_id, asset, dry_run
        self.counts: Counter[str] = Counter()

    def record(self, service: str, action: str, record_id: str, **detail) -> None:
        self.con.execute(
            "INSERT INTO action_audit VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [datetime.now(UTC), self.run_id, self.asset, service, action, record_id,
             json.dumps(detail, default=str), self.dry_run],
        )
        self.counts[f"{service}.{action}"] += 1

    def metadata(self) -> dict:
        """Counts per `service.action` (0 when nothing was needed), and whether it was a dry run."""
        return {"dry_run": self.dry_run, "writes_total": sum(self.counts.values()),
                **{f"writes/{key}": n for key, n in sorted(self.counts.items())}}


def acting_days(context: dg.AssetExecutionContext) -> tuple[list[date], int]:
    """The run's partition days recent enough to act on, and how many older ones were skipped."""
    from orchestration.partitions import partition_days

    oldest = datetime.now(UTC).date() - timedelta(days=ProjectSettings().actions_max_age_days)
    days = partition_days(context)
    recent = [day for day in days if day >= oldest]
    if len(recent) < len(days):
        context.log.info(f"{len(days) - len(recent)} day(s) before {oldest} skipped: a backfill is not news")
    return recent, len(days) - len(recent)
