"""Malformed records end to end: the real extraction assets read a sandbox of their own through a proxy
that corrupts about one record in ten (wrong types, nulls, numbers past the warehouse's range, lone
surrogates, and valid-but-hostile SQL and Unicode). Every bad record lands in its quarantine table
with a reason naming what is wrong, is counted in metadata, fails the share check (which alerts),
and the rest of the catalog is extracted and snapshotted as if nothing happened."""

from __future__ import annotations

from collections import Counter

import dagster as dg
import duckdb
import httpx
import pytest
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from assets.quarantine import CHECK_NAME, share_check
from orchestration.definitions import catalog_assets
from sensors.run_alerts import failed_checks
from tests.assets.test_catalog_assets import DAY, DERIVED, FIRST, resources_for
from tests.conftest import start_sandbox, stop_sandbox
from tests.properties.corrupting_proxy import CorruptingProxy

pytestmark = pytest.mark.slow  # ~20 s: a sandbox, a proxy and two real runs
PRODUCTS = 300  # a small world of its own; one record in ten corrupted: every kind several times
SQL_SKU = "'; DROP TABLE plytix_product_changes; --"
HUGE_LABEL = "Ärmel 😀 \u202e'; --\x00 " * 20_000
SQL_TAG = "'); DROP TABLE catalog_snapshot;--"


def _custom(item: dict, field: str, change) -> dict:
    item["CustomMetadata"] = [{**f, "tag": change(f.get("tag"))} if f.get("field_name") == field else f
                              for f in item.get("CustomMetadata") or []]
    return item


# (name, corruption, what the quarantine reason must say; None: a valid record that must be kept as sent)
PLYTIX = [
    ("sku-null", lambda r: {**r, "sku": None}, "sku: Input should be a valid string"),
    ("categories-number", lambda r: {**r, "categories": 7}, "categories: Value error, expected a list"),
    ("attributes-text", lambda r: {**r, "attributes": "n/a"}, "attributes: Input should be a valid dictionary"),
    ("variations-overflow", lambda r: {**r, "num_variations": 2**40}, "num_variations: 1099511627776 is out of range"),
    ("label-surrogate", lambda r: {**r, "label": "Jacke \ud800"}, "label: text is not valid Unicode"),
    ("sku-sql", lambda r: {**r, "sku": r["sku"] + SQL_SKU}, None),
    ("label-huge", lambda r: {**r, "label": HUGE_LABEL}, None),
]
PHOTOSHELTER = [
    ("image-not-object", lambda r: {**r, "Image": "garbled"}, "Image: expected an object, got str"),
    ("width-text", lambda r: {**r, "Image": {**(r.get("Image") or {}), "width": "wide"}}, "Image.width: invalid literal"),
    ("custom-not-list", lambda r: {**r, "CustomMetadata": {"SKU": "x"}}, "CustomMetadata: expected a list of objects"),
    ("sku-surrogate", lambda r: _custom(r, "SKU", lambda t: "SKU-\udc00"), "CustomMetadata."),
    ("sku-sql", lambda r: _custom(r, "SKU", lambda t: f"{t}{SQL_TAG}"), None),
]
EXPECTED = {"plytix": {n: why for n, _, why in PLYTIX}, "photoshelter": {n: why for n, _, why in PHOTOSHELTER}}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    proc, url = start_sandbox(products=PRODUCTS)
    warehouse = str(tmp_path_factory.mktemp("warehouse") / "warehouse.duckdb")
    instance = dg.DagsterInstance.local_temp(str(tmp_path_factory.mktemp("dagster_home")))
    try:
        with CorruptingProxy(url, [(n, f) for n, f, _ in PLYTIX], [(n, f) for n, f, _ in PHOTOSHELTER],
                             every=10) as proxy:
            resources = resources_for(proxy.url, warehouse)
            run = lambda selection, **kw: dg.materialize(catalog_assets, selection=selection,  # noqa: E731
                                                         resources=resources, instance=instance,
                                                         raise_on_error=False, **kw)
            extraction = run(["plytix_product_changes", "photoshelter_image_changes"],
                             tags={ASSET_PARTITION_RANGE_START_TAG: FIRST, ASSET_PARTITION_RANGE_END_TAG: DAY})
            derived = run(DERIVED, partition_key=DAY)
            yield {"warehouse": warehouse, "instance": instance, "extraction": extraction, "derived": derived,
                   "corrupted": proxy.corrupted, "products": httpx.get(f"{url}/_sandbox/health").json()["products"]}
    finally:
        instance.dispose()
        stop_sandbox(proc)


def query(world, sql: str, params=None) -> list[tuple]:
    with duckdb.connect(world["warehouse"], read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def bad_ids(world, source: str) -> set[str]:
    return {i for i, name in world["corrupted"][source].items() if EXPECTED[source][name] is not None}


def test_the_runs_succeed_and_every_kind_of_corruption_was_sent(world):
    assert world["extraction"].success and world["derived"].success
    for source, kinds in EXPECTED.items():
        assert set(world["corrupted"][source].values()) == set(kinds), source  # each corruption really happened


@pytest.mark.parametrize("source, table, key", [("plytix", "plytix_product_changes", "id"),
                                                ("photoshelter", "photoshelter_image_changes", "image_id")])
def test_bad_records_are_quarantined_with_their_reason_and_the_rest_is_kept(world, source, table, key):
    rows = query(world, f"SELECT record_id, reason FROM {source}_quarantine")  # noqa: S608 (fixed names)
    assert {r[0] for r in rows} == bad_ids(world, source)
    for record_id, reason in rows:
        assert EXPECTED[source][world["corrupted"][source][record_id]] in reason, (record_id, reason)
    kept = {r[0] for r in query(world, f"SELECT DISTINCT {key} FROM {table}")}  # noqa: S608
    assert kept and not kept & bad_ids(world, source)
    assert set(world["corrupted"][source]) - bad_ids(world, source) <= kept  # hostile but valid: kept


def test_quarantined_records_are_counted_in_metadata(world):
    for source, table in [("plytix", "plytix_product_changes"), ("photoshelter", "photoshelter_image_changes")]:
        event = world["extraction"].asset_materializations_for_node(table)[-1]
        quarantined = query(world, f"SELECT count(*) FROM {source}_quarantine")[0][0]  # noqa: S608
        assert event.metadata["records_quarantined"].value == quarantined > 0
        assert event.metadata["dagster/row_count"].value == query(world, f"SELECT count(*) FROM {table}")[0][0]  # noqa: S608


def test_the_share_check_fails_above_the_limit_and_the_alert_sensor_sees_it(world):
    evaluations = {e.asset_key.to_user_string(): e for e in world["extraction"].get_asset_check_evaluations()
                   if e.check_name == CHECK_NAME}
    assert set(evaluations) == {"plytix_product_changes", "photoshelter_image_changes"}
    for evaluation in evaluations.values():
        share = evaluation.metadata["quarantined_share"].value
        assert evaluation.passed == (share <= 0.01) and evaluation.severity is dg.AssetCheckSeverity.ERROR
    assert not evaluations["plytix_product_changes"].passed  # ~6 % of the products are quarantined
    alerted = failed_checks(world["instance"], world["extraction"].run_id)
    assert f"plytix_product_changes|{CHECK_NAME}" in alerted


@pytest.mark.parametrize("kept, quarantined, limit, passed", [(99, 1, 0.01, True), (98, 2, 0.01, False),
                                                               (0, 0, 0.0, True), (0, 3, 1.0, True), (5, 1, 0.0, False)])
def test_the_share_limit_is_inclusive_and_configurable(monkeypatch, kept, quarantined, limit, passed):
    monkeypatch.setenv("CATALOG_OPS_QUARANTINE_ALERT_SHARE", str(limit))
    assert share_check("plytix_product_changes", kept, quarantined).passed is passed


def test_hostile_but_valid_values_reach_the_snapshot_exactly(world):
    sql_ids = [i for i, name in world["corrupted"]["plytix"].items() if name == "sku-sql"]
    huge_ids = [i for i, name in world["corrupted"]["plytix"].items() if name == "label-huge"]
    assert sql_ids and huge_ids
    skus = dict(query(world, "SELECT product_id, sku FROM catalog_snapshot WHERE snapshot_date = ?", [DAY]))
    assert all(skus[i].endswith(SQL_SKU) for i in sql_ids)
    labels = dict(query(world, "SELECT product_id, label FROM catalog_snapshot WHERE snapshot_date = ? "
                               "AND list_contains(?, product_id)", [DAY, huge_ids]))
    assert set(labels.values()) == {HUGE_LABEL}
    tags = [r[0] for r in query(world, "SELECT sku FROM photoshelter_image_changes WHERE sku LIKE ?", [f"%{SQL_TAG}"])]
    assert len(tags) >= 1


def test_the_rest_of_the_catalog_is_snapshotted(world):
    products = query(world, "SELECT count(*) FROM catalog_snapshot WHERE snapshot_date = ?", [DAY])[0][0]
    assert products == world["products"] - len(bad_ids(world, "plytix"))
    findings = Counter(r[0] for r in query(world, "SELECT rule FROM catalog_quality_report WHERE report_date = ?", [DAY]))
    assert findings["missing_required_attribute"] > 0 and findings["missing_images"] > 0
