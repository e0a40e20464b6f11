"""OpenText Notifications emulation: placeholder until it lands."""

from __future__ import annotations

from sandbox.services import ServiceDef, json_error_renderer

AUTH_SERVICE = ServiceDef(prefix="opentext-auth", routes=lambda state: [], error_renderer=json_error_renderer)
SERVICE = ServiceDef(prefix="opentext", routes=lambda state: [], error_renderer=json_error_renderer)
