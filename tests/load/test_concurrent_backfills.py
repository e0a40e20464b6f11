"""Concurrent backfill runs against one DuckDB warehouse: no lock failures, same tables as in sequence.

Several `dagster asset materialize` processes, one per daily partition of the catalog assets (extraction,
snapshot, join, report), plus a `notification_delivery_job` run as its five-minute schedule would start
one mid-backfill, all at once against one DAGSTER_HOME whose dagster.yaml limits pools to one step and
one warehouse file, while a reader polls the warehouse read-only. Dagster's default SQLite storage
enforces pool limits (its event log has the `concurrency_limits` table; dagster-io/dagster#26579), so no
PostgreSQL is needed. The same partitions are then built one after another in a second warehouse and
both are compared table by table.

Order independence needs two things. The snapshot of day D reads every extraction partition <= D, so
both warehouses start from one seed holding the extraction of the whole range; the runs re-extract
their day (same rows, new `extracted_at`), and derived tables exist only where the runs wrote them.
And the report of D reads the report of D - 1, so the partitions are two days apart.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from orchestration.definitions import catalog_assets
from orchestration.settings import SERVICE_ENV, SERVICE_ENV_PREFIXES
from tests.assets.test_catalog_assets import DAY, FIRST, resources_for
from tests.conftest import start_sandbox, stop_sandbox

pytestmark = pytest.mark.slow

PRODUCTS = 300
PARTITIONS = ["2026-11-18", "2026-11-20", "2026-11-22"]
PER_PARTITION = ["plytix_product_changes", "photoshelter_image_changes", "catalog_snapshot", "product_images",
                 "catalog_quality_report"]
UNPARTITIONED = ["plytix_categories", "plytix_deleted_products"]
POOL_INSTANCE = "telemetry:\n  enabled: false\nconcurrency:\n  pools:\n    default_limit: 1\n"
# In-process executor: one interpreter per run instead of one per step (2 cores). It claims pool slots
# through the same InstanceConcurrencyContext as the multiprocess executor.
IN_PROCESS = {"execution": {"config": {"in_process": {}}}}
# The catalog runs also drop the client-side pacing (the pool serialises their steps anyway; PhotoShelter's
# 8 requests/s would make each extraction 13 s). Run config replaces a resource's whole config, so the
# other fields name their environment variables (set in cli_env), never a value.
RESOURCE_ENV = {"plytix": ["auth_url", "api_url", "api_key", "api_password"],
                "photoshelter": ["api_url", "api_key", "email", "password", "org_id"]}
UNPACED = {"resources": {name: {"config": {"max_requests_per_second": 0, **{
    field: {"env": f"{name.upper()}_{field.upper()}"} for field in fields}}} for name, fields in RESOURCE_ENV.items()}}
# Columns that say when a row was written, not what it holds.
WRITTEN_AT = {"plytix_product_changes": ["extracted_at"], "photoshelter_image_changes": ["extracted_at"],
              "plytix_quarantine": ["quarantined_at"], "photoshelter_quarantine": ["quarantined_at"],
              "catalog_snapshot": [], "product_images": [], "orphan_images": [], "catalog_quality_report": []}
DATE_COLUMN = {"catalog_snapshot": "snapshot_date", "product_images": "snapshot_date",
               "orphan_images": "snapshot_date", "catalog_quality_report": "report_date"}
# DuckDB's "Could not set lock on file", SQLite's "database is locked"; not Dagster's "blocked by pool".
LOCK_ERROR = re.compile(r"\block(ed|ing)?\b|conflicting lock", re.IGNORECASE)


def table_digest(path: Path, table: str) -> tuple[int, str]:
    """Row count and an order-independent hash of every row minus its write-time columns."""
    excluded = f" EXCLUDE ({', '.join(WRITTEN_AT[table])})" if WRITTEN_AT[table] else ""
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(f"SELECT count(*), md5(coalesce(string_agg(CAST(t AS VARCHAR), '|' "  # noqa: S608
                           f"ORDER BY CAST(t AS VARCHAR)), '')) FROM (SELECT *{excluded} FROM {table}) t").fetchone()


def rows_per_partition(path: Path, table: str) -> dict[str, int]:
    with duckdb.connect(str(path), read_only=True) as con:
        rows = con.execute(f"SELECT CAST({DATE_COLUMN[table]} AS VARCHAR), count(*) FROM {table} "  # noqa: S608
                           "GROUP BY 1").fetchall()
    return dict(rows)


class WarehouseReader(threading.Thread):
    """Reads the warehouse read-only in a loop, as a dashboard or an analyst would, while runs write.

    DuckDB lets one process write or several read, never both: a read that meets a writer is retried,
    and counted, since it is the reader's lot, not a failure of the runs.
    """

    def __init__(self, path: Path):
        super().__init__(daemon=True)
        self.path, self.reads, self.conflicts, self.errors = path, 0, 0, []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                with duckdb.connect(str(self.path), read_only=True) as con:
                    con.execute("SELECT count(*) FROM catalog_snapshot").fetchone()
                self.reads += 1
            except duckdb.IOException as exc:
                if LOCK_ERROR.search(str(exc)):
                    self.conflicts += 1
                else:
                    self.errors.append(str(exc))
            self.stop.wait(0.25)


def cli_env(home: Path, warehouse: Path, url: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(SERVICE_ENV_PREFIXES)}
    for name, fields in RESOURCE_ENV.items():  # the sandbox's values, as a customer's env would hold theirs
        for field in fields:
            prefix, default = SERVICE_ENV[variable := f"{name.upper()}_{field.upper()}"]
            env[variable] = url + prefix if prefix else default
    return {**env, "DAGSTER_HOME": str(home), "SANDBOX_URL": url, "CATALOG_OPS_WAREHOUSE_PATH": str(warehouse),
            "PYTHONWARNINGS": "ignore"}


def dagster_command(config: Path, *args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "dagster"), *args, "-m", "orchestration.definitions", "-c", str(config)]


def seed(url: str, warehouse: Path, home: Path) -> None:
    """The extraction of the whole range (one single-run backfill) and the unpartitioned assets."""
    home.mkdir()
    with dg.DagsterInstance.local_temp(str(home)) as instance:
        resources = resources_for(url, str(warehouse))
        tags = {ASSET_PARTITION_RANGE_START_TAG: FIRST, ASSET_PARTITION_RANGE_END_TAG: DAY}
        for selection, kwargs in ((PER_PARTITION[:2], {"tags": tags}), (UNPARTITIONED, {})):
            assert dg.materialize(catalog_assets, selection=selection, resources=resources, instance=instance,
                                  **kwargs).success


def sequential(url: str, warehouse: Path, home: Path) -> None:
    home.mkdir()
    with dg.DagsterInstance.local_temp(str(home)) as instance:
        for partition in PARTITIONS:
            assert dg.materialize(catalog_assets, selection=PER_PARTITION, partition_key=partition,
                                  resources=resources_for(url, str(warehouse)), instance=instance).success


def concurrent(url: str, warehouse: Path, home: Path, logs: Path) -> dict:
    home.mkdir()
    (home / "dagster.yaml").write_text(POOL_INSTANCE)
    # The instance exists before its runs, as in a deployment: processes racing to create the SQLite
    # schema of a brand-new DAGSTER_HOME fail on "table already exists", which is not what this tests.
    dg.DagsterInstance.from_config(str(home)).dispose()
    catalog_config, delivery_config = logs / "catalog-run.json", logs / "delivery-run.json"
    catalog_config.write_text(json.dumps({**IN_PROCESS, **UNPACED}))
    delivery_config.write_text(json.dumps(IN_PROCESS))
    commands = {f"catalog {p}": dagster_command(catalog_config, "asset", "materialize", "--select",
                                                ",".join(PER_PARTITION), "--partition", p) for p in PARTITIONS}
    commands["notification delivery"] = dagster_command(delivery_config, "job", "execute", "-j",
                                                        "notification_delivery_job")
    reader = WarehouseReader(warehouse)
    reader.start()
    procs = {}
    for name, command in commands.items():
        log = (logs / f"{name.replace(' ', '-')}.log").open("w")
        procs[name] = (subprocess.Popen(command, env=cli_env(home, warehouse, url), stdout=log,
                                        stderr=subprocess.STDOUT), log)
    codes = {}
    try:
        for name, (proc, _) in procs.items():
            codes[name] = proc.wait(timeout=240)
    finally:
        for proc, log in procs.values():
            if proc.poll() is None:  # a hung run: do not leave it behind
                proc.kill()
                proc.wait()
            log.close()
        reader.stop.set()
        reader.join()
    return {"codes": codes, "reader": reader,
            "output": {name: (logs / f"{name.replace(' ', '-')}.log").read_text() for name in procs}}


@pytest.fixture(scope="module")
def backfills(tmp_path_factory):
    work = tmp_path_factory.mktemp("concurrent-backfills")
    proc, url = start_sandbox(products=PRODUCTS)
    try:
        seeded = work / "seed.duckdb"
        seed(url, seeded, work / "seed-home")
        seeded_at = datetime.now(UTC)
        in_sequence, at_once = work / "sequential" / "warehouse.duckdb", work / "concurrent" / "warehouse.duckdb"
        for target in (in_sequence, at_once):
            target.parent.mkdir()
            shutil.copyfile(seeded, target)
        sequential(url, in_sequence, work / "sequential-home")
        started = time.perf_counter()
        result = concurrent(url, at_once, work / "concurrent-home", work)
        result["seconds"] = time.perf_counter() - started
    finally:
        stop_sandbox(proc)
    with dg.DagsterInstance.from_config(str(work / "concurrent-home")) as instance:
        runs = instance.get_runs()
        result["runs"] = {run.run_id: (run.job_name, run.tags.get("dagster/partition"), run.status) for run in runs}
        result["events"] = {run.run_id: instance.all_logs(run.run_id) for run in runs}
    yield {**result, "seeded_at": seeded_at, "sequential": in_sequence, "concurrent": at_once}


def test_every_run_succeeds(backfills):
    assert all(code == 0 for code in backfills["codes"].values()), backfills["codes"]
    statuses = sorted((job, partition, status) for job, partition, status in backfills["runs"].values())
    assert statuses == sorted([("__ASSET_JOB", p, dg.DagsterRunStatus.SUCCESS) for p in PARTITIONS]
                              + [("notification_delivery_job", None, dg.DagsterRunStatus.SUCCESS)])


def test_no_lock_error_in_any_event_log_or_process_output(backfills):
    for run_id, events in backfills["events"].items():
        for event in events:
            text = f"{event.user_message} {event.dagster_event.event_specific_data if event.dagster_event else ''}"
            assert not LOCK_ERROR.search(text), (run_id, text[:500])
    for name, output in backfills["output"].items():
        assert not LOCK_ERROR.search(output), (name, output[-2000:])


def test_the_pool_let_one_warehouse_step_run_at_a_time(backfills):
    """Every step here writes the warehouse: their [start, end] spans across all runs never overlap."""
    spans, blocked = [], 0
    for events in backfills["events"].values():
        started = {}
        for event in events:
            kind = event.dagster_event.event_type_value if event.dagster_event else None
            if kind == "STEP_START":
                started[event.step_key] = event.timestamp
            elif kind in ("STEP_SUCCESS", "STEP_FAILURE"):
                spans.append((started.pop(event.step_key), event.timestamp, event.step_key))
            blocked += "blocked" in (event.user_message or "")
    spans.sort()
    assert len(spans) == len(PARTITIONS) * len(PER_PARTITION) + 1
    overlaps = [(a[2], b[2]) for a, b in zip(spans, spans[1:], strict=False) if b[0] < a[1]]
    assert not overlaps
    print(f"\nconcurrent backfills: {len(backfills['runs'])} runs, {len(spans)} warehouse steps in "
          f"{backfills['seconds']:.0f} s, {blocked} 'blocked by pool' events, reader: "
          f"{backfills['reader'].reads} reads, {backfills['reader'].conflicts} lock conflicts (retried)")


def test_the_reader_read_while_the_runs_wrote_and_saw_no_other_error(backfills):
    assert backfills["reader"].reads > 0 and backfills["reader"].errors == []


@pytest.mark.parametrize("table", sorted(WRITTEN_AT))
def test_tables_equal_those_of_the_same_runs_in_sequence(backfills, table):
    assert table_digest(backfills["concurrent"], table) == table_digest(backfills["sequential"], table)


@pytest.mark.parametrize("table", sorted(DATE_COLUMN))
def test_every_partition_was_written_by_the_runs(backfills, table):
    got = rows_per_partition(backfills["concurrent"], table)
    assert got == rows_per_partition(backfills["sequential"], table)
    if table != "orphan_images":
        assert set(got) == set(PARTITIONS) and all(got.values())


def test_the_runs_re_extracted_their_days_over_the_seed(backfills):
    with duckdb.connect(str(backfills["concurrent"]), read_only=True) as con:
        oldest = dict(con.execute("SELECT CAST(partition_date AS VARCHAR), min(extracted_at) FROM "
                                  "plytix_product_changes WHERE list_contains(?, partition_date) GROUP BY 1",
                                  [[date.fromisoformat(p) for p in PARTITIONS]]).fetchall())
    assert set(oldest) == set(PARTITIONS) and all(at > backfills["seeded_at"] for at in oldest.values())
