"""Materialise the catalog for the demo: every extraction partition up to the latest in one run,
then the snapshot, the image join and the quality report for the latest partition, then the actions
(notifications, Planner tasks, the syncs, launch packages) for it, so the sandbox's recorded writes
show what the project did.

Runs against the instance in DAGSTER_HOME, so the runs and their metadata show in the UI.
"""

from __future__ import annotations

import sys

import dagster as dg
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from assets.commerce_notifications import commerce_assets
from orchestration.definitions import action_assets, catalog_assets, configurator_assets
from orchestration.partitions import daily_partitions
from orchestration.resource_defs import build_resources

EXTRACTION = ["plytix_product_changes", "plytix_categories", "plytix_deleted_products", "photoshelter_image_changes"]
DERIVED = ["catalog_snapshot", "product_images", "catalog_quality_report"]


def main() -> int:
    first, latest = daily_partitions.get_first_partition_key(), daily_partitions.get_last_partition_key()
    with dg.DagsterInstance.get() as instance:
        resources = build_resources()
        extraction = dg.materialize(catalog_assets, selection=EXTRACTION, instance=instance, resources=resources,
                                    tags={ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: latest})
        if not extraction.success:
            return 1
        derived = dg.materialize(catalog_assets, selection=DERIVED, instance=instance, resources=resources,
                                 partition_key=latest)
        if not derived.success:
            return 1
        failed = 0
        for group in (action_assets, configurator_assets, commerce_assets):  # the actions, then Threekit and Shopify
            result = dg.materialize([*catalog_assets, *group], selection=[k for a in group for k in a.keys],
                                    instance=instance, resources=resources, partition_key=latest,
                                    raise_on_error=False)
            failed += not result.success
        return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
