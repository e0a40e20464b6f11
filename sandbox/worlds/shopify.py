"""The shopify world: placeholder until its sandbox service lands."""

from __future__ import annotations


def build(con, gen) -> None:
    """Nothing yet."""
