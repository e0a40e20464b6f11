"""Shopify's sandbox options (contracts/shopify.md), with the real service's defaults."""

from __future__ import annotations

from pydantic import BaseModel


class ShopifyOptions(BaseModel):
    pass
