"""Microsoft identity platform and Graph Planner emulation: placeholder until it lands."""

from __future__ import annotations

from sandbox.services import ServiceDef, json_error_renderer

AUTH_SERVICE = ServiceDef(prefix="msauth", routes=lambda state: [], error_renderer=json_error_renderer)
SERVICE = ServiceDef(prefix="graph", routes=lambda state: [], error_renderer=json_error_renderer)
