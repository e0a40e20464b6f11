"""The code location: every asset, check, job, schedule, sensor and resource, assembled in one place."""

from __future__ import annotations

import dagster as dg

from assets.commerce_notifications import commerce_assets, commerce_job, commerce_refresh_schedule
from assets.configurator_notifications import configurator_assets
from assets.extraction import (
    photoshelter_image_changes,
    plytix_categories,
    plytix_deleted_products,
    plytix_product_changes,
)
from assets.images import product_images
from assets.launch_packages import launch_packages
from assets.notifications import catalog_notifications
from assets.planner_tasks import planner_tasks
from assets.quality import catalog_quality_report
from assets.snapshot import catalog_snapshot
from assets.sync_assets import photoshelter_keyword_sync, plytix_image_sync
from orchestration.automation import (
    catalog_job_for,
    daily_schedule,
    notification_delivery_job,
    notification_delivery_schedule,
    plytix_changes_sensor_for,
)
from orchestration.resource_defs import build_resources
from sensors.planner_completions import advance_stage_job, planner_completed_tasks
from sensors.run_alerts import materialisation_alerts, run_alert_job
from sensors.threekit_sensors import configurator_job, threekit_changes_sensor, threekit_webhook_sensor
from sensors.webhook_inbox import shopify_webhook_job, webhook_inbox_sensor

catalog_assets = [plytix_product_changes, plytix_categories, plytix_deleted_products, photoshelter_image_changes, catalog_snapshot,
                  product_images, catalog_quality_report]

# Everything that writes to people's tools: tasks, notifications, and the two syncs.
action_assets = [catalog_notifications, planner_tasks, plytix_image_sync, photoshelter_keyword_sync, launch_packages]

catalog_daily_job = catalog_job_for([*catalog_assets, *action_assets, *configurator_assets])

defs = dg.Definitions(
    assets=[*catalog_assets, *action_assets, *commerce_assets, *configurator_assets],
    jobs=[catalog_daily_job, advance_stage_job, notification_delivery_job, run_alert_job, commerce_job,
          shopify_webhook_job, configurator_job],
    schedules=[daily_schedule(catalog_daily_job), notification_delivery_schedule, commerce_refresh_schedule],
    sensors=[planner_completed_tasks, plytix_changes_sensor_for(catalog_daily_job), materialisation_alerts,
             webhook_inbox_sensor, threekit_changes_sensor, threekit_webhook_sensor],
    resources=build_resources(),
)
