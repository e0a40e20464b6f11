"""Threekit's sandbox options (contracts/threekit.md), with the real service's defaults.

`threekit_rate_limit_rps` is the service's limit (§6). The rest are world knobs: how much of the
catalog is configurable in Threekit, how many configurations and orders there are, and the share of
each planted defect (`sandbox/worlds/threekit.py` writes the ground truth for every one).
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from sandbox.service_options import WORLD


class ThreekitOptions(BaseModel):
    # Requests per second per token, sliding over 1 s (threekit.md §6).
    threekit_rate_limit_rps: int = Field(20, ge=1)

    # --- world ---
    share_threekit_configurable_styles: float = Field(0.5, ge=0, le=1)  # styles with a Threekit item
    threekit_configurations_per_100_products: int = Field(50, ge=0, json_schema_extra=WORLD)
    threekit_orders_per_100_products: int = Field(15, ge=0, json_schema_extra=WORLD)
    # Configurations priced above this (in any currency) are planted as `threekit_config_needs_review`;
    # item prices are drawn clear of it on both sides so the currency never changes the answer.
    threekit_review_threshold: float = Field(2500.0, gt=0, json_schema_extra=WORLD)
    share_threekit_premium_items: float = Field(0.06, ge=0, le=1)  # items priced above the threshold
    share_threekit_missing_price: float = Field(0.04, ge=0, le=1)  # items lacking a pricebook price
    share_threekit_broken_sku_ref: float = Field(0.02, ge=0, le=1)  # item SKU not in Plytix
    share_threekit_broken_image_ref: float = Field(0.02, ge=0, le=1)  # item image id not in PhotoShelter
    share_threekit_config_missing_price: float = Field(0.03, ge=0, le=1)  # no `metadata.price`
    share_threekit_config_invalid_option: float = Field(0.02, ge=0, le=1)  # a value the item does not offer
    share_threekit_unpublished_models: float = Field(0.1, ge=0, le=1)  # publishedAt null or < updatedAt
