"""Threekit record shapes (threekit.md §4-§6): ids, timestamps, world rows rendered as the API sends them.

Threekit publishes little of its REST API, so most of what is here is the contract's one chosen
shape for an inferred behaviour (error bodies, the list envelope's `sort`, the variant object).
Keeping every shape in this module means a correction is made in one place. The world generator
imports the ids from here too, so the sandbox and its world agree on them.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from starlette.responses import JSONResponse, Response

ORG_ID = "00000000-0000-4000-8000-000000000001"
PRIVATE_TOKEN = "sandbox-threekit-token"
# Browser tokens travel as `?bearer_token=`; the contract names no sandbox value, so this one is ours.
PUBLIC_TOKEN = "sandbox-threekit-public-token"
USER_ID = "0f1e2d3c-4b5a-4968-8776-5a4b3c2d1e0f"  # `createdBy` of the org's pricebooks and webhooks
THUMBNAIL_HOST = "https://admin-fts.threekit.com"
STATUSES = ("List", "In Cart", "New", "In Progress", "Complete", "Cancelled")
VARIANT_STATUSES = ("active", "deactivated", "invalid")
ORDER_NAME_MAX = 255
DEFAULT_PER_PAGE, VARIANT_PER_PAGE, MAX_PER_PAGE = 30, 50, 100
DEFAULT_SORT = "-createdAt"
ONE_MS = timedelta(milliseconds=1)

# Ids are UUIDs (version 4 layout); each kind of record has its own first group, so an id says
# what it is when read in a log, and the world can derive any id from its number alone.
_UUID_KIND = {
    "pricebook": "7e6d0000", "material": "3a7e0000", "item": "c0a80000", "model": "9a8b0000",
    "variant": "d4e50000", "configuration": "5f9e0000", "order": "b7c80000", "file": "3e4f0000",
    "thumbnail": "5d1c0000", "customer": "c5710000", "option": "e1f20000", "webhook": "6a7b0000",
}
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SHORT_SPACE = 62**9
# 3**24 is coprime with 62, so n -> (n * step + salt) mod 62**9 is a bijection (no two shortIds
# collide), and small enough that the product stays in BIGINT for ten million records.
_SHORT_STEP = 3**24
_SHORT_SALT = {"configuration": 7_777_777_777_777, "order": 3_333_333_333_333}


def tk_uuid(kind: str, number: int) -> str:
    return f"{_UUID_KIND[kind]}-0000-4000-8000-{number:012x}"


def uuid_sql(kind: str, number_sql: str) -> str:
    """`tk_uuid` as a DuckDB expression, for records generated in SQL."""
    return f"'{_UUID_KIND[kind]}-0000-4000-8000-' || lpad(lower(to_hex(CAST({number_sql} AS BIGINT))), 12, '0')"


def short_id_sql(kind: str, number_sql: str) -> str:
    """A DuckDB expression for the 9-character base62 `shortId` of record `number` of a kind
    (configurations and orders)."""
    value = f"((CAST({number_sql} AS BIGINT) * {_SHORT_STEP} + {_SHORT_SALT[kind]}) % {_SHORT_SPACE})"
    digits = [f"substr('{_BASE62}', CAST(({value} // {62**p}) % 62 AS INTEGER) + 1, 1)" for p in range(9)]
    return f"concat({', '.join(digits)})"


def to_ms(value: datetime) -> datetime:
    """Threekit keeps milliseconds; the world stores exactly what the API shows."""
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def stamp(value: datetime | None) -> str | None:
    """`2026-11-20T16:05:12.345Z` (naive values in the world are UTC)."""
    if value is None:
        return None
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _json(value):
    return json.loads(value) if isinstance(value, str) else value


# ---------- errors (§3, §6: every body is inferred) ----------
def fail(status: int, code: str, message: str, details: list[dict] | None = None,
         headers: dict[str, str] | None = None) -> JSONResponse:
    error: dict = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    return JSONResponse({"error": error}, status_code=status, headers=headers)


def unauthorized() -> JSONResponse:
    return fail(401, "unauthorized", "Invalid or missing access token")


def forbidden(org_id: str) -> JSONResponse:
    return fail(403, "forbidden", f"Token is not authorized for org {org_id}")


def rate_limited(retry_after_s: int) -> JSONResponse:
    return fail(429, "rate_limited", "Too many requests", headers={"Retry-After": str(retry_after_s)})


def not_found(what: str, ident: str) -> JSONResponse:
    return fail(404, "not_found", f"{what} {ident} not found")


def bad_request(message: str) -> JSONResponse:
    return fail(400, "bad_request", message)


def invalid_order(details: list[dict]) -> JSONResponse:
    return fail(422, "validation_error", "Invalid order", details)


def error_renderer(status: int) -> tuple[dict[str, str], bytes]:
    """Injected faults in Threekit's shapes; a gateway's 502/503 is HTML, not JSON (§6)."""
    if status == 429:
        return {"Retry-After": "1"}, b'{"error":{"code":"rate_limited","message":"Too many requests"}}'
    if status in (502, 503):
        text = "Bad Gateway" if status == 502 else "Service Temporarily Unavailable"
        return {}, f"<html><body><h1>{status} {text}</h1></body></html>".encode()
    return {}, b'{"error":{"code":"internal","message":"Internal server error"}}'


def envelope(resource: str, rows: list[dict], count: int, page: int, per_page: int, sort: str | None) -> Response:
    """`{count, page, perPage, sort, <resource>}`; variants alone carry no `sort` (§4.1)."""
    body: dict = {"count": count, "page": page, "perPage": per_page}
    if sort is not None:
        body["sort"] = sort
    body[resource] = rows
    return JSONResponse(body)


# ---------- records (§4): exactly these keys, nulls included ----------
CONFIGURATION_COLUMNS = "id, short_id, product_id, product_version, variant, metadata, customer_id, thumbnail, created_at"
ORDER_COLUMNS = ("id, short_id, name, customer_id, origin_org_id, platform, metadata, cart, derivative, status, "
                 "created_at, updated_at")
ASSET_COLUMNS = ("id, name, type, description, tags, keywords, categories, metadata, proxy_id, branch, "
                 "imported_file_id, attributes, created_at, updated_at, published_at")
PRICEBOOK_COLUMNS = "id, name, currencies, created_at, created_by, deleted_at"
VARIANT_COLUMNS = "id, custom_id, item_id, status, options, created_at, updated_at"


def configuration(row: dict) -> dict:
    return {"id": row["id"], "shortId": row["short_id"], "orgId": ORG_ID, "productId": row["product_id"],
            "productVersion": row["product_version"], "variant": _json(row["variant"]),
            "metadata": _json(row["metadata"]), "customerId": row["customer_id"], "thumbnail": row["thumbnail"],
            "attachments": {}, "identifier": None, "scope": None, "createdAt": stamp(row["created_at"])}


def order(row: dict) -> dict:
    # `items` is deprecated in favour of `cart`; the sandbox always answers it empty (§4.3).
    return {"id": row["id"], "shortId": row["short_id"], "orgId": ORG_ID, "name": row["name"],
            "customerId": row["customer_id"], "originOrgId": row["origin_org_id"],
            "platform": _json(row["platform"]), "metadata": _json(row["metadata"]), "items": [],
            "cart": _json(row["cart"]), "derivative": _json(row["derivative"]), "status": row["status"],
            "createdAt": stamp(row["created_at"]), "updatedAt": stamp(row["updated_at"])}


def catalog_product(row: dict) -> dict:
    return {"id": row["id"], "name": row["name"], "description": row["description"], "orgId": ORG_ID,
            "proxyId": row["proxy_id"], "keywords": list(row["keywords"]), "categories": list(row["categories"]),
            "metadata": _json(row["metadata"])}


def asset(row: dict) -> dict:
    return {"id": row["id"], "name": row["name"], "type": row["type"], "orgId": ORG_ID, "tags": list(row["tags"]),
            "keywords": list(row["keywords"]), "metadata": _json(row["metadata"]), "proxyId": row["proxy_id"],
            "branch": row["branch"], "importedFileId": row["imported_file_id"],
            "attributes": _json(row["attributes"]), "createdAt": stamp(row["created_at"]),
            "updatedAt": stamp(row["updated_at"]), "publishedAt": stamp(row["published_at"])}


def pricebook(row: dict) -> dict:
    return {"id": row["id"], "orgId": ORG_ID, "name": row["name"], "currencies": list(row["currencies"]),
            "createdAt": stamp(row["created_at"]), "createdBy": row["created_by"],
            "deletedAt": stamp(row["deleted_at"])}


def variant(row: dict) -> dict:
    return {"id": row["id"], "customId": row["custom_id"], "itemId": row["item_id"], "status": row["status"],
            "options": _json(row["options"]), "createdAt": stamp(row["created_at"]),
            "updatedAt": stamp(row["updated_at"])}


def webhook(row_id: str, address: str, topic: str, created: str) -> dict:
    """One row per (registration, topic); a registration is never edited, so updatedAt = createdAt."""
    return {"id": row_id, "address": address, "topic": topic, "orgId": ORG_ID, "createdBy": USER_ID,
            "createdAt": created, "updatedAt": created, "deletedAt": None}
