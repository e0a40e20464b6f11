"""A failed extraction leaves nothing that looks complete, and its retry resumes where it stopped."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import duckdb
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from resources.photoshelter import PhotoShelterClient, PhotoShelterResource
from tests.assets.test_catalog_assets import DAY, FIRST, materialize, resources_for

RANGE = {ASSET_PARTITION_RANGE_START_TAG: FIRST, ASSET_PARTITION_RANGE_END_TAG: DAY}


def test_a_failed_walk_is_not_swapped_in_and_the_retry_resumes(sandbox, tmp_path):
    # The world as generated: an image another test changed "today" lies past DAY, outside RANGE.
    sandbox.admin.post("/_sandbox/reset").raise_for_status()
    walk = [g["gallery_id"] for g in PhotoShelterClient(
        f"{sandbox.url}/photoshelter", "sandbox-ps-key", "dam@sandbox.example", "sandbox-ps-password",
        "O0000SANDBOX", max_requests_per_second=None).iter_galleries()]
    broken = walk[len(walk) // 2]
    warehouse = str(tmp_path / "warehouse.duckdb")
    resources = {**resources_for(sandbox.url, warehouse),
                 "photoshelter": PhotoShelterResource(api_url=f"{sandbox.url}/photoshelter", api_key="sandbox-ps-key",
                                                      email="dam@sandbox.example", password="sandbox-ps-password",
                                                      org_id="O0000SANDBOX", max_requests_per_second=0,
                                                      max_attempts=2)}
    instance = dg.DagsterInstance.ephemeral()
    sandbox.fault("photoshelter", error_rate=1.0, error_statuses=[500], path_contains=f"/gallery/{broken}/images")

    failed = materialize(instance, resources, ["photoshelter_image_changes"], tags=RANGE, raise_on_error=False)
    assert not failed.success
    assert "photoshelter GET /psapi/v3/mem/gallery/" in str(failed.get_step_failure_events()[0].event_specific_data.error)
    with duckdb.connect(warehouse) as con:  # nothing swapped in: no partition looks complete
        tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        assert "photoshelter_image_changes" not in tables or con.execute(
            "SELECT count(*) FROM photoshelter_image_changes").fetchone() == (0,)
    assert list((Path(warehouse).parent / "staging").glob("photoshelter_image_changes-*.duckdb"))

    sandbox.restore()
    resumed = materialize(instance, resources, ["photoshelter_image_changes"], tags=RANGE)
    metadata = resumed.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["resumed"].value is True
    # The retry walked only the galleries the failed attempts had not finished.
    assert metadata["units_read"].value == len(walk) - walk.index(broken)
    with duckdb.connect(warehouse) as con:
        images = con.execute("SELECT count(*), count(DISTINCT image_id) FROM photoshelter_image_changes").fetchone()
    assert images == (sandbox.health()["images"],) * 2
    assert not list((Path(warehouse).parent / "staging").glob("*.duckdb"))
