"""PhotoShelter PSAPI v3 emulation (photoshelter.md). Placeholder until the service is written."""

from __future__ import annotations

import json

from sandbox.services import ServiceDef


def routes(state):
    return []


def error_renderer(status: int):
    return {}, json.dumps({"status": "error", "message": "Service temporarily unavailable",
                           "code": "ServiceUnavailable"}).encode()


SERVICE = ServiceDef(prefix="photoshelter", routes=routes, error_renderer=error_renderer)
