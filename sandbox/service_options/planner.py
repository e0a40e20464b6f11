"""Planner's sandbox options (contracts/planner.md), with the real service's defaults."""

from __future__ import annotations

from pydantic import BaseModel


class PlannerOptions(BaseModel):
    pass
