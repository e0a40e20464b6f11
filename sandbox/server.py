"""Runs the sandbox with uvicorn: `catalog-ops sandbox --port 8765 --seed 7 --products 2000`."""

from __future__ import annotations

import logging

import uvicorn

from sandbox.app import create_app
from sandbox.options import SandboxOptions

log = logging.getLogger("sandbox")


def serve(options: SandboxOptions, host: str = "127.0.0.1", port: int = 8765, faults: dict | None = None) -> None:
    app = create_app(options)
    for service, spec in (faults or {}).items():
        from sandbox.faults import FaultSpec

        app.state.sandbox.faults.set(service, FaultSpec.model_validate(spec))
    log.info("sandbox: %d products, seed %d, on http://%s:%d", options.products, options.seed, host, port)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
