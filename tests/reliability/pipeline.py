"""The whole pipeline against one sandbox, and a fingerprint of every warehouse table, so a run under
faults can be compared with a fault-free run of the same world.

"The whole pipeline" is what production runs for a day: the catalog extraction (a range, as a
backfill would), the derived assets, every action that writes to people's tools, the Shopify and
Threekit groups, then delivery passes over the outbox as `notification_delivery_schedule` makes.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from assets.commerce_notifications import commerce_assets
from assets.configurator_notifications import configurator_assets
from orchestration.automation import notification_delivery_job
from orchestration.definitions import action_assets, catalog_assets
from resources.shopify import ShopifyResource
from resources.threekit import ThreekitResource
from tests.assets.test_actions import action_resources
from tests.assets.test_catalog_assets import DERIVED, EXTRACTION, FIRST

DAY = "2026-11-21"  # the world is "as of" DAY noon; every group acts on this day
WORLD = [f"world_now={DAY}T12:00:00Z", "threekit_rate_limit_rps=100000", "shopify_restore_rate=100000",
         # Jobs are final at once, so "delivered" does not depend on how long a run took.
         "opentext_delivery_delay_s=0"]
THREEKIT_ORG = "00000000-0000-4000-8000-000000000001"
ALL_ASSETS = [*catalog_assets, *action_assets, *commerce_assets, *configurator_assets]
ACTIONS = ["catalog_notifications", "planner_tasks", "plytix_image_sync", "photoshelter_keyword_sync",
           "launch_packages"]
THREEKIT = ["threekit_configurations", "threekit_orders", "threekit_asset_changes", "threekit_catalog"]
RANGE = {ASSET_PARTITION_RANGE_START_TAG: FIRST, ASSET_PARTITION_RANGE_END_TAG: DAY}
# Shopify's last two weeks up to DAY: an eighth of the catalog range's partitions, each a handful of Dagster
# events to store, and still about half the world's orders, enough for most commerce rules to fire.
COMMERCE_RANGE = {ASSET_PARTITION_RANGE_START_TAG: "2026-11-08", ASSET_PARTITION_RANGE_END_TAG: DAY}

# Columns that legitimately differ between two runs of the same world, by why:
# - wall-clock instants of our own (when a row was extracted, planned, polled, audited, refreshed);
# - run ids (each run is a new Dagster run);
# - identifiers the service mints on creation (OpenText job ids, Planner task ids and their etags,
#   which the two sandboxes draw independently);
# - delivery bookkeeping that counts or remembers refusals (attempts, the last refusal's text, when a
#   refused send may be retried): a 503 answered to one run and not the other changes these and
#   nothing the recipient sees.
# Everything else, including each notification's status, recipient, subject and body, must match.
VOLATILE = {
    "*": {"extracted_at", "refreshed_at", "detected_at", "quarantined_at", "observed_at", "run_id", "recorded_at",
          "planned_by_run", "planned_at"},
    "notification_outbox": {"attempts", "job_id", "next_attempt_at", "submitted_at", "accepted_at",
                            "last_polled_at", "finished_at", "last_error"},
    "planner_task_state": {"task_id", "etag", "updated_at"},
    # The high-water mark is "now minus the settle time" at the read, not a value from the data.
    "threekit_marks": {"mark", "updated_at"},
    "action_audit": {"asset"},
}
# Logs of attempts: a send refused by a fault (503, 429) is sent again by the next delivery pass, which is
# rightly a second row, under whichever asset's pass came after its backoff. Compared as sets of distinct
# rows without the asset: the same writes, each at least once.
ATTEMPT_LOGS = {"action_audit"}


@dataclass
class PipelineRun:
    warehouse: str
    results: dict[str, dg.ExecuteInProcessResult]
    delivery_passes: int
    seconds: dict[str, float]  # per step, for the report


def run_pipeline(url: str, folder: Path, max_delivery_passes: int = 30) -> PipelineRun:
    """Materialise every group for DAY against the sandbox at `url`; raises if a step fails."""
    folder.mkdir(parents=True, exist_ok=True)
    warehouse = str(folder / "warehouse.duckdb")
    resources = {**action_resources(url, warehouse),
                 "threekit": ThreekitResource(api_url=f"{url}/threekit", org_id=THREEKIT_ORG,
                                              token="sandbox-threekit-token", max_requests_per_second=0),
                 "shopify": ShopifyResource(shop_url=f"{url}/shopify", access_token="shpat_sandbox")}
    results: dict[str, dg.ExecuteInProcessResult] = {}
    seconds: dict[str, float] = {}
    # A real instance kept in memory: on SQLite, storing a range run's thousand events took half the run.
    with dg.DagsterInstance.ephemeral() as instance:
        def step(name: str, selection: list[str], **kwargs) -> None:
            started = time.monotonic()
            results[name] = dg.materialize(ALL_ASSETS, selection=selection, resources=resources,
                                           instance=instance, **kwargs)
            seconds[name] = round(time.monotonic() - started, 1)

        step("extraction", EXTRACTION, tags=RANGE)
        step("derived", DERIVED, partition_key=DAY)
        step("actions", ACTIONS, partition_key=DAY)
        # A task whose POST lost its answer three times is deferred to the next run (resources/planner.py);
        # production's next run is tomorrow's, here it is at once.
        latest = results["actions"]
        for _ in range(2):
            if not deferred_tasks(latest):
                break
            step("planner_tasks", ["planner_tasks"], partition_key=DAY)
            latest = results["planner_tasks"]
        step("commerce", [k.to_user_string() for a in commerce_assets for k in a.keys], tags=COMMERCE_RANGE)
        step("threekit", THREEKIT, partition_key=DAY)
        step("configurator", ["configurator_notifications"], partition_key=DAY)
        # Refused sends wait for their backoff (seconds here): work the outbox off as the schedule would.
        passes = 0
        while pending(warehouse) and passes < max_delivery_passes:
            time.sleep(1)
            passes += 1
            result = notification_delivery_job.execute_in_process(
                instance=instance, resources={k: resources[k] for k in ("warehouse", "opentext")})
            assert result.success
    return PipelineRun(warehouse, results, passes, seconds)


def deferred_tasks(result: dg.ExecuteInProcessResult) -> int:
    event = result.asset_materializations_for_node("planner_tasks")[-1]
    value = event.metadata.get("tasks/deferred")
    return value.value if value is not None else 0


def pending(warehouse: str) -> int:
    with duckdb.connect(warehouse, read_only=True) as con:
        return con.execute("SELECT count(*) FROM notification_outbox WHERE status IN "
                           "('pending', 'submitting', 'accepted')").fetchone()[0]


@dataclass(frozen=True)
class TablePrint:
    rows: int
    digest: str
    sample: tuple[str, ...]  # the rows' text, kept to show a difference


def fingerprints(warehouse: str, sandbox_url: str) -> dict[str, TablePrint]:
    """Per table: row count and a hash of its rows (volatile columns left out) in a canonical order.
    Each sandbox has its own port, which links to it (PhotoShelter image URLs) carry: that is masked."""
    prints = {}
    with duckdb.connect(warehouse, read_only=True) as con:
        tables = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables "
                                            "WHERE table_schema = 'main' ORDER BY 1").fetchall()]
        for table in tables:
            columns = [r[0] for r in con.execute("SELECT column_name FROM information_schema.columns WHERE "
                                                 "table_name = ? ORDER BY ordinal_position", [table]).fetchall()]
            volatile = VOLATILE["*"] | VOLATILE.get(table, set())
            kept = [c for c in columns if c not in volatile]
            select = ", ".join(f'"{c}"' for c in kept)
            rows = sorted(repr(row).replace(sandbox_url, "<sandbox>")
                          for row in con.execute(f"SELECT {select} FROM {table}").fetchall())  # noqa: S608
            if table in ATTEMPT_LOGS:
                rows = sorted(set(rows))
            digest = hashlib.sha256("\n".join(rows).encode()).hexdigest()
            prints[table] = TablePrint(len(rows), digest, tuple(rows))
    return prints
