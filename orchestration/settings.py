"""Where the project reads its configuration: the contracts' env vars, with sandbox defaults.

Unset means sandbox. `SANDBOX_URL` moves every default base URL at once (tests start the sandbox
on a free port); a service's own URL variable always wins. Secrets are handed to Dagster as
`EnvVar` when set, so the UI and logs show the variable's name, never its value.
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

import dagster as dg
from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SANDBOX_URL = "http://127.0.0.1:8765"

# variable -> (sandbox path prefix for URLs | None, sandbox default value for everything else)
SERVICE_ENV: dict[str, tuple[str | None, str]] = {
    "PLYTIX_AUTH_URL": ("/plytix-auth", ""),
    "PLYTIX_API_URL": ("/plytix", ""),
    "PLYTIX_API_KEY": (None, "sandbox-plytix-key"),
    "PLYTIX_API_PASSWORD": (None, "sandbox-plytix-password"),
    "PHOTOSHELTER_API_URL": ("/photoshelter", ""),
    "PHOTOSHELTER_API_KEY": (None, "sandbox-ps-key"),
    "PHOTOSHELTER_EMAIL": (None, "dam@sandbox.example"),
    "PHOTOSHELTER_PASSWORD": (None, "sandbox-ps-password"),
    "PHOTOSHELTER_ORG_ID": (None, "O0000SANDBOX"),
    "SHOPIFY_SHOP_URL": ("/shopify", ""),
    "SHOPIFY_API_VERSION": (None, "2026-01"),
    "SHOPIFY_ACCESS_TOKEN": (None, "shpat_sandbox"),
    "SHOPIFY_WEBHOOK_SECRET": (None, "sandbox-webhook-secret"),
    "THREEKIT_API_URL": ("/threekit", ""),
    "THREEKIT_ORG_ID": (None, "00000000-0000-4000-8000-000000000001"),
    "THREEKIT_TOKEN": (None, "sandbox-threekit-token"),
    "MS_LOGIN_URL": ("/msauth", ""),
    "MS_GRAPH_URL": ("/graph", ""),
    "MS_TENANT_ID": (None, "sandbox-tenant"),
    "MS_CLIENT_ID": (None, "sandbox-client"),
    "MS_CLIENT_SECRET": (None, "sandbox-secret"),
    "PLANNER_PLAN_ID": (None, "sandboxPlanAAAAAAAAAAAAAAAAA"),
    "OPENTEXT_AUTH_URL": ("/opentext-auth", ""),
    "OPENTEXT_API_URL": ("/opentext", ""),
    "OPENTEXT_TENANT_ID": (None, "sandbox-tenant"),
    "OPENTEXT_CLIENT_ID": (None, "sandbox-ot-client"),
    "OPENTEXT_CLIENT_SECRET": (None, "sandbox-ot-secret"),
}
SECRETS = {"PLYTIX_API_KEY", "PLYTIX_API_PASSWORD", "PHOTOSHELTER_API_KEY", "PHOTOSHELTER_PASSWORD",
           "SHOPIFY_ACCESS_TOKEN", "SHOPIFY_WEBHOOK_SECRET", "THREEKIT_TOKEN", "MS_CLIENT_SECRET",
           "OPENTEXT_CLIENT_SECRET"}
# The prefixes of every service variable, so tests can clear a developer's environment.
SERVICE_ENV_PREFIXES = ("PLYTIX_", "PHOTOSHELTER_", "SHOPIFY_", "THREEKIT_", "MS_", "PLANNER_", "OPENTEXT_")


def sandbox_url() -> str:
    return os.environ.get("SANDBOX_URL", DEFAULT_SANDBOX_URL).rstrip("/")


def env_value(name: str) -> str:
    """The variable's value, or its sandbox default. For code outside Dagster (CLI, tests)."""
    prefix, default = SERVICE_ENV[name]
    if os.environ.get(name):
        return os.environ[name]
    return sandbox_url() + prefix if prefix else default


def dagster_value(name: str) -> str | dg.EnvVar:
    """For resource config: an `EnvVar` when the variable is set (resolved at run time, never shown),
    else the sandbox default. Only the variable's presence is read here, never its value."""
    if os.environ.get(name):
        return dg.EnvVar(name)
    return env_value(name)


class ProjectSettings(BaseSettings):
    """Project-level settings (not service credentials), from `CATALOG_OPS_*` variables."""

    model_config = SettingsConfigDict(env_prefix="CATALOG_OPS_", extra="ignore")

    warehouse_path: Path = Path("var/warehouse.duckdb")
    # DuckDB's memory limit per process: above it, joins and sorts spill to disk instead of growing.
    # 1200MB keeps a 1M-product build under 1.5 GiB RSS at ~15 % more time (README, Performance);
    # empty means DuckDB's own default, 80 % of the machine's memory.
    warehouse_memory_limit: str = "1200MB"
    partitions_start: date = date(2026, 8, 1)
    rules_path: Path | None = None
    # Delay before Dagster retries a failed extraction (then doubled, with jitter); the retry resumes.
    extraction_retry_delay_s: float = 30.0
    # Action assets compute and audit their plan but write nothing (per run: the `dry_run` run config).
    dry_run: bool = False
    # Action assets (notifications, tasks, syncs) act on partitions at most this many days old; a
    # backfill of older days rebuilds the warehouse without paging people about last quarter.
    actions_max_age_days: int = 2
    # DAGSTER_UI_URL is the contracts' public name for it.
    dagster_ui_url: str = Field("http://127.0.0.1:3000",
                                validation_alias=AliasChoices("DAGSTER_UI_URL", "CATALOG_OPS_DAGSTER_UI_URL"))


def warehouse_config(settings: ProjectSettings | None = None) -> dict[str, str]:
    """The DuckDB settings every warehouse connection opens with (the resource's and the bench's)."""
    limit = (settings or ProjectSettings()).warehouse_memory_limit.strip()
    return {"memory_limit": limit} if limit else {}
