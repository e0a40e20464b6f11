"""OpenText's sandbox options (contracts/opentext.md), with the real service's defaults.

None of them is documented by OpenText: the values are the contract's inferred ones (§3, §4.3, §5).
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class OpenTextOptions(BaseModel):
    # §3: `expires_in` of issued tokens (3600 inferred); shorten it to exercise refresh.
    opentext_token_ttl_s: int = Field(3600, ge=1)
    # §4.3: seconds from submission until a job is final. Read when a status is asked for, so
    # lowering it at run time finalises jobs already submitted.
    opentext_delivery_delay_s: float = Field(2, ge=0)
    # §5: messaging token bucket per client id, and the token endpoint's own limit.
    opentext_rate_per_s: float = Field(10, gt=0)
    opentext_token_rate_per_min: int = Field(30, ge=1)
