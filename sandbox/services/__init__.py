"""One module per emulated service; each exposes `SERVICE` (and Plytix its auth host too)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class ServiceDef:
    prefix: str  # the path prefix that stands for the real host (contracts/README.md)
    routes: Callable  # (SandboxState) -> list[Route]
    error_renderer: Callable  # (status) -> (headers, body) in the service's own error shape
    request_id_header: str | None = None
    expire_tokens: Callable | None = None  # (SandboxState) -> None
