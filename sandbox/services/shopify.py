"""Shopify Admin GraphQL emulation: placeholder until it lands."""

from __future__ import annotations

from sandbox.services import ServiceDef, json_error_renderer

SERVICE = ServiceDef(prefix="shopify", routes=lambda state: [], error_renderer=json_error_renderer)
