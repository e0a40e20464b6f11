"""Plytix records the keyset read itself depends on (real assets, real HTTP, a proxy that changes
about one record in ten): one without its `id` is quarantined once and the rest is read; one whose
`modified` cannot be read fails the run naming service, endpoint, page, record and request id, and
leaves nothing that looks complete."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import duckdb
import httpx
import pytest
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from orchestration.definitions import catalog_assets
from tests.assets.test_catalog_assets import DAY, FIRST, resources_for
from tests.conftest import start_sandbox, stop_sandbox
from tests.properties.corrupting_proxy import CorruptingProxy

pytestmark = pytest.mark.slow  # a sandbox of its own and one extraction run


def test_records_without_an_id_are_quarantined_once_and_the_rest_is_read(tmp_path):
    proc, url = start_sandbox(products=200)
    warehouse = str(tmp_path / "warehouse.duckdb")
    instance = dg.DagsterInstance.ephemeral()
    try:
        drop_id = [("id-missing", lambda r: {k: v for k, v in r.items() if k != "id"})]
        with CorruptingProxy(url, drop_id, [("untouched", lambda r: r)], every=10) as proxy:
            run = dg.materialize(catalog_assets, selection=["plytix_product_changes"],
                                 resources=resources_for(proxy.url, warehouse), instance=instance,
                                 tags={ASSET_PARTITION_RANGE_START_TAG: FIRST, ASSET_PARTITION_RANGE_END_TAG: DAY})
            dropped = set(proxy.corrupted["plytix"])
        products = httpx.get(f"{url}/_sandbox/health").json()["products"]
    finally:
        instance.dispose()
        stop_sandbox(proc)
    assert run.success and dropped
    with duckdb.connect(warehouse, read_only=True) as con:
        quarantined = con.execute("SELECT record_id, reason, record ->> '$.sku' FROM plytix_quarantine").fetchall()
        kept = {r[0] for r in con.execute("SELECT DISTINCT id FROM plytix_product_changes").fetchall()}
    assert len(quarantined) == len(dropped)  # each once, though an id cannot deduplicate it
    assert all(record_id is None and "id: Field required" in reason for record_id, reason, _ in quarantined)
    assert len({sku for *_, sku in quarantined}) == len(dropped)
    assert not kept & dropped and len(kept) == products - len(dropped)
    event = run.asset_materializations_for_node("plytix_product_changes")[-1]
    assert event.metadata["records_quarantined"].value == len(dropped)


def test_an_unreadable_modified_fails_the_read_by_name_and_leaves_nothing_complete(tmp_path):
    proc, url = start_sandbox(products=200)
    warehouse = str(tmp_path / "warehouse.duckdb")
    instance = dg.DagsterInstance.ephemeral()
    try:
        garble = [("modified-garbled", lambda r: {**r, "modified": "yesterday"})]
        with CorruptingProxy(url, garble, [("untouched", lambda r: r)], every=10) as proxy:
            run = dg.materialize(catalog_assets, selection=["plytix_product_changes"],
                                 resources=resources_for(proxy.url, warehouse), instance=instance,
                                 tags={ASSET_PARTITION_RANGE_START_TAG: FIRST, ASSET_PARTITION_RANGE_END_TAG: DAY},
                                 raise_on_error=False)
    finally:
        instance.dispose()
        stop_sandbox(proc)
    assert not run.success
    error = str(run.get_step_failure_events()[-1].event_specific_data.error)
    assert "plytix POST /api/v1/products/search failed: HTTP 200, request id " in error
    assert "request id none" not in error and "page 1 (" in error
    assert "modified 'yesterday' is not a timestamp" in error and "(id 6740a1f2" in error
    if Path(warehouse).exists():  # nothing swapped in: no partition looks complete
        with duckdb.connect(warehouse, read_only=True) as con:
            tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
            assert "plytix_product_changes" not in tables or con.execute(
                "SELECT count(*) FROM plytix_product_changes").fetchone() == (0,)
    assert not run.get_asset_materialization_events()  # and Dagster recorded no partition as done
