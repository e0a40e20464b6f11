"""One module per emulated service; each exposes `SERVICE` (and an `AUTH_SERVICE` where the real
service authenticates on a host of its own)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class ServiceDef:
    prefix: str  # the path prefix that stands for the real host (contracts/README.md)
    routes: Callable  # (SandboxState) -> list[Route]
    error_renderer: Callable  # (status) -> (headers, body) in the service's own error shape
    request_id_header: str | None = None
    expire_tokens: Callable | None = None  # (SandboxState) -> None
    # (SandboxState) -> list[Route] mounted at the root: the service's `/_sandbox/<service>/...` calls
    admin_routes: Callable | None = None
    # The real hosts 301 a trailing slash; a service whose contract serves both forms opts out.
    redirect_trailing_slash: bool = True


def json_error_renderer(status: int) -> tuple[dict[str, str], bytes]:
    """A neutral JSON error body, for services whose contract gives no shape for injected errors."""
    return {}, json.dumps({"error": {"code": str(status), "message": f"injected {status}"}}).encode()
