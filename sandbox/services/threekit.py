"""Threekit REST emulation (threekit.md): configurations, orders, catalog, pricebooks, assets, variants.

What the contract asks of the sandbox is here: Bearer auth against the one private token (a public
`?bearer_token=` may only read), `orgId` checked against the token's org, 20 requests/s per token
sliding over one second (`threekit_rate_limit_rps`), the offset-paged envelope with its `perPage`
clamp and `sort`, and order write-back by PUT that replaces only the keys sent. Lists are served
from the world's tables with SQL LIMIT/OFFSET (Threekit itself pages by offset). Record shapes and
error bodies are in `threekit_render`; webhooks and sandbox-only world changes in `threekit_events`.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections import deque

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox import webhooks
from sandbox.services import ServiceDef, threekit_events
from sandbox.services import threekit_render as render
from sandbox.services.threekit_render import (
    DEFAULT_PER_PAGE,
    DEFAULT_SORT,
    MAX_PER_PAGE,
    ORDER_NAME_MAX,
    ORG_ID,
    PRIVATE_TOKEN,
    PUBLIC_TOKEN,
    STATUSES,
    VARIANT_PER_PAGE,
    VARIANT_STATUSES,
    fail,
)

ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
# token -> (kind, org): the private token of the sandbox org, and a browser token that may only read.
TOKENS = {PRIVATE_TOKEN: ("private", ORG_ID), PUBLIC_TOKEN: ("public", ORG_ID)}
# Sortable fields per table (§4.1). Configurations are immutable and unnamed, and pricebooks are
# never edited: their `updatedAt` is `createdAt`, and a configuration's `name` is its shortId (inferred).
SORTS = {
    "threekit_configurations": {"createdAt": "created_at", "updatedAt": "created_at", "name": "short_id"},
    "threekit_orders": {"createdAt": "created_at", "updatedAt": "updated_at", "name": "name"},
    "threekit_assets": {"createdAt": "created_at", "updatedAt": "updated_at", "name": "name"},
    "threekit_pricebooks": {"createdAt": "created_at", "updatedAt": "created_at", "name": "name"},
}
# PUT /api/orders/{id}: body key -> (column, kind); other keys (ids, timestamps) are read-only and ignored.
ORDER_WRITABLE = {"name": ("name", "name"), "customerId": ("customer_id", "nullable_string"),
                  "platform": ("platform", "object"), "metadata": ("metadata", "object"), "cart": ("cart", "array"),
                  "derivative": ("derivative", "object"), "status": ("status", "status"), "items": (None, "array")}


class BadRequest(ValueError):
    """Rendered as 400 `bad_request` (§6)."""


class SlidingWindow:
    """At most `limit` accepted requests per key in any `span` seconds; refused ones do not count."""

    def __init__(self, limit: int, span: float = 1.0, clock=time.monotonic):
        self.limit, self.span, self.clock = limit, span, clock
        self._hits: dict[str, deque[float]] = {}

    def check(self, key: str) -> int:
        """0 if the request is allowed, else the whole seconds until it would be (Retry-After)."""
        now = self.clock()
        hits = self._hits.setdefault(key, deque())
        while hits and hits[0] <= now - self.span:
            hits.popleft()
        if len(hits) >= self.limit:
            return max(1, math.ceil(hits[0] + self.span - now))
        hits.append(now)
        return 0


class Limits:
    """The per-token limiter, keyed by the configured rate so `POST /_sandbox/config` applies at once."""

    def __init__(self, state):
        self.state = state
        self._by_rate: dict[int, SlidingWindow] = {}

    def check(self, token: str) -> int:
        rate = self.state.options.threekit_rate_limit_rps
        if rate not in self._by_rate:
            self._by_rate = {rate: SlidingWindow(rate)}
        return self._by_rate[rate].check(token)


def _caller(request: Request) -> tuple[str, str, str] | None:
    """(token, kind, org) from `Authorization: Bearer` or a public `?bearer_token=`; None if unknown."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    token = value.strip() if scheme.lower() == "bearer" else ""
    token = token or request.query_params.get("bearer_token", "")
    if token not in TOKENS:
        return None
    return (token, *TOKENS[token])


def endpoint(state, handler, methods=("GET",), *, org_required: bool = False):
    """Token, rate limit, org, method, then the handler; BadRequest renders as 400."""

    async def wrapped(request: Request) -> Response:
        caller = _caller(request)
        if caller is None:
            return render.unauthorized()
        token, kind, org = caller
        wait = state.per_service("threekit", lambda: Limits(state)).check(token)
        if wait:
            return render.rate_limited(wait)
        wanted = request.path_params.get("org_id") or request.query_params.get("orgId")
        if wanted is not None and wanted != org:
            return render.forbidden(wanted)
        if request.method not in methods:
            return fail(405, "method_not_allowed", f"Method {request.method} not allowed")
        if kind == "public" and request.method != "GET":
            return render.forbidden(org)  # browser tokens read; writes need the private token (§3)
        if org_required and wanted is None:
            return render.bad_request("orgId is required")  # the Assets API marks it required (§3)
        try:
            return await handler(request)
        except BadRequest as exc:
            return render.bad_request(str(exc))

    return wrapped


# ---------- query parameters ----------
def _int(query, name: str, default: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer") from None


def paging(query, default_per_page: int) -> tuple[int, int]:
    page = _int(query, "page", 1)
    if page < 1:
        raise BadRequest("page must be 1 or more")
    # Larger values are clamped, and the envelope shows the value used (inferred).
    return page, min(max(_int(query, "perPage", default_per_page), 1), MAX_PER_PAGE)


def sorting(query, table: str) -> tuple[str, str]:
    """(the sort as echoed, its ORDER BY); `seq` breaks ties so offset pages never overlap."""
    sort = (query.get("sort") or DEFAULT_SORT).strip().lstrip("+")
    descending = sort.startswith("-")
    column = SORTS[table].get(sort.lstrip("-"))
    if column is None:
        raise BadRequest(f"Invalid sort {sort!r}: use createdAt, updatedAt or name, with a leading - for descending")
    direction = "DESC" if descending else "ASC"
    return sort, f"ORDER BY {column} {direction}, seq {direction}"


def json_param(query, name: str):
    raw = query.get(name)
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        raise BadRequest(f"Malformed JSON in {name}") from None
    if not isinstance(value, dict):
        raise BadRequest(f"{name} must be a JSON object")
    return value


def json_match(column: str, wanted: dict | None, where: list[str], params: list) -> None:
    """Every key of `wanted` equal in the JSON column (the documented `metadata`/`platform` filters)."""
    for key, value in (wanted or {}).items():
        if '"' in key or "\\" in key:
            raise BadRequest(f"Invalid key {key!r}")
        where.append(f"json_extract({column}, ?) = CAST(? AS JSON)")
        params += [f'$."{key}"', json.dumps(value, separators=(",", ":"), ensure_ascii=False)]


def routes(state) -> list[Route]:
    def rows_of(sql: str, params: list) -> list[dict]:
        cursor = state.con.execute(sql, params)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def listing(request: Request, table: str, columns: str, resource: str, render_row, where: list[str],
                params: list, *, per_page_default: int = DEFAULT_PER_PAGE, sortable: bool = True) -> Response:
        page, per_page = paging(request.query_params, per_page_default)
        sort, order = sorting(request.query_params, table) if sortable else (None, "ORDER BY seq")
        clause = " AND ".join(where) or "TRUE"
        count = state.con.execute(f"SELECT count(*) FROM {table} WHERE {clause}", params).fetchall()[0][0]  # noqa: S608
        rows = []
        if (page - 1) * per_page < count:  # past the end: [] with the same count
            rows = rows_of(f"SELECT {columns} FROM {table} WHERE {clause} {order} LIMIT ? OFFSET ?",  # noqa: S608
                           [*params, per_page, (page - 1) * per_page])
        return render.envelope(resource, [render_row(r) for r in rows], count, page, per_page, sort)

    # ---- configurations ----
    async def configurations(request: Request) -> Response:
        return listing(request, "threekit_configurations", render.CONFIGURATION_COLUMNS, "configurations",
                       render.configuration, [], [])

    async def configuration(request: Request) -> Response:
        ident = request.path_params["ident"]
        row = threekit_events.find_configuration(state, ident)
        return JSONResponse(render.configuration(row)) if row else render.not_found("Configuration", ident)

    # ---- orders ----
    async def orders(request: Request) -> Response:
        query, where, params = request.query_params, [], []
        for name, column in (("shortId", "short_id"), ("originOrgId", "origin_org_id"), ("status", "status")):
            if query.get(name) is not None:
                where.append(f"{column} = ?")
                params.append(query[name])
        json_match("platform", json_param(query, "platform"), where, params)
        return listing(request, "threekit_orders", render.ORDER_COLUMNS, "orders", render.order, where, params)

    async def order(request: Request) -> Response:
        ident = request.path_params["ident"]
        if request.method == "PUT":
            return await put_order(request, ident)
        row = threekit_events.find_order(state, ident)
        return JSONResponse(render.order(row)) if row else render.not_found("Order", ident)

    async def put_order(request: Request, ident: str) -> Response:
        path = f"/api/orders/{ident}"
        raw = await request.body()
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            state.record_write("threekit", "PUT", path, 400, raw.decode("utf-8", "replace")[:2000])
            return render.bad_request("Malformed JSON body")
        if not isinstance(body, dict):
            state.record_write("threekit", "PUT", path, 400, body)
            return render.bad_request("Body must be a JSON object")
        with state.lock:
            row = threekit_events.find_order(state, ident)
            if row is None:
                state.record_write("threekit", "PUT", path, 404, body)
                return render.not_found("Order", ident)
            details = _order_problems(body)
            if details:
                state.record_write("threekit", "PUT", path, 422, body)
                return render.invalid_order(details)
            # Only the keys sent change, each replaced whole: `metadata` is never merged (§4.3).
            sets, values = ["updated_at = ?"], [_later(state, row["updated_at"])]
            for key, (column, kind) in ORDER_WRITABLE.items():
                if key in body and column is not None:
                    sets.append(f"{column} = ?")
                    values.append(json.dumps(body[key]) if kind in ("object", "array") else body[key])
            state.con.execute(f"UPDATE threekit_orders SET {', '.join(sets)} WHERE id = ?",  # noqa: S608
                              [*values, row["id"]])
            state.record_write("threekit", "PUT", path, 200, body)
        threekit_events.emit(state, "order.updated", row["id"])
        return JSONResponse(render.order(threekit_events.find_order(state, row["id"])))

    # ---- catalog ----
    def name_filters(query, where: list[str], params: list) -> None:
        if query.get("name") is not None:
            where.append("name = ?")
            params.append(query["name"])
        if query.get("nameLike") is not None:
            where.append("contains(lower(name), lower(?))")
            params.append(query["nameLike"])
        json_match("metadata", json_param(query, "metadata"), where, params)

    async def catalog_products(request: Request) -> Response:
        where, params = ["type = 'item'"], []
        name_filters(request.query_params, where, params)
        return listing(request, "threekit_assets", render.ASSET_COLUMNS, "products", render.catalog_product,
                       where, params)

    async def variants(request: Request) -> Response:
        ident = request.path_params["ident"]  # the item's id or its customId (the SKU in its metadata)
        items = rows_of("SELECT id FROM threekit_assets WHERE type = 'item' AND (id = ? OR "
                        "json_extract_string(metadata, '$.sku') = ?) ORDER BY seq LIMIT 1", [ident, ident])
        if not items:
            return render.not_found("Item", ident)
        where, params = ["item_id = ?"], [items[0]["id"]]
        raw = request.query_params.get("status")
        if raw is not None:
            wanted = _statuses(raw)
            where.append("list_contains(?, status)")
            params.append(wanted)
        return listing(request, "threekit_variants", render.VARIANT_COLUMNS, "variants", render.variant, where,
                       params, per_page_default=VARIANT_PER_PAGE, sortable=False)

    async def pricebooks(request: Request) -> Response:
        if request.query_params.get("all") == "true":  # every pricebook on one page
            rows = rows_of(f"SELECT {render.PRICEBOOK_COLUMNS} FROM threekit_pricebooks "  # noqa: S608
                           "ORDER BY created_at DESC, seq DESC", [])
            return render.envelope("pricebooks", [render.pricebook(r) for r in rows], len(rows), 1,
                                   max(len(rows), 1), DEFAULT_SORT)
        return listing(request, "threekit_pricebooks", render.PRICEBOOK_COLUMNS, "pricebooks", render.pricebook, [], [])

    # ---- assets ----
    async def assets(request: Request) -> Response:
        query, where, params = request.query_params, [], []
        for name, column in (("type", "type"), ("proxyId", "proxy_id"), ("branch", "branch"),
                             ("importedFileId", "imported_file_id")):
            if query.get(name) is not None:
                where.append(f"{column} = ?")
                params.append(query[name])
        for name in ("tags", "keywords"):  # a comma-separated list: every one must be on the asset
            if query.get(name):
                where.append(f"list_has_all({name}, ?)")
                params.append([part.strip() for part in query[name].split(",") if part.strip()])
        name_filters(query, where, params)
        return listing(request, "threekit_assets", render.ASSET_COLUMNS, "assets", render.asset, where, params)

    async def asset(request: Request) -> Response:
        asset_id = request.path_params["asset_id"]
        row = threekit_events.find_asset(state, asset_id)
        return JSONResponse(render.asset(row)) if row else render.not_found("Asset", asset_id)

    # ---- webhooks: the hub's registrations for threekit, one row per topic (§5) ----
    async def webhook_list(request: Request) -> Response:
        query = request.query_params
        page, per_page = paging(query, DEFAULT_PER_PAGE)
        sort = (query.get("sort") or DEFAULT_SORT).strip().lstrip("+")
        if sort.lstrip("-") not in ("createdAt", "updatedAt", "name"):
            raise BadRequest(f"Invalid sort {sort!r}: use createdAt, updatedAt or name, with a leading - for descending")
        rows = [render.webhook(str(uuid.uuid5(uuid.NAMESPACE_URL, f"{reg.id}/{topic}")), reg.address, topic,
                               reg.created_at)
                for reg in webhooks.hub(state).registrations_of("threekit") for topic in reg.topics
                if query.get("topic") in (None, topic) and query.get("address") in (None, reg.address)]
        key = "topic" if sort.lstrip("-") == "name" else "createdAt"
        rows.sort(key=lambda r: (r[key], r["id"]), reverse=sort.startswith("-"))
        start = (page - 1) * per_page
        return render.envelope("webhooks", rows[start:start + per_page], len(rows), page, per_page, sort)

    async def not_found(request: Request) -> Response:
        return fail(404, "not_found", "Not found")

    def r(path: str, handler, methods=("GET",), **flags) -> Route:
        return Route(path, endpoint(state, handler, methods, **flags), methods=ALL_METHODS)

    return [
        r("/api/configurations", configurations),
        r("/api/configurations/{ident}", configuration),
        r("/api/orders", orders),
        r("/api/orders/{ident}", order, ("GET", "PUT")),
        r("/api/catalog/products", catalog_products),
        r("/api/catalog/items/{ident}/variants", variants),
        r("/api/orgs/{org_id}/pricebooks", pricebooks),
        r("/api/assets", assets, org_required=True),
        r("/api/assets/{asset_id}", asset, org_required=True),
        r("/api/webhooks", webhook_list),
        Route("/{rest:path}", not_found, methods=ALL_METHODS),
    ]


def _statuses(raw: str) -> list[str]:
    """`status` is one variant status or a JSON array of them (documented)."""
    try:
        wanted = json.loads(raw) if raw.startswith("[") else [raw]
    except json.JSONDecodeError:
        raise BadRequest("Malformed JSON in status") from None
    if not isinstance(wanted, list) or not wanted or any(s not in VARIANT_STATUSES for s in wanted):
        raise BadRequest(f"status must be one of {', '.join(VARIANT_STATUSES)}, or a JSON array of them")
    return wanted


def _order_problems(body: dict) -> list[dict]:
    """The 422 `details` for a PUT body, one per invalid key (inferred)."""
    problems = []
    for key, (_, kind) in ORDER_WRITABLE.items():
        if key not in body:
            continue
        value = body[key]
        if kind == "status" and value not in STATUSES:  # case-sensitive
            problems.append({"path": key, "message": f"must be one of {', '.join(STATUSES)}"})
        elif kind == "object" and not isinstance(value, dict):
            problems.append({"path": key, "message": "must be an object"})
        elif kind == "array" and not isinstance(value, list):
            problems.append({"path": key, "message": "must be an array"})
        elif kind == "name" and not (isinstance(value, str) and len(value) <= ORDER_NAME_MAX):
            problems.append({"path": key, "message": f"must be a string of at most {ORDER_NAME_MAX} characters"})
        elif kind == "nullable_string" and value is not None and not isinstance(value, str):
            problems.append({"path": key, "message": "must be a string or null"})
    return problems


def _later(state, stored):
    """Now on the sandbox clock, at millisecond precision, but always after what is stored."""
    now = render.to_ms(state.now())
    return now if now > stored else stored + render.ONE_MS


SERVICE = ServiceDef(prefix="threekit", routes=routes, error_renderer=render.error_renderer,
                     admin_routes=threekit_events.admin_routes)
