"""Shopify Admin GraphQL emulation (shopify.md): auth, the versioned endpoint, validation against the
shipped schema, the cost throttle, and Shopify's own error shapes.

A request goes: token (401) → body (400 without `query`) → parse and validate (§8 errors, no data,
no cost) → requested cost → bucket (MAX_COST_EXCEEDED above the single-query max, THROTTLED at 200
or 429 when it does not fit; nothing charged) → execute with graphql-core over the world's tables →
refund requested − actual → `extensions.cost` on every executed query. Every answer carries an
`X-Request-Id`; internal errors quote it, as Shopify's do.
"""

from __future__ import annotations

import json
import logging
import uuid

import graphql
from graphql import GraphQLError, OperationType
from graphql.execution.values import get_variable_values
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.services import ServiceDef
from sandbox.services import shopify_webhooks as _webhooks  # noqa: F401 (registers the payload builder)
from sandbox.services.shopify_cost import CostBucket, QueryCost
from sandbox.services.shopify_events import admin_routes
from sandbox.services.shopify_objects import Ctx
from sandbox.services.shopify_resolvers import Resolver
from sandbox.services.shopify_schema import admin_schema, checked_document

log = logging.getLogger("sandbox.shopify")
ACCESS_TOKEN = "shpat_sandbox"
API_VERSION = "2026-01"
INVALID_TOKEN = "[API] Invalid API key or access token (unrecognized login or wrong password)"
MISSING_QUERY = {"errors": {"query": "Required parameter missing or invalid"}}
RATE_LIMITS_DOC = "https://shopify.dev/api/usage/rate-limits"
LIMITS_DOC = "https://shopify.dev/api/usage/limits#rate-limits"
MAX_COST_ADVICE = (
    "\n\nSee https://shopify.dev/concepts/about-apis/rate-limits for more information on how the\n"
    "cost of a query is calculated.\n\nTo query larger amounts of data with fewer limits, bulk operations should be "
    "used instead.\nSee https://shopify.dev/tutorials/perform-bulk-operations-with-admin-api for usage details.\n")
HTTP_ERRORS = {402: "This shop's plan does not have access to this feature", 403: "User does not have access",
               404: "Not Found", 423: "This shop is unavailable", 500: "An unexpected error occurred"}
# Mutations are refused: the custom app holds read scopes only (inferred which write scope each needs).
WRITE_SCOPES = (("order", "write_orders"), ("draftOrder", "write_draft_orders"), ("fulfillment", "write_fulfillments"),
                ("inventory", "write_inventory"), ("customer", "write_customers"), ("return", "write_returns"),
                ("refund", "write_orders"), ("product", "write_products"), ("location", "write_locations"))


def bucket(state) -> CostBucket:
    """One leaky bucket per token (there is one token)."""
    return state.per_service("shopify_throttle", CostBucket)


def internal_error_body(request_id: str) -> dict:
    return {"errors": [{"message": "Internal error. Looks like something went wrong on our end.\n"
                                   f"Request ID: {request_id} (include this in support requests).",
                        "extensions": {"code": "INTERNAL_SERVER_ERROR", "requestId": request_id}}]}


def throttled_body(requested: int, status: dict | None) -> dict:
    body: dict = {"errors": [{"message": "Throttled",
                              "extensions": {"code": "THROTTLED", "documentation": RATE_LIMITS_DOC}}]}
    if status is not None:
        body["extensions"] = {"cost": {"requestedQueryCost": requested, "actualQueryCost": None,
                                       "throttleStatus": status}}
    return body


def error_renderer(status: int) -> tuple[dict[str, str], bytes]:
    """Injected faults in Shopify's shapes: a 200 is an INTERNAL_SERVER_ERROR body, 429 a throttle,
    and an edge 502/503 is not JSON at all."""
    request_id = str(uuid.uuid4())
    headers = {"X-Request-Id": request_id}
    if status == 200:
        return headers, json.dumps(internal_error_body(request_id)).encode()
    if status == 429:
        return {**headers, "Retry-After": "1"}, json.dumps(throttled_body(0, None)).encode()
    if status in (502, 503):
        return headers, f"<html><body><h1>{status} Service Unavailable</h1></body></html>".encode()
    return headers, json.dumps({"errors": HTTP_ERRORS.get(status, HTTP_ERRORS[500])}).encode()


def _answer(body: dict, status: int = 200, headers: dict | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=headers)


def routes(state) -> list[Route]:
    async def graphql_endpoint(request: Request) -> Response:
        request_id = str(uuid.uuid4())
        headers = {"X-Request-Id": request_id, "X-Shopify-API-Version": API_VERSION}
        if request.headers.get("x-shopify-access-token") != ACCESS_TOKEN:
            return _answer({"errors": INVALID_TOKEN}, 401, headers)
        try:
            body = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("query"), str) or not body["query"].strip():
            return _answer(MISSING_QUERY, 400, headers)
        try:
            status, answer, extra = run(state, body, request_id)
        except Exception:  # a bug in the emulation: answer as Shopify does, and say so in the log
            log.exception("shopify sandbox failed on request %s", request_id)
            return _answer(internal_error_body(request_id), 200, headers)
        return _answer(answer, status, {**headers, **extra})

    async def not_found(request: Request) -> Response:
        return _answer({"errors": "Not Found"}, 404, {"X-Request-Id": str(uuid.uuid4())})

    return [
        Route("/admin/api/{version}/graphql.json", graphql_endpoint, methods=["POST"]),
        Route("/{rest:path}", not_found, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
    ]


def run(state, body: dict, request_id: str) -> tuple[int, dict, dict]:
    """(HTTP status, body, extra headers) for one GraphQL request."""
    document, errors = checked_document(body["query"])
    if document is None:
        return 200, {"errors": list(errors)}, {}
    schema = admin_schema()
    variables = body.get("variables") or {}
    if isinstance(variables, str):
        try:
            variables = json.loads(variables) or {}
        except json.JSONDecodeError:
            variables = None
    if not isinstance(variables, dict):
        return 200, {"errors": [{"message": "Variables are invalid JSON."}]}, {}
    operation_name = body.get("operationName") or None
    operation = graphql.get_operation_ast(document, operation_name)
    if operation is None:
        message = (f"No operation named '{operation_name}'" if operation_name
                   else "An operation name is required")
        return 200, {"errors": [{"message": message}]}, {}
    coerced = get_variable_values(schema, operation.variable_definitions or [], variables)
    if isinstance(coerced, list):
        return 200, {"errors": [_format(e) for e in coerced]}, {}

    cost = QueryCost(schema, document, operation, coerced)
    requested = cost.requested()
    options = state.options
    throttle = bucket(state)
    throttle.refill(options.shopify_bucket_size, options.shopify_restore_rate)
    verdict = throttle.take(requested, options.shopify_max_query_cost)
    if verdict == "max_cost_exceeded":
        limit = options.shopify_max_query_cost
        return 200, {"errors": [{
            "message": f"Query cost is {requested}, which exceeds the single query max cost limit ({limit})."
                       + MAX_COST_ADVICE,
            "extensions": {"code": "MAX_COST_EXCEEDED", "cost": requested, "maxCost": limit,
                           "documentation": LIMITS_DOC}}]}, {}
    if verdict == "throttled":
        answer = throttled_body(requested, throttle.status())
        if options.shopify_throttle_status == 429:
            return 429, answer, {"Retry-After": str(throttle.retry_after_s(requested))}
        return 200, answer, {}

    ctx = Ctx(state)
    root = Resolver(ctx).root() if operation.operation == OperationType.QUERY else _refuse_writes()
    result = graphql.execute(schema, document, root_value=root, context_value=ctx, variable_values=variables,
                             operation_name=operation_name)
    if any(e.original_error is not None and not isinstance(e.original_error, GraphQLError)
           for e in result.errors or []):
        throttle.refund(requested)
        broken = next(e for e in result.errors if e.original_error is not None)
        raise RuntimeError(f"resolver failed at {broken.path}") from broken.original_error
    actual = cost.actual(result.data)
    throttle.refund(requested - actual)
    answer: dict = {"data": result.data}
    if result.errors:
        answer["errors"] = [_format(e) for e in result.errors]
    extensions: dict = {"cost": {"requestedQueryCost": requested, "actualQueryCost": actual,
                                 "throttleStatus": throttle.status()}}
    if ctx.search_warnings:
        extensions["search"] = ctx.search_warnings
    answer["extensions"] = extensions
    return 200, answer, {}


def _format(error: GraphQLError) -> dict:
    out: dict = {"message": error.message}
    if error.locations:
        out["locations"] = [{"line": loc.line, "column": loc.column} for loc in error.locations]
    if error.path is not None:
        out["path"] = list(error.path)
    if error.extensions:
        out["extensions"] = dict(error.extensions)
    return out


class _refuse_writes(dict):  # noqa: N801 (used as a root value)
    """The root of a mutation: every field is refused with ACCESS_DENIED (read scopes only)."""

    def get(self, name, default=None):
        scope = next((s for prefix, s in WRITE_SCOPES if name.startswith(prefix)), "write access")
        required = f"`{scope}` access scope."

        def deny(info, **_):
            raise GraphQLError(f"Access denied for {name} field. Required access: {required}",
                               extensions={"code": "ACCESS_DENIED", "requiredAccess": required})

        return deny


SERVICE = ServiceDef(prefix="shopify", routes=routes, error_renderer=error_renderer, admin_routes=admin_routes)
