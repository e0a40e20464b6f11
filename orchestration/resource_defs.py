"""The resource dictionary: one place where the environment decides which services we talk to."""

from __future__ import annotations

from dagster_duckdb import DuckDBResource

from orchestration.settings import ProjectSettings, dagster_value, warehouse_config
from resources.opentext import OpenTextResource
from resources.photoshelter import PhotoShelterResource
from resources.planner import PlannerResource
from resources.plytix import PlytixResource
from resources.shopify import ShopifyResource
from resources.threekit import ThreekitResource


def build_resources() -> dict:
    settings = ProjectSettings()
    settings.warehouse_path.parent.mkdir(parents=True, exist_ok=True)
    return {
        "warehouse": DuckDBResource(database=str(settings.warehouse_path), connection_config=warehouse_config(settings)),
        "plytix": PlytixResource(
            auth_url=dagster_value("PLYTIX_AUTH_URL"), api_url=dagster_value("PLYTIX_API_URL"),
            api_key=dagster_value("PLYTIX_API_KEY"), api_password=dagster_value("PLYTIX_API_PASSWORD"),
        ),
        "photoshelter": PhotoShelterResource(
            api_url=dagster_value("PHOTOSHELTER_API_URL"), api_key=dagster_value("PHOTOSHELTER_API_KEY"),
            email=dagster_value("PHOTOSHELTER_EMAIL"), password=dagster_value("PHOTOSHELTER_PASSWORD"),
            org_id=dagster_value("PHOTOSHELTER_ORG_ID"),
        ),
        "planner": PlannerResource(
            login_url=dagster_value("MS_LOGIN_URL"), graph_url=dagster_value("MS_GRAPH_URL"),
            tenant_id=dagster_value("MS_TENANT_ID"), client_id=dagster_value("MS_CLIENT_ID"),
            client_secret=dagster_value("MS_CLIENT_SECRET"), plan_id=dagster_value("PLANNER_PLAN_ID"),
            # Planner's limits are unpublished: pace politely and let 429 Retry-After handle the rest.
            max_requests_per_second=8.0,
        ),
        "shopify": ShopifyResource(
            shop_url=dagster_value("SHOPIFY_SHOP_URL"), api_version=dagster_value("SHOPIFY_API_VERSION"),
            access_token=dagster_value("SHOPIFY_ACCESS_TOKEN"),
        ),
        "threekit": ThreekitResource(
            api_url=dagster_value("THREEKIT_API_URL"), org_id=dagster_value("THREEKIT_ORG_ID"),
            token=dagster_value("THREEKIT_TOKEN"),
        ),
        "opentext": OpenTextResource(
            auth_url=dagster_value("OPENTEXT_AUTH_URL"), api_url=dagster_value("OPENTEXT_API_URL"),
            tenant_id=dagster_value("OPENTEXT_TENANT_ID"), client_id=dagster_value("OPENTEXT_CLIENT_ID"),
            client_secret=dagster_value("OPENTEXT_CLIENT_SECRET"),
        ),
    }
