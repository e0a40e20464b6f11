"""Day-to-day semantics: a change on D+1 stays out of snapshot D; a fix shows as resolved on D+1."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime

import dagster as dg
import duckdb
import httpx
import pytest
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from assets.snapshot import build_snapshot
from resources.plytix import PlytixClient
from tests.assets.test_catalog_assets import DERIVED, EXTRACTION, FIRST, materialize, resources_for
from tests.conftest import start_sandbox, stop_sandbox

D, NEXT = "2026-11-21", "2026-11-22"


@pytest.fixture(scope="module")
def two_days(tmp_path_factory):
    proc, url = start_sandbox(extra=["world_now=2026-11-21T12:00:00Z"])
    warehouse = str(tmp_path_factory.mktemp("warehouse") / "warehouse.duckdb")
    instance = dg.DagsterInstance.local_temp(str(tmp_path_factory.mktemp("dagster_home")))
    resources = resources_for(url, warehouse)
    tags = {ASSET_PARTITION_RANGE_START_TAG: FIRST, ASSET_PARTITION_RANGE_END_TAG: D}
    assert materialize(instance, resources, EXTRACTION, tags=tags).success
    assert materialize(instance, resources, DERIVED, partition_key=D).success

    truth = httpx.get(f"{url}/_sandbox/ground-truth").json()["ids"]
    fixed = truth["missing_required"][0]
    clean = next(f"6740a1f2{i:016x}" for i in range(1000, 2000)
                 if all(f"6740a1f2{i:016x}" not in ids for ids in truth.values()))
    # The next morning, on the sandbox's clock: one product is fixed, another broken.
    httpx.post(f"{url}/_sandbox/config", json={"sandbox_clock": "2026-11-22T09:00:00Z"}).raise_for_status()
    client = PlytixClient(f"{url}/plytix-auth", f"{url}/plytix", "sandbox-plytix-key", "sandbox-plytix-password",
                          max_requests_per_second=None)
    client.patch_product(fixed, {"attributes": {"description": "Now written."}})
    client.patch_product(clean, {"attributes": {"description": None}})
    assert materialize(instance, resources, EXTRACTION, partition_key=NEXT).success
    assert materialize(instance, resources, DERIVED, partition_key=NEXT).success
    # Later, someone deletes a product in Plytix; the periodic reconciliation notices.
    deleted = f"6740a1f2{1999:016x}"
    httpx.post(f"{url}/_sandbox/plytix/products/{deleted}/delete").raise_for_status()
    assert materialize(instance, resources, ["plytix_deleted_products"]).success
    yield {"warehouse": warehouse, "fixed": fixed, "broken": clean, "truth": truth, "deleted": deleted,
           "instance": instance, "resources": resources}
    instance.dispose()
    stop_sandbox(proc)


def rows(world, sql, params):
    with duckdb.connect(world["warehouse"], read_only=True) as con:
        return con.execute(sql, params).fetchall()


def state_of(world, day, product_id, rule="missing_required_attribute"):
    return rows(world, "SELECT state, first_seen::VARCHAR, last_seen::VARCHAR FROM catalog_quality_report "
                       "WHERE report_date = ? AND product_id = ? AND rule = ?", [day, product_id, rule])


def test_a_change_on_the_next_day_is_not_in_the_snapshot_of_the_day_before(two_days):
    description = "SELECT json_extract_string(attributes, '$.description') FROM catalog_snapshot " \
                  "WHERE snapshot_date = ? AND product_id = ?"
    assert rows(two_days, description, [D, two_days["fixed"]]) == [(None,)]
    assert rows(two_days, description, [NEXT, two_days["fixed"]]) == [("Now written.",)]
    assert rows(two_days, description, [D, two_days["broken"]])[0][0]
    assert rows(two_days, description, [NEXT, two_days["broken"]]) == [(None,)]


def test_a_fixed_product_shows_as_resolved_the_next_day(two_days):
    assert state_of(two_days, D, two_days["fixed"]) == [("new", D, D)]
    assert state_of(two_days, NEXT, two_days["fixed"]) == [("resolved", D, D)]


def test_a_newly_broken_product_is_new_and_the_rest_persist(two_days):
    assert state_of(two_days, NEXT, two_days["broken"]) == [("new", NEXT, NEXT)]
    persisting = rows(two_days, "SELECT count(*), min(first_seen)::VARCHAR FROM catalog_quality_report "
                                "WHERE report_date = ? AND rule = 'missing_required_attribute' AND state = 'persisting'",
                      [NEXT])[0]
    assert persisting == (len(two_days["truth"]["missing_required"]) - 1, D)


def test_both_days_have_the_same_products(two_days):
    counts = rows(two_days, "SELECT snapshot_date::VARCHAR, count(*) FROM catalog_snapshot GROUP BY 1 ORDER BY 1", [])
    assert counts == [(D, 2000), (NEXT, 2000)]


def test_a_deleted_product_leaves_the_snapshots_after_its_detection(two_days, tmp_path):
    assert rows(two_days, "SELECT id FROM plytix_deletions", []) == [(two_days["deleted"],)]
    # Snapshots of days that ended before the detection keep it (it existed then)...
    present = "SELECT count(*) FROM catalog_snapshot WHERE snapshot_date = ? AND product_id = ?"
    assert rows(two_days, present, [NEXT, two_days["deleted"]]) == [(1,)]
    # ...and the snapshot of the day the deletion was detected no longer has it.
    copy = tmp_path / "warehouse.duckdb"
    shutil.copy(two_days["warehouse"], copy)
    today = datetime.now(UTC).date()
    with duckdb.connect(str(copy)) as con:
        build_snapshot(con, today)
        assert con.execute(present, [today, two_days["deleted"]]).fetchone() == (0,)
        assert con.execute("SELECT count(*) FROM catalog_snapshot WHERE snapshot_date = ?", [today]).fetchone() == (1999,)


def test_a_range_of_days_rebuilds_in_one_run_with_the_same_result(two_days):
    """Backfill a week of the three assets in a single run: every day is built in order, and the
    days already built come out as they were."""
    before = rows(two_days, "SELECT rule, state, count(*) FROM catalog_quality_report WHERE report_date = ? "
                            "GROUP BY ALL ORDER BY ALL", [NEXT])
    tags = {ASSET_PARTITION_RANGE_START_TAG: "2026-11-16", ASSET_PARTITION_RANGE_END_TAG: NEXT}
    result = materialize(two_days["instance"], two_days["resources"], DERIVED, tags=tags)
    assert result.success
    # One run recorded a materialisation for every day of the range, for each of the three assets.
    events = result.get_asset_materialization_events()
    assert {(e.asset_key.to_user_string(), e.partition) for e in events} == {
        (asset, f"2026-11-{n}") for asset in DERIVED for n in range(16, 23)}
    days = rows(two_days, "SELECT report_date::VARCHAR, count(*) FROM catalog_quality_report GROUP BY 1 ORDER BY 1", [])
    assert [d for d, _ in days] == [f"2026-11-{n}" for n in range(16, 23)]
    sizes = [n for _, n in rows(two_days, "SELECT snapshot_date, count(*) FROM catalog_snapshot GROUP BY 1 "
                                          "ORDER BY 1", [])]
    assert sizes == sorted(sizes) and sizes[-1] == 2000  # the catalog only grows over the week
    after = rows(two_days, "SELECT rule, state, count(*) FROM catalog_quality_report WHERE report_date = ? "
                           "GROUP BY ALL ORDER BY ALL", [NEXT])
    assert after == before
