"""Start options of the sandbox: the knobs a contract names, with the real services' defaults.

Every option can be set at start (`--set NAME=VALUE`) or at run time (`POST /_sandbox/config`).
Unknown names are refused with a clear error, so a typo never silently runs the default.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import ConfigDict, Field, ValidationError

from sandbox.service_options.opentext import OpenTextOptions
from sandbox.service_options.planner import PlannerOptions
from sandbox.service_options.shopify import ShopifyOptions
from sandbox.service_options.threekit import ThreekitOptions


class SandboxOptions(ShopifyOptions, ThreekitOptions, PlannerOptions, OpenTextOptions):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # --- world (the generator; changing these needs a reset) ---
    seed: int = 7
    products: int = Field(2000, ge=1, le=1_000_000)
    images_per_product: int = Field(3, ge=0, le=10)
    # The instant the world is generated "as of": modified dates fall in the days before it.
    # Empty means the sandbox's start time, so the demo's latest partition always has data.
    world_now: str = ""
    history_days: int = Field(30, ge=1, le=3650)
    # Products sharing one `modified` instant (an import burst), exercising Plytix's 10 000 cap.
    burst_size: int = Field(150, ge=0)
    share_missing_required: float = Field(0.04, ge=0, le=1)
    share_missing_category_required: float = Field(0.03, ge=0, le=1)
    share_channel_title_too_long: float = Field(0.02, ge=0, le=1)
    share_duplicate_sku: float = Field(0.01, ge=0, le=1)
    share_missing_images: float = Field(0.03, ge=0, le=1)
    share_unapproved_images: float = Field(0.04, ge=0, le=1)
    share_expired_rights: float = Field(0.03, ge=0, le=1)
    share_expiring_rights: float = Field(0.02, ge=0, le=1)
    share_orphan_images: float = Field(0.02, ge=0, le=1)
    share_unknown_category: float = Field(0.01, ge=0, le=1)
    share_family_mismatch: float = Field(0.02, ge=0, le=1)
    share_missing_translations: float = Field(0.04, ge=0, le=1)

    # The sandbox's own clock for write timestamps (a PATCH's `modified`, an image's `updated_at`):
    # empty is real time; an ISO instant starts a clock there that then runs at real speed, so tests
    # can make "tomorrow's" changes without waiting a day.
    sandbox_clock: str = ""

    # --- Plytix (plytix.md) ---
    plytix_token_ttl_s: int = Field(900, ge=1)
    plytix_rate_per_10s: int = Field(20, ge=1)
    plytix_rate_per_hour: int = Field(15_000, ge=1)
    plytix_auth_rate_per_s: int = Field(8, ge=1)
    plytix_sort_cap: int = Field(10_000, ge=1)

    # --- PhotoShelter (photoshelter.md) ---
    photoshelter_session_idle_ttl_s: int = Field(1800, ge=1)
    photoshelter_session_max_ttl_s: int = Field(43_200, ge=1)
    photoshelter_rate_per_s: float = Field(10, gt=0)
    photoshelter_auth_rate_per_min: int = Field(10, ge=1)
    photoshelter_max_per_page: int = Field(1500, ge=1)
    # A 500 for any gallery page beyond this number (0 = off): the real service's deep-paging flake.
    photoshelter_fail_beyond_page: int = Field(0, ge=0)

    def anchor(self) -> datetime:
        if self.world_now:
            parsed = datetime.fromisoformat(self.world_now.replace("Z", "+00:00"))
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        return datetime.now(UTC).replace(second=0, microsecond=0)


WORLD_OPTIONS = {
    name for name, info in SandboxOptions.model_fields.items()
    if name == "seed" or name.startswith(("products", "images_", "world_", "history_", "burst_", "share_"))
    or (isinstance(info.json_schema_extra, dict) and info.json_schema_extra.get("world"))
}


class OptionError(ValueError):
    """A start or run-time option the sandbox does not know, or a value it cannot take."""


def parse_assignments(pairs: list[str]) -> dict[str, str]:
    """Turn `NAME=VALUE` strings from the command line into a dict, refusing malformed ones."""
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise OptionError(f"--set expects NAME=VALUE, got {pair!r}")
        out[name.strip()] = value.strip()
    return out


def apply_options(options: SandboxOptions, changes: dict[str, Any]) -> SandboxOptions:
    """Return a copy of `options` with `changes` applied, naming any unknown or invalid option."""
    unknown = sorted(set(changes) - set(SandboxOptions.model_fields))
    if unknown:
        known = ", ".join(sorted(SandboxOptions.model_fields))
        raise OptionError(f"unknown sandbox option(s): {', '.join(unknown)}. Known options: {known}")
    try:
        return SandboxOptions.model_validate({**options.model_dump(), **changes})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise OptionError(f"invalid sandbox option value: {problems}") from None
