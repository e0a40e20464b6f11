"""The sync assets: Plytix <- PhotoShelter (approved images, usage rights) and PhotoShelter <- Plytix
(keywords). Planning is in `catalog_sync`; these run it for the recent days of a partition range."""


import dagster as dg
from dagster_duckdb import DuckDBResource

from assets.audit import ActionConfig, AuditLog, acting_days
from assets.catalog_sync import apply_image_sync, apply_keyword_sync, plan_image_sync, plan_keyword_sync
from assets.images import product_images
from assets.rules import load_rules
from assets.warehouse import ensure_tables
from orchestration.partitions import daily_partitions
from orchestration.settings import ProjectSettings
from resources.photoshelter import PhotoShelterResource
from resources.plytix import PlytixResource

ACTION_POLICY = dict(partitions_def=daily_partitions, backfill_policy=dg.BackfillPolicy.single_run(),
                     pool="duckdb_warehouse", group_name="actions")


@dg.asset(deps=[product_images], kinds={"plytix", "duckdb"}, owners=["team:content-operations"],
          description="Approved PhotoShelter images (hero, alternates) and their usage rights (channels, market, "
                      "expiry) written into the matching Plytix products whose images changed on D; only differences "
                      "(the warehouse narrows the candidates, the product as it stands decides the writes).",
          **ACTION_POLICY)
def plytix_image_sync(context: dg.AssetExecutionContext, config: ActionConfig, warehouse: DuckDBResource,
                      plytix: PlytixResource, photoshelter: PhotoShelterResource) -> dg.MaterializeResult:
    stages = load_rules(ProjectSettings().rules_path).images.sync_stages
    days, skipped = acting_days(context)
    planned = written = 0
    with warehouse.get_connection() as con:
        ensure_tables(con)
        audit = AuditLog(con, context.run.run_id, context.asset_key.to_user_string(), config.dry_run)
        for day in days:
            changes = plan_image_sync(con, day, stages)
            planned += len(changes)
            written += sum(bool(apply_image_sync(plytix.get_client(), photoshelter.get_client(), audit, change))
                           for change in changes)
    return dg.MaterializeResult(metadata={"products_checked": planned, "products_written": written,
                                          "skipped_old_days": skipped, **audit.metadata()})


@dg.asset(deps=[product_images], kinds={"photoshelter", "duckdb"}, owners=["team:content-operations"],
          description="Product attributes (SKU, name, category, color, size, launch status) merged into the "
                      "keywords of the images matched by SKU, for products or images changed on D; only "
                      "missing keywords are written.",
          **ACTION_POLICY)
def photoshelter_keyword_sync(context: dg.AssetExecutionContext, config: ActionConfig, warehouse: DuckDBResource,
                              photoshelter: PhotoShelterResource) -> dg.MaterializeResult:
    days, skipped = acting_days(context)
    planned = written = 0
    with warehouse.get_connection() as con:
        ensure_tables(con)
        audit = AuditLog(con, context.run.run_id, context.asset_key.to_user_string(), config.dry_run)
        for day in days:
            plan = plan_keyword_sync(con, day)
            planned += len(plan)
            written += sum(apply_keyword_sync(photoshelter.get_client(), audit, image_id, keywords)
                           for image_id, keywords in plan)
    return dg.MaterializeResult(metadata={"images_missing_keywords": planned, "images_written": written,
                                          "skipped_old_days": skipped, **audit.metadata()})
