"""Shopify's sandbox options (contracts/shopify.md), with the real service's defaults."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from sandbox.service_options import WORLD


class ShopifyOptions(BaseModel):
    # --- the cost throttle (§7): the Standard plan's bucket, one per token ---
    shopify_bucket_size: float = Field(2000.0, gt=0)
    shopify_restore_rate: float = Field(100.0, gt=0)
    shopify_max_query_cost: int = Field(1000, ge=1)
    # 200 is Shopify's answer to THROTTLED; 429 (with Retry-After) is the variant clients must also take.
    shopify_throttle_status: Literal[200, 429] = 200
    # §6: the documented cap on objects one connection pages through.
    shopify_pagination_cap: int = Field(25_000, ge=1)
    # The custom app's granted scopes (§3); drop one to see ACCESS_DENIED.
    shopify_scopes: str = ("read_orders,read_all_orders,read_customers,read_fulfillments,read_returns,"
                           "read_inventory,read_locations,read_products")
    # §9.2: the app's client secret the sandbox signs webhooks with.
    shopify_webhook_secret: str = "sandbox-webhook-secret"

    # --- the world (orders tied to the catalog's SKUs; changing any rebuilds the world) ---
    shopify_orders_per_product: float = Field(0.5, ge=0, le=20, json_schema_extra=WORLD)
    shopify_checkouts_per_order: float = Field(0.2, ge=0, le=5, json_schema_extra=WORLD)
    shopify_large_order_threshold: float = Field(1000.0, gt=0, json_schema_extra=WORLD)
    shopify_low_stock_threshold: int = Field(5, ge=0, json_schema_extra=WORLD)
    share_shopify_high_risk: float = Field(0.03, ge=0, le=1)
    share_shopify_payment_pending: float = Field(0.03, ge=0, le=1)
    share_shopify_large: float = Field(0.02, ge=0, le=1)
    share_shopify_declined_payment: float = Field(0.03, ge=0, le=1)
    share_shopify_returned: float = Field(0.04, ge=0, le=1)
    share_shopify_fulfillment_exception: float = Field(0.03, ge=0, le=1)
    share_shopify_address_review: float = Field(0.01, ge=0, le=1)
    # Orders cancelled after a declined card whose buyer then left a checkout behind.
    share_shopify_abandoned_after_failed_payment: float = Field(0.01, ge=0, le=1)
    share_shopify_low_stock: float = Field(0.02, ge=0, le=1)
    share_shopify_vip_customers: float = Field(0.1, ge=0, le=1)
