"""The code location: every asset, check, job, schedule, sensor and resource, assembled in one place."""

from __future__ import annotations

import dagster as dg

from assets.extraction import (
    photoshelter_image_changes,
    plytix_categories,
    plytix_deleted_products,
    plytix_product_changes,
)
from assets.images import product_images
from assets.quality import catalog_quality_report
from assets.snapshot import catalog_snapshot
from orchestration.resource_defs import build_resources

catalog_assets = [plytix_product_changes, plytix_categories, plytix_deleted_products, photoshelter_image_changes, catalog_snapshot,
                  product_images, catalog_quality_report]

defs = dg.Definitions(
    assets=catalog_assets,
    resources=build_resources(),
)
