"""Outgoing webhooks (shopify.md §9.4, threekit.md §5): placeholder until it lands."""

from __future__ import annotations


def admin_routes(state) -> list:
    return []
