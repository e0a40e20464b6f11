"""Plytix PIM API v1 emulation (plytix.md): auth host, product search and writes, assets, categories.

Everything the contract marks as a sandbox behaviour is here: JWT tokens with `exp - iat` =
`plytix_token_ttl_s`, both rate windows, the 10 000-record sort cap (`plytix_sort_cap`), the exact
validation bodies, and writes applied to the world so round trips are real.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import date, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.ratelimit import FixedWindows, Verdict
from sandbox.services import ServiceDef
from sandbox.services.plytix_schema import (
    ASSET_PROPERTIES,
    ATTRIBUTES,
    CATEGORY_PROPERTIES,
    MEDIA_LABELS,
    SearchError,
    order_clause,
    parse_paging,
    product_field,
    product_field_known,
    requested_fields,
    where_clause,
)

API_KEY, API_PASSWORD = "sandbox-plytix-key", "sandbox-plytix-password"
_SIGNING_KEY = b"sandbox-plytix-signing-key"
PRODUCT_COLUMNS = ("seq, id, sku, label, status, created, modified, parent_id, num_variations, "
                   "product_family_id, categories, thumbnail, attributes")
WERKZEUG_404 = ("The requested URL was not found on the server. If you entered the URL manually please "
                "check your spelling and try again.")
WERKZEUG_405 = "The method is not allowed for the requested URL."
WERKZEUG_500 = ("The server encountered an internal error and was unable to complete your request. Either the "
                "server is overloaded or there is an error in the application.")
MAX_ASSETS_PER_PRODUCT = 300
ASSET_FIELDS = {"assigned", "categories", "content_type", "created", "extension", "file_modified", "file_size",
                "file_type", "filename", "id", "modified", "n_catalogs", "n_products", "public", "status",
                "thumbnail", "url"}


# ---------- response helpers ----------
def data(items: list, status: int = 200, **extra) -> JSONResponse:
    return JSONResponse({"data": items, **extra}, status_code=status)


def error(status: int, msg: str, errors: list | None = None) -> JSONResponse:
    body: dict = {"msg": msg}
    if errors is not None:
        body = {"errors": errors, "msg": msg}
    return JSONResponse({"error": body}, status_code=status)


def rate_limited(verdict: Verdict, extra_headers: dict | None = None) -> JSONResponse:
    headers = {"Retry-After": str(verdict.retry_after_s), "RateLimit-Limit": str(verdict.limit),
               "RateLimit-Remaining": "0", "RateLimit-Reset": str(verdict.retry_after_s), **(extra_headers or {})}
    return JSONResponse({"message": "API rate limit exceeded"}, status_code=429, headers=headers)


def stamp(value: datetime | None) -> str | None:
    """Plytix's `YYYY-MM-DDTHH:MM:SS.ffffff+00:00` (naive values in the world are UTC)."""
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def error_renderer(status: int) -> tuple[dict[str, str], bytes]:
    if status == 429:
        return ({"Retry-After": "1", "RateLimit-Limit": "20", "RateLimit-Remaining": "0", "RateLimit-Reset": "1"},
                b'{"message":"API rate limit exceeded"}')
    if status in (502, 503):  # the Kong gateway's own body
        return {}, b'{"message":"name resolution failed"}'
    return {}, json.dumps({"error": {"msg": WERKZEUG_500}}).encode()


# ---------- auth ----------
class PlytixAuth:
    """Issued tokens and the two rate limiters (auth host per key; PIM per account)."""

    def __init__(self, state):
        self.state = state
        self.tokens: dict[str, tuple[str, float]] = {}  # token -> (account, exp)
        self._limiters: dict[tuple, FixedWindows] = {}

    @property
    def options(self):
        return self.state.options

    def _limiter(self, windows: list[tuple[int, float]]) -> FixedWindows:
        # Keyed by the limits, so `POST /_sandbox/config` takes effect without dropping tokens.
        key = tuple(windows)
        if key not in self._limiters:
            self._limiters[key] = FixedWindows(windows)
        return self._limiters[key]

    @property
    def auth_limit(self) -> FixedWindows:
        return self._limiter([(self.options.plytix_auth_rate_per_s, 1.0)])

    @property
    def pim_limit(self) -> FixedWindows:
        return self._limiter([(self.options.plytix_rate_per_10s, 10.0), (self.options.plytix_rate_per_hour, 3600.0)])

    def issue(self, account: str) -> str:
        iat = int(time.time())
        exp = iat + self.options.plytix_token_ttl_s
        segments = [_b64({"alg": "HS256", "typ": "JWT"}), _b64({"iat": iat, "exp": exp, "sub": account, "jti": len(self.tokens)})]
        signature = hmac.new(_SIGNING_KEY, ".".join(segments).encode(), hashlib.sha256).digest()
        token = ".".join([*segments, base64.urlsafe_b64encode(signature).rstrip(b"=").decode()])
        self.tokens[token] = (account, exp)
        return token

    def check(self, request: Request) -> tuple[str | None, JSONResponse | None]:
        header = request.headers.get("authorization")
        if not header:
            return None, error(401, "Missing Authorization Header")
        scheme, _, token = header.partition(" ")
        if scheme != "Bearer":
            return None, error(401, "Missing 'Bearer' type in 'Authorization' header. Expected 'Authorization: Bearer <JWT>'")
        issued = self.tokens.get(token.strip())
        if issued is None:
            return None, error(401, "Signature verification failed")
        if time.time() >= issued[1]:
            return None, error(401, "Token has expired")
        return issued[0], None


def _b64(obj: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj, separators=(",", ":")).encode()).rstrip(b"=").decode()


def _auth(state) -> PlytixAuth:
    return state.per_service("plytix", lambda: PlytixAuth(state))


def expire_tokens(state) -> None:
    auth = _auth(state)
    auth.tokens = {token: (account, 0.0) for token, (account, _) in auth.tokens.items()}


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SearchError(400, [{"field": "http_status_code", "msg": 400}],
                          f"Failed to decode JSON object: {exc}") from None


def auth_routes(state) -> list[Route]:
    async def get_token(request: Request) -> Response:
        try:
            body = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict) or "api_key" not in body or "api_password" not in body:
            return error(400, "The browser sent a request that this server could not understand.")
        auth = _auth(state)
        verdict = auth.auth_limit.check(str(body["api_key"]))
        if not verdict.allowed:
            return rate_limited(verdict, {"X-RateLimit-Limit-Second": str(verdict.limit), "X-RateLimit-Remaining-Second": "0"})
        headers = {"RateLimit-Limit": str(verdict.limit), "RateLimit-Remaining": str(verdict.remaining),
                   "X-RateLimit-Limit-Second": str(verdict.limit), "X-RateLimit-Remaining-Second": str(verdict.remaining)}
        if body["api_key"] != API_KEY or body["api_password"] != API_PASSWORD:
            return JSONResponse({"error": {"msg": "Bad api_key or api_password: Credentials not valid",
                                           "errors": [{"field": "http_status_code", "msg": 401}]}},
                                status_code=401, headers=headers)
        token = auth.issue(str(body["api_key"]))
        return JSONResponse({"data": [{"access_token": token, "refresh_token": hashlib.sha1(token.encode()).hexdigest()[:12]}]},
                            headers=headers)

    return [Route("/auth/api/get-token", get_token, methods=["POST"])]


# ---------- PIM ----------
def pim_endpoint(state, handler):
    """Auth, then the per-account rate limit, then the handler; SearchError renders as the service does."""

    async def endpoint(request: Request) -> Response:
        auth = _auth(state)
        account, failure = auth.check(request)
        if failure:
            return failure
        verdict = auth.pim_limit.check(account)
        if not verdict.allowed:
            return rate_limited(verdict)
        try:
            response = await handler(request)
        except SearchError as exc:
            response = error(exc.status, exc.msg, exc.errors)
        response.headers["RateLimit-Limit"] = str(verdict.limit)
        response.headers["RateLimit-Remaining"] = str(verdict.remaining)
        return response

    return endpoint


def not_found_product(product_id: str) -> SearchError:
    # The leading space in the message is the real service's.
    return SearchError(404, [{"field": "id", "msg": "product does not exist"}], f" No results found for {product_id}")


class PlytixWorld:
    """Reads and writes of the Plytix part of the world, over the sandbox's DuckDB connection."""

    def __init__(self, state):
        self.state = state
        rows = state.con.execute("SELECT id, name, path FROM categories").fetchall()
        self.categories = {r[0]: {"id": r[0], "name": r[1], "path": list(r[2])} for r in rows}

    @property
    def con(self):
        return self.state.con

    def product(self, product_id: str) -> dict:
        cursor = self.con.execute(f"SELECT {PRODUCT_COLUMNS} FROM products WHERE id = ?", [product_id])  # noqa: S608
        row = cursor.fetchone()
        if row is None:
            raise not_found_product(product_id)
        return _row_dict(cursor, row)

    def assets(self, ids: list[str]) -> dict[str, dict]:
        if not ids:
            return {}
        rows = self.con.execute("SELECT id, filename FROM plytix_assets WHERE list_contains(?, id)", [ids]).fetchall()
        return {r[0]: _asset_ref(r[0], r[1]) for r in rows}

    def full(self, row: dict, all_attributes: bool = False) -> dict:
        attributes = json.loads(row["attributes"])
        linked = _linked_asset_ids(attributes, row["thumbnail"])
        assets = self.assets(linked)
        if all_attributes:
            attributes = {label: attributes.get(label) for label in ATTRIBUTES}
        return {
            "_parent_id": row["parent_id"], "id": row["id"], "sku": row["sku"], "label": row["label"], "gtin": None,
            "status": row["status"], "created": stamp(row["created"]), "modified": stamp(row["modified"]),
            "num_variations": row["num_variations"],
            "product_type": "PARENT" if row["num_variations"] else ("VARIANT" if row["parent_id"] else "SINGLE"),
            "product_level": 1 if row["parent_id"] else 0, "product_family_id": row["product_family_id"],
            "product_family_model_id": row["product_family_id"], "overwritten_attributes": [], "relationships": [],
            "assets": [assets[a] for a in linked if a in assets],
            "categories": [self.categories[c] for c in row["categories"] if c in self.categories],
            "thumbnail": assets.get(row["thumbnail"]) if row["thumbnail"] else None,
            "attributes": attributes,
        }

    def touch(self, product_id: str, attributes: dict | None = None, **columns) -> None:
        """Apply a write and bump `modified`, as every successful write does (inferred)."""
        sets, params = ["modified = ?"], [self.state.now()]
        if attributes is not None:
            sets.append("attributes = ?")
            params.append(json.dumps(attributes))
        for column, value in columns.items():
            sets.append(f"{column} = ?")
            params.append(value)
        self.con.execute(f"UPDATE products SET {', '.join(sets)} WHERE id = ?", [*params, product_id])  # noqa: S608


def _row_dict(cursor, row) -> dict:
    return dict(zip([d[0] for d in cursor.description], row, strict=True))


def _asset_ref(asset_id: str, filename: str) -> dict:
    return {"id": asset_id, "filename": filename, "thumbnail": f"https://files.plytix.com/api/v1.1/thumb/{filename}",
            "url": f"https://files.plytix.com/api/v1.1/file/{filename}"}


def _linked_asset_ids(attributes: dict, thumbnail: str | None) -> list[str]:
    ids = [thumbnail] if thumbnail else []
    for label in sorted(MEDIA_LABELS - {"thumbnail"}):
        value = attributes.get(label)
        refs = value if isinstance(value, list) else [value] if value else []
        ids += [ref["id"] for ref in refs if isinstance(ref, dict) and "id" in ref]
    return list(dict.fromkeys(ids))


def _search_item(world: PlytixWorld, row: dict, fields: list[str]) -> dict:
    """Items carry only id, sku, attributes, num_variations and `_parent_id` unless asked for more."""
    attributes = json.loads(row["attributes"])
    item: dict = {"id": row["id"], "sku": row["sku"], "attributes": {}, "num_variations": row["num_variations"]}
    if row["parent_id"]:
        item["_parent_id"] = row["parent_id"]
    for name in fields:
        if name.startswith("attributes."):
            label = name.removeprefix("attributes.")
            if attributes.get(label) not in (None, "", []):  # empty attributes are omitted
                item["attributes"][label] = attributes[label]
        elif name in ("modified", "created"):
            item[name] = stamp(row[name])
        elif name == "categories":
            item[name] = [{"id": c} for c in row["categories"]]
        elif name == "thumbnail":
            item[name] = {"id": row["thumbnail"]} if row["thumbnail"] else None
        elif name == "assets":
            item[name] = [{"id": a} for a in _linked_asset_ids(attributes, row["thumbnail"])]
        elif name in ("label", "status", "product_family_id"):
            item[name] = row[name]
        elif name == "gtin":
            item[name] = None
    return item


def _validate_attribute(label: str, value: Any) -> str | None:
    """None if the value is acceptable, else the service's message for it."""
    attr = ATTRIBUTES[label]
    if value is None:
        return None
    if attr.type_class == "DropdownAttribute":
        if not isinstance(value, str) or value not in attr.options:
            return f"[u'{value}'] are not a valid values for {attr.name} attribute."
    elif attr.type_class == "MultiSelectAttribute":
        values = value if isinstance(value, list) else [value]
        bad = [v for v in values if v not in attr.options]
        if bad:
            return f"[{', '.join(f'u{v!r}' for v in bad)}] are not a valid values for {attr.name} attribute."
    elif attr.type_class == "DateAttribute":
        if not _is_date(value):
            return "Not a valid date."
    elif attr.type_class.startswith("Media"):
        return "Use the product assets endpoint to link media."
    elif not isinstance(value, str):
        return "Not a valid string."
    return None


def _is_date(value: Any) -> bool:
    """Plytix dates are exactly `YYYY-MM-DD`."""
    if not isinstance(value, str) or len(value) != 10:
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def pim_routes(state) -> list[Route]:
    def world() -> PlytixWorld:
        return state.per_service("plytix-world", lambda: PlytixWorld(state))

    def search(table: str, lookup, known, render):
        async def handler(request: Request) -> Response:
            body = await _json_body(request)
            if not isinstance(body, dict):
                raise SearchError(422, [{"field": "_schema", "msg": "Invalid input type."}], "Schema validation error")
            fields = requested_fields(body, known)
            paging = parse_paging(body)
            where, params = where_clause(body.get("filters"), lookup)
            order = order_clause(paging.order, lookup)
            total = state.con.execute(f"SELECT count(*) FROM {table} WHERE {where}", params).fetchone()[0]  # noqa: S608
            if paging.order and total > state.options.plytix_sort_cap:
                raise SearchError(428, None, f"Too many results to sort (limit {state.options.plytix_sort_cap}). "
                                             "Refine the filters or remove the order.")
            offset = (paging.page - 1) * paging.page_size
            cursor = state.con.execute(
                f"SELECT * FROM {table} WHERE {where} {order} LIMIT ? OFFSET ?",  # noqa: S608
                [*params, paging.page_size, offset],
            )
            rows = [_row_dict(cursor, r) for r in cursor.fetchall()]
            items = [render(row, fields) for row in rows]
            return data(items, pagination={"count": len(items), "order": paging.order, "page": paging.page,
                                           "page_size": paging.page_size, "total_count": total})

        return handler

    def asset_lookup(name: str):
        if name not in ASSET_PROPERTIES:
            raise SearchError(422, [{"field": name, "msg": "unknown field"},
                                    {"field": "filters", "msg": "Unable to decode filters properly"}],
                              "Schema validation error")
        return ASSET_PROPERTIES[name]

    def category_lookup(name: str):
        if name not in CATEGORY_PROPERTIES:
            raise SearchError(422, [{"field": name, "msg": "unknown field"},
                                    {"field": "filters", "msg": "Unable to decode filters properly"}],
                              "Schema validation error")
        return CATEGORY_PROPERTIES[name]

    def render_asset(row: dict, fields: list[str]) -> dict:
        full = _asset_full(row)
        return {"id": row["id"], **{f: full[f] for f in fields if f in full}} if fields else full

    def render_category(row: dict, fields: list[str]) -> dict:
        return {"id": row["id"], "modified": stamp(row["modified"]), "n_children": row["n_children"],
                "name": row["name"], "order": row["ord"], "parents_ids": list(row["parents_ids"]),
                "path": list(row["path"]), "slug": row["slug"]}

    products_search = search("products", product_field, product_field_known,
                             lambda row, fields: _search_item(world(), row, fields))
    def asset_field_known(name: str) -> None:
        if name not in ASSET_FIELDS:
            asset_lookup(name)

    assets_search = search("plytix_assets_view", asset_lookup, asset_field_known, render_asset)
    categories_search = search("categories", category_lookup, lambda name: None, render_category)

    async def products_collection(request: Request) -> Response:
        return error(405, WERKZEUG_405)

    async def product(request: Request) -> Response:
        product_id = request.path_params["product_id"]
        if request.method == "GET":
            row = world().product(product_id)
            return data([world().full(row, request.query_params.get("all_attributes") == "true")])
        body = await _json_body(request)
        return patch_product(product_id, body if isinstance(body, dict) else {})

    def patch_product(product_id: str, body: dict) -> Response:
        row = world().product(product_id)
        changes: dict = {}
        errors = []
        if "status" in body:
            if body["status"] not in ("Draft", "Completed", "Archived"):
                errors.append({"field": "status", "msg": "Value is not valid, valid values are [Draft, Completed, Archived]"})
            changes["status"] = body["status"]
        if "label" in body and isinstance(body["label"], str):
            changes["label"] = body["label"]
        attributes = json.loads(row["attributes"])
        for label, value in (body.get("attributes") or {}).items():
            if label not in ATTRIBUTES:
                errors.append({"field": label, "msg": "label does not exist"})
            elif problem := _validate_attribute(label, value):
                errors.append({"field": label, "msg": problem})
            elif value is None:
                attributes.pop(label, None)  # null clears
            else:
                attributes[label] = value
        if errors:
            state.record_write("plytix", "PATCH", f"/api/v1/products/{product_id}", 422, body)
            raise SearchError(422, errors, "product data validation failed")
        world().touch(product_id, attributes, **changes)
        state.record_write("plytix", "PATCH", f"/api/v1/products/{product_id}", 200, body)
        return data([world().full(world().product(product_id))])

    async def create_asset(request: Request) -> Response:
        body = await _json_body(request)
        body = body if isinstance(body, dict) else {}
        if "url" not in body:
            if "content" in body and not body.get("filename"):
                raise SearchError(422, [{"field": "filename", "msg": "filename field is mandatory when uploading from content"}],
                                  "Schema validation error")
            raise SearchError(422, [{"field": "url", "msg": "Missing data for required field."}], "Schema validation error")
        existing = state.con.execute("SELECT id FROM plytix_assets WHERE source_url = ?", [body["url"]]).fetchone()
        if existing:
            state.record_write("plytix", "POST", "/api/v1/assets", 409, body)
            raise SearchError(409, [{"field": "asset.id", "msg": existing[0]}], "Asset already exists")
        seq = state.con.execute("SELECT coalesce(max(seq), 0) + 1 FROM plytix_assets").fetchone()[0]
        asset_id = f"6740a3b1{seq:016x}"
        filename = body.get("filename") or body["url"].rstrip("/").rsplit("/", 1)[-1]
        now = state.now()
        state.con.execute("INSERT INTO plytix_assets VALUES (?, ?, ?, ?, ?, ?, ?)",
                          [seq, asset_id, filename, body["url"], 31885, now, now])
        state.record_write("plytix", "POST", "/api/v1/assets", 201, body)
        row = state.con.execute("SELECT * FROM plytix_assets_view WHERE id = ?", [asset_id])
        return data([_asset_full(_row_dict(row, row.fetchone()))], status=201)

    async def product_assets(request: Request) -> Response:
        product_id = request.path_params["product_id"]
        row = world().product(product_id)
        attributes = json.loads(row["attributes"])
        if request.method == "GET":
            linked = _linked_asset_ids(attributes, row["thumbnail"])
            assets = world().assets(linked)
            return data([assets[a] for a in linked if a in assets])
        body = await _json_body(request)
        body = body if isinstance(body, dict) else {}
        path = f"/api/v1/products/{product_id}/assets"
        if not body.get("id"):
            raise SearchError(422, [{"field": "id", "msg": "Missing data for required field."}], "Schema validation error")
        asset_id, label = str(body["id"]), body.get("attribute_label") or "thumbnail"
        if not world().assets([asset_id]):
            raise SearchError(404, [{"field": "asset.id", "msg": "asset does not exist"}], f"Asset id {asset_id} does not exist")
        if label not in MEDIA_LABELS:
            raise SearchError(422, [{"field": "attribute_label", "msg": "label does not exist"}], "Schema validation error")
        thumbnail = row["thumbnail"]
        if label == "thumbnail":
            if thumbnail == asset_id:
                raise _already_linked(asset_id)
            thumbnail = asset_id
        elif ATTRIBUTES[label].type_class == "MediaGalleryAttribute":  # galleries append
            gallery = attributes.get(label) or []
            if any(ref.get("id") == asset_id for ref in gallery):
                raise _already_linked(asset_id)
            if len(_linked_asset_ids(attributes, thumbnail)) >= MAX_ASSETS_PER_PRODUCT:
                raise SearchError(422, [{"field": "assets", "msg": "Max 300 assets per product"}], "Schema validation error")
            attributes[label] = [*gallery, {"id": asset_id}]
        else:  # single media attributes replace
            if (attributes.get(label) or {}).get("id") == asset_id:
                raise _already_linked(asset_id)
            attributes[label] = {"id": asset_id}
        world().touch(product_id, attributes, thumbnail=thumbnail)
        state.record_write("plytix", "POST", path, 201, body)
        return data([{"id": asset_id}], status=201)

    async def unlink_asset(request: Request) -> Response:
        product_id, asset_id = request.path_params["product_id"], request.path_params["asset_id"]
        row = world().product(product_id)
        attributes = json.loads(row["attributes"])
        if asset_id not in _linked_asset_ids(attributes, row["thumbnail"]):
            msg = f"asset id {asset_id} is not related to product id {product_id}"
            raise SearchError(404, [{"field": "asset_id", "msg": msg}], msg)
        for label in MEDIA_LABELS - {"thumbnail"}:  # removed from every attribute (inferred)
            value = attributes.get(label)
            if isinstance(value, list):
                attributes[label] = [ref for ref in value if ref.get("id") != asset_id] or None
            elif isinstance(value, dict) and value.get("id") == asset_id:
                attributes[label] = None
        attributes = {k: v for k, v in attributes.items() if v is not None}
        thumbnail = None if row["thumbnail"] == asset_id else row["thumbnail"]
        world().touch(product_id, attributes, thumbnail=thumbnail)
        state.record_write("plytix", "DELETE", f"/api/v1/products/{product_id}/assets/{asset_id}", 204, None)
        return Response(status_code=204)

    async def product_categories(request: Request) -> Response:
        product_id = request.path_params["product_id"]
        row = world().product(product_id)
        body = await _json_body(request)
        category = world().categories.get(str((body or {}).get("id"))) if isinstance(body, dict) else None
        if category is None:
            cid = body.get("id") if isinstance(body, dict) else None
            raise SearchError(422, [{"field": "category.id", "msg": "does not exist"}], f"Unknown category {cid}")
        if category["id"] in row["categories"]:
            raise SearchError(409, [{"field": "category.id", "msg": "already linked"}],
                              f"Category id {category['id']} is already linked to product")
        world().touch(product_id, categories=[*row["categories"], category["id"]])
        state.record_write("plytix", "POST", f"/api/v1/products/{product_id}/categories", 201, body)
        return data([category], status=201)

    async def unlink_category(request: Request) -> Response:
        product_id, category_id = request.path_params["product_id"], request.path_params["category_id"]
        row = world().product(product_id)
        if category_id not in row["categories"]:
            msg = f"category_id {category_id} is not related to product id {product_id}"
            raise SearchError(404, [{"field": "asset.id", "msg": msg}], msg)  # `asset.id` is the real field name
        world().touch(product_id, categories=[c for c in row["categories"] if c != category_id])
        state.record_write("plytix", "DELETE", f"/api/v1/products/{product_id}/categories/{category_id}", 204, None)
        return Response(status_code=204)

    async def filters(request: Request) -> Response:
        kind = request.path_params["kind"]
        if kind == "asset":
            attrs = [{"filter_type": "TextAttribute", "key": k, "operators": list(v[1])} for k, v in ASSET_PROPERTIES.items()]
            return data([{"attributes": attrs, "properties": []}])
        if kind != "product":
            raise SearchError(404, None, WERKZEUG_404)
        attrs = [{"filter_type": "DateAttribute", "key": "modified", "operators": list(product_field("modified")[1])},
                 {"filter_type": "DropdownAttribute", "key": "status", "operators": list(product_field("status")[1])}]
        for attr in ATTRIBUTES.values():
            entry = {"filter_type": attr.type_class, "key": f"attributes.{attr.label}", "operators": list(attr.operators)}
            if attr.options:
                entry["options"] = list(attr.options)
            attrs.append(entry)
        return data([{"attributes": attrs, "properties": [{"filter_type": "BooleanAttribute", "key": "_is_variation",
                                                           "operators": ["eq"]}]}])

    async def attributes_search(request: Request) -> Response:
        await _json_body(request)
        items = [{"filter_type": a.type_class, "groups": ["5c582a979e877f04666c649c"], "id": a.id, "label": a.label,
                  "name": a.name, "options": list(a.options), "type_class": a.type_class} for a in ATTRIBUTES.values()]
        return data(items, pagination={"count": len(items), "order": None, "page": 1, "page_size": 100,
                                       "total_count": len(items)})

    async def jobs(request: Request) -> Response:
        return error(403, "Forbidden")

    async def fallback(request: Request) -> Response:
        return error(404, WERKZEUG_404)

    wrap = lambda handler: pim_endpoint(state, handler)  # noqa: E731
    return [
        Route("/api/v1/products/search", wrap(products_search), methods=["POST"]),
        Route("/api/v1/products", wrap(products_collection), methods=["GET", "POST", "PUT", "DELETE"]),
        Route("/api/v1/products/{product_id}", wrap(product), methods=["GET", "PATCH"]),
        Route("/api/v1/products/{product_id}/assets", wrap(product_assets), methods=["GET", "POST"]),
        Route("/api/v1/products/{product_id}/assets/{asset_id}", wrap(unlink_asset), methods=["DELETE"]),
        Route("/api/v1/products/{product_id}/categories", wrap(product_categories), methods=["POST"]),
        Route("/api/v1/products/{product_id}/categories/{category_id}", wrap(unlink_category), methods=["DELETE"]),
        Route("/api/v1/assets", wrap(create_asset), methods=["POST"]),
        Route("/api/v1/assets/search", wrap(assets_search), methods=["POST"]),
        Route("/api/v1/categories/product/search", wrap(categories_search), methods=["POST"]),
        Route("/api/v1/filters/{kind}", wrap(filters), methods=["GET"]),
        Route("/api/v1/attributes/product/search", wrap(attributes_search), methods=["POST"]),
        Route("/api/v1/jobs/{rest:path}", wrap(jobs), methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
        Route("/{rest:path}", fallback, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
    ]


def _already_linked(asset_id: str) -> SearchError:
    return SearchError(409, [{"field": "asset.id", "msg": "already linked"}],
                       f"Asset id {asset_id} is already linked to product attribute")


def _asset_full(row: dict) -> dict:
    filename = row["filename"]
    return {"assigned": bool(row.get("assigned")), "categories": [], "content_type": "image/jpeg",
            "created": stamp(row["created"]), "extension": filename.rsplit(".", 1)[-1],
            "file_modified": row["created"].strftime("%Y-%m-%dT%H:%M:%S.%f"), "file_size": row["file_size"],
            "file_type": "IMAGES", "filename": filename, "id": row["id"], "modified": stamp(row["modified"]),
            "n_catalogs": 0, "n_products": row.get("n_products", 0), "public": True, "status": "ACTIVE",
            "thumbnail": f"https://files.plytix.com/api/v1.1/thumb/{filename}",
            "url": f"https://files.plytix.com/api/v1.1/file/{filename}"}


SERVICE = ServiceDef(prefix="plytix", routes=pim_routes, error_renderer=error_renderer,
                     request_id_header="X-Kong-Request-Id", expire_tokens=expire_tokens)
AUTH_SERVICE = ServiceDef(prefix="plytix-auth", routes=auth_routes, error_renderer=error_renderer,
                          request_id_header="X-Kong-Request-Id", expire_tokens=expire_tokens)
