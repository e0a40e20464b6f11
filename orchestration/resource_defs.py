"""The resource dictionary: one place where the environment decides which services we talk to."""

from __future__ import annotations

from dagster_duckdb import DuckDBResource

from orchestration.settings import ProjectSettings, dagster_value
from resources.photoshelter import PhotoShelterResource
from resources.plytix import PlytixResource


def build_resources() -> dict:
    settings = ProjectSettings()
    settings.warehouse_path.parent.mkdir(parents=True, exist_ok=True)
    return {
        "warehouse": DuckDBResource(database=str(settings.warehouse_path)),
        "plytix": PlytixResource(
            auth_url=dagster_value("PLYTIX_AUTH_URL"), api_url=dagster_value("PLYTIX_API_URL"),
            api_key=dagster_value("PLYTIX_API_KEY"), api_password=dagster_value("PLYTIX_API_PASSWORD"),
        ),
        "photoshelter": PhotoShelterResource(
            api_url=dagster_value("PHOTOSHELTER_API_URL"), api_key=dagster_value("PHOTOSHELTER_API_KEY"),
            email=dagster_value("PHOTOSHELTER_EMAIL"), password=dagster_value("PHOTOSHELTER_PASSWORD"),
            org_id=dagster_value("PHOTOSHELTER_ORG_ID"),
        ),
    }
