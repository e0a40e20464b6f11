"""OpenText's sandbox options (contracts/opentext.md), with the real service's defaults."""

from __future__ import annotations

from pydantic import BaseModel


class OpenTextOptions(BaseModel):
    pass
