"""Planner's sandbox options (contracts/planner.md), with the real service's defaults.

Planner's own limits are unpublished: the values below are the contract's (§3, §4.2, §5), the
fault knob is the sandbox's own (§7 "concurrent edit").
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from sandbox.service_options import WORLD


class PlannerOptions(BaseModel):
    # §3: `expires_in` of issued tokens; shorten it to exercise refresh.
    msauth_token_ttl_s: int = Field(3599, ge=1)
    # §4.2: the service's fixed page size for plan task and bucket lists (`$top` is ignored).
    planner_page_size: int = Field(400, ge=1)
    # §5: token bucket per client id; a 429's Retry-After is the time to the next slot (3 decimals).
    planner_rate_per_s: float = Field(10, gt=0)
    # §7 fault: share of PATCHes whose resource is changed by "someone else" just before the
    # If-Match check (never twice in a row on one resource, so one re-read always suffices).
    planner_concurrent_edit_rate: float = Field(0, ge=0, le=1)
    # People's own tasks in the plan (no marker, created by a person): the project must leave them alone.
    planner_people_tasks: int = Field(4, ge=0, le=1000, json_schema_extra=WORLD)
