"""The sandbox ASGI app: one server, a path prefix per real host, and the `/_sandbox` admin API."""

from __future__ import annotations

import json
import uuid

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route

from sandbox import webhooks
from sandbox.faults import FaultMiddleware, FaultSpec
from sandbox.options import WORLD_OPTIONS, OptionError, SandboxOptions, apply_options
from sandbox.services import opentext, photoshelter, planner, plytix, shopify, threekit
from sandbox.state import SandboxState

SERVICES = (plytix.SERVICE, plytix.AUTH_SERVICE, photoshelter.SERVICE, shopify.SERVICE, threekit.SERVICE,
            planner.AUTH_SERVICE, planner.SERVICE, opentext.AUTH_SERVICE, opentext.SERVICE)
PREFIXES = {f"/{svc.prefix}": svc for svc in SERVICES}


def service_of(path: str) -> str | None:
    first = "/" + path.lstrip("/").split("/", 1)[0]
    svc = PREFIXES.get(first)
    return svc.prefix if svc else None


def admin_routes(state: SandboxState) -> list[Route]:
    async def health(request: Request) -> Response:
        counts = state.con.execute(
            "SELECT (SELECT count(*) FROM products), (SELECT count(*) FROM images)"
        ).fetchone()
        return JSONResponse({"status": "ok", "seed": state.options.seed, "products": counts[0],
                             "images": counts[1], "world_now": state.anchor.isoformat()})

    async def config(request: Request) -> Response:
        if request.method == "POST":
            changes = await _json(request)
            if not isinstance(changes, dict):
                return JSONResponse({"error": "body must be a JSON object"}, status_code=400)
            try:
                state.options = apply_options(state.options, changes)
            except OptionError as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            if WORLD_OPTIONS & set(changes):
                state.build()  # a different world was asked for
        return JSONResponse(state.options.model_dump())

    async def faults(request: Request) -> Response:
        if request.method == "POST":
            body = await _json(request)
            service = body.pop("service", None) if isinstance(body, dict) else None
            if service not in {svc.prefix for svc in SERVICES}:
                return JSONResponse({"error": f"unknown service {service!r}"}, status_code=400)
            try:
                state.faults.set(service, FaultSpec.model_validate(body))
            except ValidationError as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
        elif request.method == "DELETE":
            state.faults.clear(request.query_params.get("service"))
        return JSONResponse({"faults": {k: v.model_dump() for k, v in state.faults.specs.items()},
                             "injected": state.faults.injected})

    async def writes(request: Request) -> Response:
        return JSONResponse({"writes": state.writes(request.query_params.get("service"))})

    async def reset(request: Request) -> Response:
        state.reset()
        return JSONResponse({"status": "reset"})

    async def ground_truth(request: Request) -> Response:
        truth = state.ground_truth()
        return JSONResponse({"world_now": state.anchor.isoformat(), "options": state.options.model_dump(),
                             "counts": {k: len(v) for k, v in truth.items()}, "ids": truth})

    async def expire_tokens(request: Request) -> Response:
        """Expire every issued token/session of a service now, to test refresh mid-run."""
        body = await _json(request)
        service = body.get("service") if isinstance(body, dict) else None
        for svc in SERVICES:
            if svc.prefix == service and svc.expire_tokens:
                svc.expire_tokens(state)
                return JSONResponse({"expired": service})
        return JSONResponse({"error": f"unknown service {service!r}"}, status_code=400)

    async def delete_product(request: Request) -> Response:
        """Plays a person deleting a product in the Plytix app (the v1 contract has no delete call)."""
        product_id = request.path_params["product_id"]
        deleted = state.con.execute("DELETE FROM products WHERE id = ? RETURNING id", [product_id]).fetchall()
        if not deleted:
            return JSONResponse({"error": f"no product {product_id}"}, status_code=404)
        return JSONResponse({"deleted": product_id})

    async def rename_product(request: Request) -> Response:
        """Plays a person changing a product's SKU in the Plytix app (a v1 PATCH ignores `sku`)."""
        body = await _json(request)
        sku = body.get("sku") if isinstance(body, dict) else None
        if not isinstance(sku, str) or not sku:
            return JSONResponse({"error": "body must be {\"sku\": \"<new SKU>\"}"}, status_code=400)
        renamed = state.con.execute("UPDATE products SET sku = ?, modified = ? WHERE id = ? RETURNING id",
                                    [sku, state.now(), request.path_params["product_id"]]).fetchall()
        if not renamed:
            return JSONResponse({"error": f"no product {request.path_params['product_id']}"}, status_code=404)
        return JSONResponse({"renamed": renamed[0][0], "sku": sku})

    return [
        Route("/_sandbox/plytix/products/{product_id}/delete", delete_product, methods=["POST"]),
        Route("/_sandbox/plytix/products/{product_id}/sku", rename_product, methods=["POST"]),
        Route("/_sandbox/health", health),
        Route("/_sandbox/config", config, methods=["GET", "POST"]),
        Route("/_sandbox/faults", faults, methods=["GET", "POST", "DELETE"]),
        Route("/_sandbox/writes", writes),
        Route("/_sandbox/reset", reset, methods=["POST"]),
        Route("/_sandbox/ground-truth", ground_truth),
        Route("/_sandbox/tokens/expire", expire_tokens, methods=["POST"]),
    ]


async def _json(request: Request):
    try:
        return json.loads(await request.body() or b"{}")
    except json.JSONDecodeError:
        return None


class ServiceHeaders:
    """Adds a service's own response headers (request ids) and 301s trailing slashes as the
    real hosts do; the 301's follow-up loses `Authorization` in real clients, hence 401."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        svc = PREFIXES.get("/" + path.lstrip("/").split("/", 1)[0])
        if svc and svc.redirect_trailing_slash and path.endswith("/") and path.count("/") > 2:
            query = scope.get("query_string", b"").decode()
            location = path.rstrip("/") + (f"?{query}" if query else "")
            return await RedirectResponse(location, status_code=301)(scope, receive, send)
        if not svc or not svc.request_id_header:
            return await self.app(scope, receive, send)
        header = (svc.request_id_header.lower().encode(), uuid.uuid4().hex.encode())

        async def with_id(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), header]}
            await send(message)

        return await self.app(scope, receive, with_id)


def create_app(options: SandboxOptions | None = None) -> Starlette:
    state = SandboxState(options or SandboxOptions())
    routes = admin_routes(state) + webhooks.admin_routes(state)
    routes += [route for svc in SERVICES if svc.admin_routes for route in svc.admin_routes(state)]
    routes += [Mount(f"/{svc.prefix}", routes=svc.routes(state)) for svc in SERVICES]
    app = Starlette(routes=routes)
    app.router.redirect_slashes = False
    app.state.sandbox = state
    app.add_middleware(FaultMiddleware, faults=state.faults, service_of=service_of,
                       renderers={svc.prefix: svc.error_renderer for svc in SERVICES})
    app.add_middleware(ServiceHeaders)
    return app
