"""The catalog assets materialised through a real Dagster instance against a fresh sandbox world,
with the findings compared rule by rule against the ground truth the generator planted."""

from __future__ import annotations

import dagster as dg
import duckdb
import httpx
import pytest
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from dagster_duckdb import DuckDBResource

from orchestration.definitions import catalog_assets
from resources.photoshelter import PhotoShelterResource
from resources.plytix import PlytixResource
from tests.conftest import start_sandbox, stop_sandbox

DAY = "2026-11-22"  # the conftest world is "as of" 2026-11-22T12:00Z: everything is in this partition
FIRST = "2026-08-01"
EXTRACTION = ["plytix_product_changes", "plytix_categories", "plytix_deleted_products", "photoshelter_image_changes"]
DERIVED = ["catalog_snapshot", "product_images", "catalog_quality_report"]
# quality rule -> the generator's ground-truth kind
RULE_TRUTH = {
    "missing_required_attribute": "missing_required",
    "missing_category_attribute": "missing_category_required",
    "channel_attribute_invalid": "channel_title_too_long",
    "missing_images": "missing_images",
    "unapproved_images": "unapproved_images",
    "no_hero_image": "no_hero_image",
    "usage_rights_expired": "expired_rights",
    "usage_rights_expiring": "expiring_rights",
    "duplicate_sku": "duplicate_sku",
    "unknown_category": "unknown_category",
    "family_mismatch": "family_mismatch",
    "missing_translation": "missing_translations",
}


def resources_for(url: str, warehouse: str) -> dict:
    return {
        "warehouse": DuckDBResource(database=warehouse),
        "plytix": PlytixResource(auth_url=f"{url}/plytix-auth", api_url=f"{url}/plytix", api_key="sandbox-plytix-key",
                                 api_password="sandbox-plytix-password", max_requests_per_second=0),
        "photoshelter": PhotoShelterResource(api_url=f"{url}/photoshelter", api_key="sandbox-ps-key",
                                             email="dam@sandbox.example", password="sandbox-ps-password",
                                             org_id="O0000SANDBOX", max_requests_per_second=0),
    }


def materialize(instance, resources: dict, selection: list[str], **kwargs) -> dg.ExecuteInProcessResult:
    return dg.materialize(catalog_assets, selection=selection, resources=resources, instance=instance, **kwargs)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    proc, url = start_sandbox()
    warehouse = str(tmp_path_factory.mktemp("warehouse") / "warehouse.duckdb")
    instance = dg.DagsterInstance.local_temp(str(tmp_path_factory.mktemp("dagster_home")))
    resources = resources_for(url, warehouse)
    range_tags = {ASSET_PARTITION_RANGE_START_TAG: FIRST, ASSET_PARTITION_RANGE_END_TAG: DAY}
    extraction = materialize(instance, resources, EXTRACTION, tags=range_tags)
    derived = materialize(instance, resources, DERIVED, partition_key=DAY)
    truth = httpx.get(f"{url}/_sandbox/ground-truth").json()
    yield {"url": url, "warehouse": warehouse, "instance": instance, "resources": resources, "truth": truth,
           "extraction": extraction, "derived": derived}
    instance.dispose()
    stop_sandbox(proc)


def query(world, sql: str, params=None):
    with duckdb.connect(world["warehouse"], read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def finding_ids(world, rule: str, day: str = DAY) -> set[str]:
    rows = query(world, "SELECT product_id FROM catalog_quality_report WHERE report_date = ? AND rule = ? "
                        "AND state <> 'resolved'", [day, rule])
    return {r[0] for r in rows}


def test_runs_succeed_and_cover_every_product(world):
    assert world["extraction"].success and world["derived"].success
    products = httpx.get(f"{world['url']}/_sandbox/health").json()["products"]
    assert query(world, "SELECT count(*) FROM catalog_snapshot WHERE snapshot_date = ?", [DAY])[0][0] == products


@pytest.mark.parametrize("rule", sorted(RULE_TRUTH))
def test_findings_match_the_planted_defects_exactly(world, rule):
    expected = set(world["truth"]["ids"].get(RULE_TRUTH[rule], []))
    assert expected, f"the world planted no {RULE_TRUTH[rule]}: the test would prove nothing"
    assert finding_ids(world, rule) == expected


def test_orphan_images_are_exactly_the_planted_ones(world):
    got = {r[0] for r in query(world, "SELECT image_id FROM orphan_images WHERE snapshot_date = ?", [DAY])}
    assert got == set(world["truth"]["ids"]["orphan_image"])


def test_publish_blocked_is_published_products_with_error_findings(world):
    expected = {r[0] for r in query(world, """
        SELECT DISTINCT s.product_id FROM catalog_snapshot s JOIN catalog_quality_report q
          ON q.product_id = s.product_id AND q.report_date = s.snapshot_date
        WHERE s.snapshot_date = ? AND q.severity = 'error' AND q.rule <> 'publish_blocked'
          AND (s.status = 'Completed' OR s.workflow_stage = 'Published')""", [DAY])}
    assert expected and finding_ids(world, "publish_blocked") == expected


def test_launch_ready_products_have_no_error_or_warning(world):
    ready = finding_ids(world, "launch_ready")
    assert ready
    overlap = query(world, """SELECT count(*) FROM catalog_quality_report WHERE report_date = ?
        AND severity IN ('error', 'warning') AND list_contains(?, product_id)""", [DAY, sorted(ready)])[0][0]
    assert overlap == 0


def test_findings_are_routed_to_owners(world):
    owners = dict(query(world, """SELECT rule, min(owner) FROM catalog_quality_report WHERE report_date = ?
        AND rule IN ('duplicate_sku', 'channel_attribute_invalid') GROUP BY rule""", [DAY]))
    assert owners == {"duplicate_sku": "data-steward@example.com",
                      "channel_attribute_invalid": "marketplaces-team@example.com"}
    by_category = dict(query(world, """SELECT category_root, min(owner) FROM catalog_quality_report
        WHERE report_date = ? AND rule = 'missing_required_attribute' GROUP BY 1""", [DAY]))
    assert by_category.get("Apparel") == "apparel-merchandising@example.com"


def test_join_never_multiplies_rows_silently(world):
    (duplicates,) = query(world, """SELECT count(*) FROM (SELECT product_id, image_id FROM product_images
        WHERE snapshot_date = ? AND image_id IS NOT NULL GROUP BY ALL HAVING count(*) > 1)""", [DAY])[0]
    assert duplicates == 0
    shared = {r[0] for r in query(world, "SELECT DISTINCT product_id FROM product_images WHERE snapshot_date = ? "
                                         "AND shared_by_duplicate_sku", [DAY])}
    assert shared and shared <= set(world["truth"]["ids"]["duplicate_sku"])


def test_every_product_with_usable_images_has_exactly_one_hero(world):
    rows = query(world, """SELECT product_id, count(*) FILTER (WHERE image_role = 'hero'), bool_or(usable)
        FROM product_images WHERE snapshot_date = ? GROUP BY product_id""", [DAY])
    assert all(heroes == (1 if usable else 0) for _, heroes, usable in rows)


def test_materialisations_carry_metadata_for_the_ui(world):
    events = {e.asset_key.to_user_string(): e.materialization.metadata
              for e in world["derived"].get_asset_materialization_events()}
    report = events["catalog_quality_report"]
    assert report["dagster/row_count"].value > 0 and "completeness_pct" in report
    assert "Top failing rules" in report["summary"].value
    assert report["new_findings"].value == report["dagster/row_count"].value  # first report: all new
    assert events["product_images"]["orphan_images"].value == len(world["truth"]["ids"]["orphan_image"])
    assert [c.name for c in events["catalog_snapshot"]["dagster/column_schema"].value.columns][:2] == [
        "snapshot_date", "product_id"]


def test_rematerialising_a_partition_gives_the_same_result(world):
    before = query(world, "SELECT rule, count(*), sum(hash(product_id)) FROM catalog_quality_report "
                          "WHERE report_date = ? GROUP BY rule ORDER BY rule", [DAY])
    again = materialize(world["instance"], world["resources"], DERIVED, partition_key=DAY)
    assert again.success
    after = query(world, "SELECT rule, count(*), sum(hash(product_id)) FROM catalog_quality_report "
                         "WHERE report_date = ? GROUP BY rule ORDER BY rule", [DAY])
    assert after == before
