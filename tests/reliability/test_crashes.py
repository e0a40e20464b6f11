"""Crashes: a run killed with SIGKILL at the worst moments, then run again as Dagster left it.

Each victim is a real OS process (`crash_driver`) materialising the project's real assets with a real
Dagster instance (the demo's `dagster.yaml`: one slot in the warehouse pool), a real DuckDB file and
its own sandbox. The moment is seen from outside: staging and WAL files on disk, the sandbox's
request script and writes log. One world is killed four times (mid PhotoShelter walk, mid DuckDB
write of the derived assets, after OpenText committed a send whose answer is held, after Planner
created a task whose answer is held) and compared with an uninterrupted run of the same seed; a
bigger world kills the Plytix read after a staged batch (whose rows the rerun used to store twice).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import duckdb
import httpx
import pytest
import yaml
from dagster._daemon.monitoring import execute_concurrency_slots_iteration, execute_run_monitoring_iteration

from assets.extraction import STAGE_BATCH_ROWS
from orchestration.demo import DAGSTER_YAML
from resources import planner_markers as mk
from resources.plytix import PAGE_SIZE
from tests.assets.test_catalog_assets import DERIVED, EXTRACTION, FIRST
from tests.conftest import Sandbox, start_sandbox, stop_sandbox
from tests.reliability.crash_driver import run_steps

pytestmark = pytest.mark.slow  # 1.5-3 min: three sandboxes and eight Dagster processes

DAY = "2026-11-22"  # the conftest world is "as of" DAY noon
PRODUCTS = 300
WORLD = ["opentext_delivery_delay_s=0"]  # jobs are final at once: a status never depends on run length
EXTRACT = {"select": EXTRACTION, "range": [FIRST, DAY]}
# A week, one transaction per day: a kill lands among the days of one step.
DERIVE = {"select": DERIVED, "range": ["2026-11-16", DAY]}
NOTIFY = {"select": ["catalog_notifications"], "partition": DAY}
PLAN = {"select": ["planner_tasks"], "partition": DAY}
PLYTIX_ONLY = {"select": ["plytix_product_changes"], "range": [FIRST, DAY]}
DATE_COLUMN = {"catalog_snapshot": "snapshot_date", "product_images": "snapshot_date",
               "catalog_quality_report": "report_date"}
# Columns that differ between two runs of one world by nature: our own clock, run ids, and the ids and
# etags a service mints on creation (each world's sandbox draws its own).
VOLATILE = {"extracted_at", "refreshed_at", "detected_at", "quarantined_at", "run_id", "recorded_at",
            "planned_by_run", "planned_at", "updated_at", "task_id", "etag", "job_id", "submitted_at",
            "accepted_at", "last_polled_at", "finished_at", "next_attempt_at", "attempts", "last_error"}
FREE_SLOTS_AFTER_S = 1  # the demo waits a minute; the test cannot
MAX_RUNTIME_S = 5  # the demo allows 12 h
HELD_S = 60  # how long the sandbox holds a committed answer: far longer than the kill takes


class Deployment:
    """A DAGSTER_HOME with the demo's instance config, a warehouse file and a sandbox: the victims' world."""

    def __init__(self, folder: Path, url: str):
        self.home, self.warehouse = folder / "dagster_home", str(folder / "warehouse.duckdb")
        self.logs = folder
        self.home.mkdir(parents=True)
        config = yaml.safe_load(DAGSTER_YAML)
        config["run_monitoring"]["free_slots_after_run_end_seconds"] = FREE_SLOTS_AFTER_S
        config["run_monitoring"]["max_runtime_seconds"] = MAX_RUNTIME_S
        (self.home / "dagster.yaml").write_text(yaml.safe_dump(config))
        admin = httpx.Client(base_url=url, timeout=30)
        self.sandbox = Sandbox(url, admin, admin.get("/_sandbox/config").json())
        self.instance = dg.DagsterInstance.from_config(str(self.home))
        self.started = 0

    def start(self, *steps: dict) -> subprocess.Popen:
        self.started += 1
        log = open(self.logs / f"process-{self.started}.log", "w")  # noqa: SIM115 (the child writes it)
        command = [sys.executable, "-m", "tests.reliability.crash_driver", str(self.home), self.warehouse,
                   self.sandbox.url, json.dumps(list(steps))]
        with log:
            return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True)

    def run(self, *steps: dict) -> None:
        proc = self.start(*steps)
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"run failed: {out}; see {self.logs}"

    def kill_when(self, proc: subprocess.Popen, moment: Callable[[], object], what: str) -> object:
        """SIGKILL `proc` as soon as `moment()` returns something true (its evidence), seen from outside."""
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if evidence := moment():
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                return evidence
            assert proc.poll() is None, f"the victim ended before {what}: {proc.stdout.read()}"
            time.sleep(0.005)
        proc.kill()
        raise AssertionError(f"never saw {what}")

    def dead_run(self) -> dg.DagsterRun:
        (run,) = self.instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
        return run

    def end_dead_run(self) -> dict:
        """What the monitoring daemon does for a run whose worker died: past its maximum runtime it is
        failed, then the pool slots it still holds are freed (its passes have no public entry point)."""
        run = self.dead_run()
        held = _pool_holders(self.instance)
        daemon = logging.getLogger("daemon")
        record = self.instance.get_run_record_by_id(run.run_id)
        time.sleep(max(0.0, MAX_RUNTIME_S + 0.2 - (time.time() - record.start_time)))
        list(execute_run_monitoring_iteration(SimpleNamespace(instance=self.instance, create_request_context=lambda: None),
                                              daemon))
        ended = self.instance.get_run_by_id(run.run_id)
        time.sleep(FREE_SLOTS_AFTER_S + 0.2)
        list(execute_concurrency_slots_iteration(SimpleNamespace(instance=self.instance), daemon))
        return {"run": run, "ended": ended, "held_before": held, "held_after": _pool_holders(self.instance)}

    def steps_of(self, run_id: str) -> dict[str, set[str]]:
        """Step keys by what the event log says happened to them in the run."""
        seen: dict[str, set[str]] = {}
        for entry in self.instance.all_logs(run_id):
            if entry.dagster_event and entry.step_key:
                seen.setdefault(entry.dagster_event.event_type_value, set()).add(entry.step_key)
        return seen

    def query(self, sql: str, params=None) -> list[tuple]:
        with duckdb.connect(self.warehouse, read_only=True) as con:
            return con.execute(sql, params or []).fetchall()

    def close(self) -> None:
        self.sandbox.admin.close()
        self.instance.dispose()


def _pool_holders(instance: dg.DagsterInstance) -> set[str]:
    info = instance.event_log_storage.get_concurrency_info("duckdb_warehouse")
    return {slot.run_id for slot in info.claimed_slots}


def table_prints(deployment: Deployment) -> dict[str, tuple[int, str]]:
    """Per warehouse table: row count and a hash of its sorted rows, volatile columns left out. Links
    into the sandbox carry its port, which differs between worlds: masked."""
    prints = {}
    with duckdb.connect(deployment.warehouse, read_only=True) as con:
        for (table,) in con.execute("SELECT table_name FROM duckdb_tables() ORDER BY 1").fetchall():
            columns = [c for (c,) in con.execute("SELECT column_name FROM duckdb_columns() WHERE table_name = ? "
                                                 "ORDER BY column_index", [table]).fetchall() if c not in VOLATILE]
            rows = con.execute(f"SELECT {', '.join(columns)} FROM {table}").fetchall()  # noqa: S608 (catalog names)
            text = sorted(repr(row).replace(deployment.sandbox.url, "<sandbox>") for row in rows)
            prints[table] = (len(rows), hashlib.sha256("\n".join(text).encode()).hexdigest())
    return prints


def staging_file(deployment: Deployment, table: str) -> Path:
    return Path(deployment.warehouse).parent / "staging" / f"{table}-{FIRST}-{DAY}.duckdb"


def wal_over(path: Path, size: int) -> Callable[[], int | None]:
    """The WAL's size once it passes `size` bytes: rows committed to `path` and not yet checkpointed
    (the tables and bookkeeping a file starts with take a few kB)."""
    wal = Path(f"{path}.wal")

    def moment() -> int | None:
        current = wal.stat().st_size if wal.exists() else 0
        return current if current > size else None

    return moment


def killed_step(deployment: Deployment, run_id: str) -> str:
    steps = deployment.steps_of(run_id)
    (step,) = steps["STEP_START"] - steps.get("STEP_SUCCESS", set()) - steps.get("STEP_FAILURE", set())
    return step


@pytest.fixture(scope="module")
def actions_env():
    saved = os.environ.get("CATALOG_OPS_ACTIONS_MAX_AGE_DAYS")
    os.environ["CATALOG_OPS_ACTIONS_MAX_AGE_DAYS"] = "100000"  # the fixed world's day is "recent"
    yield
    if saved is None:
        os.environ.pop("CATALOG_OPS_ACTIONS_MAX_AGE_DAYS", None)
    else:
        os.environ["CATALOG_OPS_ACTIONS_MAX_AGE_DAYS"] = saved


@pytest.fixture(scope="module")
def sandboxes():
    """Three worlds, started together: two small twins, and a catalog bigger than one staging batch
    (so a killed Plytix read has a batch on disk)."""
    sizes = {"reference": (PRODUCTS, WORLD), "crashed": (PRODUCTS, WORLD), "plytix": (STAGE_BATCH_ROWS + 300, [])}
    with ThreadPoolExecutor(len(sizes)) as pool:
        started = {name: pool.submit(start_sandbox, *size) for name, size in sizes.items()}
    procs = {name: future.result() for name, future in started.items()}
    try:
        yield {name: url for name, (_, url) in procs.items()}
    finally:
        for proc, _ in procs.values():
            stop_sandbox(proc)


@pytest.fixture(scope="module")
def crashed(tmp_path_factory, sandboxes, actions_env):
    """One world killed four times and finished; its twin run without a kill, in parallel."""
    ref = Deployment(tmp_path_factory.mktemp("reference"), sandboxes["reference"])
    world = Deployment(tmp_path_factory.mktemp("crashed"), sandboxes["crashed"])
    reference = ref.start(EXTRACT, DERIVE, NOTIFY, PLAN)
    kills: dict[str, dict] = {}
    try:
        # 1. Mid PhotoShelter walk, a few galleries staged (each is committed with its rows).
        victim = world.start(EXTRACT)
        world.kill_when(victim, wal_over(staging_file(world, "photoshelter_image_changes"), 20_000), "galleries staged")
        with duckdb.connect(str(staging_file(world, "photoshelter_image_changes")), read_only=True) as con:
            staged = con.execute("SELECT count(*) FROM staging_done").fetchone()[0]
        kills["extraction"] = {"staged_galleries": staged, **_after_kill(world)}

        # 2. The extraction resumes and finishes; the derived backfill is killed past its first day (a
        # day of this world's snapshot is ~200 kB of WAL), its connection open until the step ends.
        victim = world.start(EXTRACT, DERIVE)
        assert json.loads(victim.stdout.readline())["success"]
        wal = Path(f"{world.warehouse}.wal")
        world.kill_when(victim, wal_over(Path(world.warehouse), 300_000), "the warehouse WAL past a day")
        kills["derived"] = {"wal_after_kill": wal.exists(), **_after_kill(world)}
        table = kills["derived"]["step"]
        kills["derived"]["days_written"] = world.query(
            f"SELECT count(DISTINCT {DATE_COLUMN[table]}) FROM {table}")[0][0]  # noqa: S608 (fixed names)

        # 3. OpenText commits the third send and holds its answer; the run dies waiting for it.
        world.sandbox.fault("opentext", path_contains="/mra/v1/outbound/", script=["ok", "ok", "commit_timeout"],
                            timeout_s=HELD_S)
        victim = world.start(DERIVE, NOTIFY)
        world.kill_when(victim, lambda: len(world.sandbox.writes("opentext")) >= 3, "the third send")
        kills["notification"] = {"sent": world.sandbox.writes("opentext"), **_after_kill(world),
                                 "outbox": world.query("SELECT reference, status, job_id FROM notification_outbox")}
        world.sandbox.restore()

        # 4. Planner creates the first task and holds its answer; the run dies waiting for it.
        world.sandbox.fault("graph", path_contains="/planner/tasks", script=["commit_timeout"], timeout_s=HELD_S)
        victim = world.start(NOTIFY, PLAN)
        world.kill_when(victim, lambda: world.sandbox.writes("planner"), "the first task created")
        kills["planner"] = {"written": world.sandbox.writes("planner"), **_after_kill(world),
                            "remembered": {r[0] for r in world.query("SELECT key FROM planner_task_state")}}
        world.sandbox.restore()

        world.run(PLAN)
        out, _ = reference.communicate(timeout=600)
        assert reference.returncode == 0, f"the uninterrupted run failed: {out}"
        yield {"world": world, "ref": ref, "kills": kills}
    finally:
        if reference.poll() is None:
            reference.kill()
        world.close()
        ref.close()


def _after_kill(world: Deployment) -> dict:
    """What the dead run left in Dagster, read before anything else runs, then the run ended."""
    run = world.dead_run()
    step = killed_step(world, run.run_id)
    materialised = world.steps_of(run.run_id).get("ASSET_MATERIALIZATION", set())
    partitions = world.instance.get_materialized_partitions(dg.AssetKey(step))
    return {"step": step, "materialised_in_run": materialised, "partitions_of_step": partitions,
            **world.end_dead_run()}


def test_each_kill_landed_at_the_moment_under_test(crashed):
    kills = crashed["kills"]
    galleries = kills["extraction"]["staged_galleries"]
    assert kills["extraction"]["step"] == "photoshelter_image_changes" and galleries >= 1
    assert kills["derived"]["step"] in DERIVED
    assert kills["derived"]["wal_after_kill"]  # died with the warehouse connection open and unflushed
    assert kills["derived"]["days_written"] >= 1  # days of the step are in the warehouse (see below)
    assert kills["notification"]["step"] == "catalog_notifications"
    assert [status for _, status, _ in kills["notification"]["outbox"]].count("submitting") == 1
    (cut_off,) = [ref for ref, status, job in kills["notification"]["outbox"] if status == "submitting"]
    assert kills["notification"]["sent"][-1]["body"]["customer_reference"] == cut_off  # the service has it
    assert kills["planner"]["step"] == "planner_tasks"
    (created,) = kills["planner"]["written"]
    assert created["method"] == "POST" and created["path"].endswith("/planner/tasks")
    remembered = {mk.marker(key) for key in kills["planner"]["remembered"]}
    assert mk.title_marker(created["body"]["title"]) not in remembered  # created, not recorded


def test_a_killed_run_never_ends_materialises_nothing_of_its_step_and_holds_the_pool(crashed):
    for name, kill in crashed["kills"].items():
        assert kill["run"].status == dg.DagsterRunStatus.STARTED, name  # as the dead worker left it
        assert kill["ended"].status == dg.DagsterRunStatus.FAILURE, name  # then run monitoring failed it
        assert kill["step"] not in kill["materialised_in_run"], name
        # No partition of the killed step looks complete, though the derived one had days written:
        # it had never been materialised before, and the dead run recorded nothing.
        assert not kill["partitions_of_step"], name
        # The dead run still holds the warehouse pool's only slot until it is ended and freed.
        assert kill["held_before"] == {kill["run"].run_id} and not kill["held_after"], name
    # What frees it in the demo: its instance config ends the wait (the test shortens it).
    monitoring = yaml.safe_load(DAGSTER_YAML)["run_monitoring"]
    assert monitoring["enabled"] and monitoring["free_slots_after_run_end_seconds"] > 0
    assert monitoring["max_runtime_seconds"] > 0
    world = crashed["world"]
    runs = world.instance.get_runs()
    assert Counter(r.status for r in runs) == {dg.DagsterRunStatus.FAILURE: 4, dg.DagsterRunStatus.SUCCESS: 4}


def test_every_table_equals_that_of_an_uninterrupted_run(crashed):
    world, ref = crashed["world"], crashed["ref"]
    got, want = table_prints(world), table_prints(ref)
    # Explained below: the send cut off before it was recorded, and the audit of the killed attempts.
    special = {"notification_outbox", "action_audit"}
    assert set(got) == set(want)
    differ = {t: (got[t][0], want[t][0]) for t in set(got) - special if got[t] != want[t]}
    assert not differ, differ  # table: (rows here, rows in the uninterrupted run)
    assert world.query("SELECT count(*) FROM catalog_snapshot")[0][0] > 0


def test_the_send_cut_off_is_unknown_never_resent_and_the_rest_match(crashed):
    world, ref = crashed["world"], crashed["ref"]
    columns = "dedupe_key, reference, kind, channel, recipient, destination, subject, body, status"
    got = {r[0]: r for r in world.query(f"SELECT {columns}, job_id FROM notification_outbox")}  # noqa: S608
    want = {r[0]: r for r in ref.query(f"SELECT {columns}, job_id FROM notification_outbox")}  # noqa: S608
    (unknown,) = [key for key, row in got.items() if row[8] == "unknown"]
    assert got[unknown][9] is None and want[unknown][9] is not None  # the twin's was accepted
    assert {k: r[:8] for k, r in got.items()} == {k: r[:8] for k, r in want.items()}
    assert {k: r[8] for k, r in got.items() if k != unknown} == {k: r[8] for k, r in want.items() if k != unknown}
    # Each notification reached OpenText exactly once, the cut-off one included (by the killed run).
    sent = Counter(w["body"]["customer_reference"] for w in world.sandbox.writes("opentext"))
    assert sent == Counter(w["body"]["customer_reference"] for w in ref.sandbox.writes("opentext"))
    assert set(sent.values()) == {1} and got[unknown][1] in sent


def test_each_planner_task_is_created_once(crashed):
    world, ref = crashed["world"], crashed["ref"]

    def created(deployment: Deployment) -> Counter:
        return Counter(mk.title_marker(w["body"]["title"]) for w in deployment.sandbox.writes("planner")
                       if w["method"] == "POST" and w["path"].endswith("/planner/tasks") and w["status"] < 300)

    got = created(world)
    assert got == created(ref) and set(got.values()) == {1}
    keys = {r[0] for r in world.query("SELECT key FROM planner_task_state WHERE status = 'open'")}
    assert {mk.marker(k) for k in keys} == set(got)


def test_the_audit_keeps_the_killed_attempts_and_nothing_else_differs(crashed):
    world, ref = crashed["world"], crashed["ref"]
    sql = "SELECT service, action, record_id FROM action_audit"
    extra = Counter(world.query(sql)) - Counter(ref.query(sql))
    assert not Counter(ref.query(sql)) - Counter(world.query(sql))  # nothing the uninterrupted run did is missing
    # The killed planner run had audited its one task before creating it; the rerun audited it again.
    created = crashed["kills"]["planner"]["written"][0]["body"]["title"]
    (only,) = extra.elements()
    assert only[:2] == ("planner", "ensure_task") and mk.marker(only[2]) == mk.title_marker(created)


def test_nothing_is_left_staged(crashed):
    folder = Path(crashed["world"].warehouse).parent / "staging"
    assert not list(folder.glob("*.duckdb*"))


class AfterFirstBatch:
    """The moment a Plytix read has committed its first staged batch and asked for the next page.

    Search requests are counted through the sandbox's fault script (one "ok" drawn per request). Pages
    come fast until just before the batch, then slowly, so the kill lands well before the read ends.
    The WAL passing 100 kB says the batch is being committed (a batch is megabytes); the next request
    drawn after that says the commit returned (a WAL seen mid-write may still hold a torn commit)."""

    SCRIPT = 10_000

    def __init__(self, sandbox: Sandbox, staged: Path):
        self.sandbox, self.committing = sandbox, wal_over(staged, 100_000)
        self.slow, self.drawn_at_commit = False, None
        sandbox.fault("plytix", path_contains="products/search", script=["ok"] * self.SCRIPT)

    def drawn(self) -> int:
        return self.SCRIPT - len(self.sandbox.admin.get("/_sandbox/faults").json()["faults"]["plytix"]["script"])

    def __call__(self) -> bool:
        if not self.slow:
            if self.drawn() >= STAGE_BATCH_ROWS // PAGE_SIZE - 5:
                self.sandbox.fault("plytix", path_contains="products/search", latency_rate=1, latency_ms=600,
                                   script=["ok"] * self.SCRIPT)
                self.slow = True
            return False
        if self.drawn_at_commit is None:
            self.drawn_at_commit = self.drawn() if self.committing() else None
            return False
        return self.drawn() > self.drawn_at_commit


def test_a_plytix_read_killed_after_a_staged_batch_stores_each_change_once(sandboxes, tmp_path):
    url = sandboxes["plytix"]
    world, ref = Deployment(tmp_path / "crashed", url), Deployment(tmp_path / "reference", url)
    try:
        staged = staging_file(world, "plytix_product_changes")
        moment = AfterFirstBatch(world.sandbox, staged)
        victim = world.start(PLYTIX_ONLY)
        world.kill_when(victim, moment, "the first staged batch committed")
        world.sandbox.restore()
        with duckdb.connect(str(staged), read_only=True) as con:
            on_disk = con.execute("SELECT count(*) FROM plytix_product_changes").fetchone()[0]
        products = world.sandbox.health()["products"]
        assert STAGE_BATCH_ROWS <= on_disk < products  # a batch, not the whole read
        assert killed_step(world, world.dead_run().run_id) == "plytix_product_changes"
        world.end_dead_run()

        rerun = world.start(PLYTIX_ONLY)  # resumes from the staging file the dead run left
        assert run_steps(str(ref.home), ref.warehouse, url, [PLYTIX_ONLY])  # meanwhile, here: the twin
        out, _ = rerun.communicate(timeout=600)
        assert rerun.returncode == 0, out
        assert world.query("SELECT count(*), count(DISTINCT id) FROM plytix_product_changes")[0] == (products,) * 2
        assert table_prints(world) == table_prints(ref)
    finally:
        world.close()
        ref.close()
