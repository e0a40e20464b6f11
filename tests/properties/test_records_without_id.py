"""A Plytix record that comes without its `id`: the read goes on, the record is quarantined once with
a reason naming the field, and every other product is extracted (real assets, real HTTP, a proxy that
drops the field from about one record in ten)."""

from __future__ import annotations

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
