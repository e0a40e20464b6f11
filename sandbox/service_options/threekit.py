"""Threekit's sandbox options (contracts/threekit.md), with the real service's defaults."""

from __future__ import annotations

from pydantic import BaseModel


class ThreekitOptions(BaseModel):
    pass
