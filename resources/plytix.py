"""Plytix PIM v1 client and Dagster resource (../shared/contracts/plytix.md §7 "What a client must do").

Reads come out as raw pages (lists of dicts) so extraction can stream them into DuckDB without a
model per record; `PlytixProduct` validates one record where a typed view is worth it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import httpx
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from resources.http import Conflict, HttpService, MalformedResponse, Pacer, RequestRejected, RetryPolicy, ServiceError

PAGE_SIZE = 100  # the service's maximum
SPLIT_ABOVE = 9_000  # split a window before it reaches the 10 000 sort cap
ONE_SECOND = timedelta(seconds=1)


def parse_timestamp(value: str | datetime) -> datetime:
    """Plytix timestamps come with or without offset and microseconds; naive means UTC."""
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def format_timestamp(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def media_id(ref: Any) -> str | None:
    """A media reference as `{"id"}`, a bare id, or an expanded asset object."""
    if isinstance(ref, dict):
        return ref.get("id")
    return ref if isinstance(ref, str) and ref else None


class PlytixProduct(BaseModel):
    """One product as search returns it (only `id` and `sku` are always there)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    id: str = Field(pattern=r"^[0-9a-f]{24}$")
    sku: str
    parent_id: str | None = Field(None, alias="_parent_id")
    label: str | None = None
    status: str | None = None
    modified: datetime | None = None
    num_variations: int = 0
    categories: list[str] = []
    thumbnail: str | None = None
    attributes: dict[str, Any] = {}

    @field_validator("modified", mode="before")
    @classmethod
    def _timestamp(cls, value):
        if value is not None and not isinstance(value, str | datetime):  # an epoch number is not the contract's
            raise ValueError(f"expected an ISO 8601 timestamp, got {type(value).__name__}")
        return None if value is None else parse_timestamp(value)

    @field_validator("categories", mode="before")
    @classmethod
    def _category_ids(cls, value):
        if value is not None and not isinstance(value, list):  # a bare string would read as one id per letter
            raise ValueError(f"expected a list of category references, got {type(value).__name__}")
        return [media_id(ref) for ref in value or [] if media_id(ref)]

    @field_validator("thumbnail", mode="before")
    @classmethod
    def _thumbnail(cls, value):
        return media_id(value)


class PlytixClient:
    """Token handling, pagination across the sort cap, and idempotent writes for Plytix v1."""

    def __init__(self, auth_url: str, api_url: str, api_key: str, api_password: str, *,
                 max_requests_per_second: float | None = 2.0, timeout_s: float = 30.0, max_attempts: int = 8,
                 split_above: int = SPLIT_ABOVE, transport: httpx.BaseTransport | None = None,
                 sleep=time.sleep, clock=time.time):
        self.split_above = split_above
        self._credentials = {"api_key": api_key, "api_password": api_password}
        self._clock = clock
        timeout = httpx.Timeout(timeout_s, connect=min(10.0, timeout_s))
        # One pacer for both hosts: the account's budget is shared by every call.
        pacer = Pacer(max_requests_per_second, sleep=sleep)
        self.api = HttpService("plytix", api_url, timeout=timeout, pacer=pacer, transport=transport, sleep=sleep,
                               retry=RetryPolicy(max_attempts=max_attempts, base_delay_s=1.0, max_delay_s=60.0),
                               headers={"Accept": "application/json"})
        # The auth host: 429 waits Retry-After else 10 s doubling to 120 s; 5xx every ~5 s, 6 tries.
        self.auth = HttpService("plytix-auth", auth_url, timeout=timeout, transport=transport, sleep=sleep,
                                retry=RetryPolicy(max_attempts=min(6, max_attempts), base_delay_s=10.0,
                                                  max_delay_s=120.0, server_error_delay_s=5.0))
        self._token: str | None = None
        self._refresh_at = 0.0
        self._lock = threading.Lock()
        self.token_fetches = 0

    def close(self) -> None:
        self.api.close()
        self.auth.close()

    # ---- auth ----
    def _headers(self) -> dict[str, str]:
        if self._token is None or self._clock() >= self._refresh_at:
            self._refresh(stale=self._token)
        return {"Authorization": f"Bearer {self._token}"}

    def _refresh(self, stale: str | None = None) -> None:
        """Single flight: a thread that finds the token already replaced uses the new one."""
        with self._lock:
            if self._token is not None and self._token != stale and self._clock() < self._refresh_at:
                return
            reply = self.auth.request("POST", "/auth/api/get-token", json=self._credentials, idempotent=True)
            token = reply.body["data"][0]["access_token"]
            self._token, self._refresh_at = token, self._refresh_deadline(token)
            self.token_fetches += 1

    def _refresh_deadline(self, token: str) -> float:
        """Refresh 60 s before `exp` (read unverified; fallback `iat + 900`), short-lived tokens at 3/4
        of their life. Counted from our own clock at receipt, so clock skew with the server is harmless."""
        try:
            claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
            lifetime = float(claims["exp"]) - float(claims["iat"])
        except (ValueError, IndexError, KeyError, TypeError):
            lifetime = 900.0
        return self._clock() + lifetime - min(60.0, lifetime / 4)

    def _call(self, method: str, path: str, **kwargs):
        # The token a 401 refused is the one last sent, not the one held when the call began: a retry may
        # have sent a newer one (refreshed by another thread or before its deadline), and a refresh keyed
        # on the older one would be skipped, sending the refused token again.
        sent: list[str | None] = [None]

        def auth() -> dict[str, str]:
            headers = self._headers()
            sent[0] = headers["Authorization"].removeprefix("Bearer ")
            return headers

        return self.api.request(method, path, auth=auth, on_unauthorized=lambda: self._refresh(stale=sent[0]),
                                **kwargs)

    # ---- products ----
    def search_products(self, filters: list | None = None, attributes: list[str] | None = None, *, page: int = 1,
                        page_size: int = PAGE_SIZE, order: str | None = None) -> dict:
        """One raw search page: `{"data": [...], "pagination": {...}}`."""
        body = {"filters": filters or [], "attributes": attributes or [],
                "pagination": {"page": page, "page_size": page_size, "order": order}}
        where = f"page {page} ({_describe(filters)}{f', by {order}' if order else ''})"
        try:
            reply = self._call("POST", "/api/v1/products/search", json=body)
        except ServiceError as exc:
            # Every page of every read is this one path: name the page, so the error says which one failed.
            raise type(exc)(exc.service, exc.method, exc.path, exc.status, exc.request_id, f"{where}: {exc.detail}",
                            exc.attempts) from None
        if order == "modified":  # a keyset read steers by `modified`: one it cannot read fails it, by name
            for index, item in enumerate((reply.body or {}).get("data") or []):
                value = item.get("modified") if isinstance(item, dict) else None
                try:
                    parse_timestamp(value)
                except (TypeError, ValueError, AttributeError):
                    raise MalformedResponse("plytix", "POST", "/api/v1/products/search", reply.status,
                                            reply.request_id, f"{where}: record {index} (id {record_id(item)}): "
                                            f"modified {str(value)[:40]!r} is not a timestamp") from None
        return reply.body

    def count_products(self, filters: list) -> int:
        """Unsorted probe with page_size 1: reads `total_count` without any risk of a 428."""
        return int(self.search_products(filters, page_size=1)["pagination"]["total_count"])

    def iter_product_pages(self, filters: list | None = None, attributes: list[str] | None = None) -> Iterator[list[dict]]:
        """Offset paging, unsorted: for small result sets (SKU lookups, one instant of a burst)."""
        page = 1
        while True:
            reply = self.search_products(filters, attributes, page=page)
            items = reply["data"]
            if items:
                yield items
            total = int(reply["pagination"].get("total_count", 0))
            if len(items) < PAGE_SIZE or page * PAGE_SIZE >= total:
                return
            page += 1

    def iter_modified(self, lo: datetime, hi: datetime, attributes: list[str] | None = None) -> Iterator[list[dict]]:
        """Every product with `lo <= modified < hi`, page by page, across the 10 000 sort cap.

        Windows over SPLIT_ABOVE matches are halved; each window is read by keyset on `modified`,
        which skips nothing when a product leaves the window mid-scan (offset paging would).
        """
        windows = [(lo, hi)]
        while windows:
            start, end = windows.pop(0)
            total = self.count_products(_window(start, end))
            if total == 0:
                continue
            if total > self.split_above and end - start > ONE_SECOND:
                windows[:0] = _halves(start, end)
                continue
            if total > self.split_above:  # a one-second window still too big to sort: read unsorted
                yield from _dedupe(self.iter_product_pages(_window(start, end), attributes))
                continue
            resume = yield from self._keyset(start, end, attributes)
            if resume is not None:  # the window grew past the cap mid-read: split what is left
                windows[:0] = _halves(resume, end)

    def _keyset(self, start: datetime, end: datetime, attributes: list[str] | None):
        fields = list(dict.fromkeys([*(attributes or []), "modified"]))
        cursor, seen_at_cursor = start, set()
        while True:
            try:
                reply = self.search_products(_window(cursor, end), fields, order="modified")
            except RequestRejected as exc:
                if exc.status == 428:
                    return cursor
                raise
            items = reply["data"]
            fresh = _unseen(items, seen_at_cursor)
            if fresh:
                yield fresh
            if len(items) < PAGE_SIZE:
                return None
            last = parse_timestamp(items[-1]["modified"])
            if last == cursor:  # a whole page on one instant (an import burst): read the instant
                seen = set(seen_at_cursor) | {record_id(item) for item in items}
                for page in self.iter_product_pages([[_filter("modified", "eq", cursor)]], fields):
                    fresh = _unseen(page, seen)
                    if fresh:
                        yield fresh
                    seen.update(record_id(item) for item in page)
                reply_after = [[_filter("modified", "gt", cursor), _filter("modified", "lt", end)]]
                resume = yield from self._after_instant(reply_after, end, fields)
                return resume
            seen_at_cursor = {record_id(item) for item in items if parse_timestamp(item["modified"]) == last}
            cursor = last

    def _after_instant(self, filters: list, end: datetime, fields: list[str]):
        """Continue a keyset read strictly after a burst instant."""
        first = self.search_products(filters, fields, page=1, page_size=1, order="modified")["data"]
        if not first:
            return None
        return (yield from self._keyset(parse_timestamp(first[0]["modified"]), end, fields))

    def iter_skus(self, skus: list[str], attributes: list[str] | None = None) -> Iterator[list[dict]]:
        """Products by SKU, at most 100 SKUs a request and no order, as the contract says."""
        for i in range(0, len(skus), 100):
            yield from self.iter_product_pages([[_filter("sku", "in", skus[i:i + 100])]], attributes)

    def get_product(self, product_id: str, *, all_attributes: bool = False) -> dict:
        params = {"all_attributes": "true"} if all_attributes else None
        return self._call("GET", f"/api/v1/products/{product_id}", params=params).body["data"][0]

    def patch_product(self, product_id: str, changes: dict) -> dict:
        """PATCH is safe to retry; callers diff first, because every PATCH bumps `modified`."""
        return self._call("PATCH", f"/api/v1/products/{product_id}", json=changes).body["data"][0]

    def update_product_if_changed(self, product_id: str, status: str | None = None,
                                  attributes: dict | None = None) -> bool:
        """Send only what differs from the product as it stands; False when nothing did."""
        current = self.get_product(product_id)
        changes: dict = {}
        if status is not None and current.get("status") != status:
            changes["status"] = status
        wanted = {k: v for k, v in (attributes or {}).items() if current["attributes"].get(k) != v}
        if wanted:
            changes["attributes"] = wanted
        if not changes:
            return False
        self.patch_product(product_id, changes)
        return True

    # ---- assets ----
    def create_asset(self, url: str, filename: str) -> str:
        """Create an asset from a URL; an existing one (409, id in `errors[0].msg`) counts as success."""
        reply = self._call("POST", "/api/v1/assets", json={"url": url, "filename": filename}, ok_statuses=(409,))
        if reply.status == 409:
            return reply.body["error"]["errors"][0]["msg"]
        return reply.body["data"][0]["id"]

    def find_asset(self, filename: str) -> dict | None:
        body = {"filters": [[_filter("filename", "eq", filename)]], "attributes": ["filename", "url"],
                "pagination": {"page": 1, "page_size": 1, "order": None}}
        items = self._call("POST", "/api/v1/assets/search", json=body).body["data"]
        return items[0] if items else None

    def link_asset(self, product_id: str, asset_id: str, attribute_label: str) -> bool:
        """Link an asset; False if it already was (409 already linked counts as success)."""
        reply = self._call("POST", f"/api/v1/products/{product_id}/assets", ok_statuses=(409,),
                           json={"id": asset_id, "attribute_label": attribute_label})
        return reply.status != 409

    def unlink_asset(self, product_id: str, asset_id: str) -> None:
        self._call("DELETE", f"/api/v1/products/{product_id}/assets/{asset_id}")

    def product_assets(self, product_id: str) -> list[dict]:
        return self._call("GET", f"/api/v1/products/{product_id}/assets").body["data"]

    # ---- categories and definitions ----
    def iter_categories(self) -> Iterator[dict]:
        page = 1
        while True:
            body = {"filters": [], "pagination": {"page": page, "page_size": PAGE_SIZE, "order": None}}
            reply = self._call("POST", "/api/v1/categories/product/search", json=body).body
            yield from reply["data"]
            if len(reply["data"]) < PAGE_SIZE or page * PAGE_SIZE >= int(reply["pagination"]["total_count"]):
                return
            page += 1

    def link_category(self, product_id: str, category_id: str) -> bool:
        try:
            self._call("POST", f"/api/v1/products/{product_id}/categories", json={"id": category_id})
        except Conflict:
            return False
        return True

    def unlink_category(self, product_id: str, category_id: str) -> None:
        self._call("DELETE", f"/api/v1/products/{product_id}/categories/{category_id}")

    def product_filters(self) -> dict:
        return self._call("GET", "/api/v1/filters/product").body["data"][0]

    def attribute_definitions(self) -> list[dict]:
        body = {"filters": [], "pagination": {"page": 1, "page_size": PAGE_SIZE, "order": None}}
        return self._call("POST", "/api/v1/attributes/product/search", json=body).body["data"]


def _filter(field: str, operator: str, value: Any) -> dict:
    if isinstance(value, datetime):
        value = format_timestamp(value)
    return {"field": field, "operator": operator, "value": value}


def _describe(filters: list | None) -> str:
    """Search filters in one short line for an error message (a long value list by its size only)."""
    def value(v: Any) -> str:
        return f"[{len(v)} values]" if isinstance(v, list) else str(v)
    groups = [" and ".join(f"{f.get('field')} {f.get('operator')} {value(f.get('value'))}" for f in group)
              for group in filters or []]
    return " or ".join(groups) or "all products"


def _window(start: datetime, end: datetime) -> list:
    return [[_filter("modified", "gte", start), _filter("modified", "lt", end)]]


def record_id(item: Any) -> str:
    """What a search result is deduplicated by: its id, or for a record without one (passed on, to be
    quarantined) a digest of its content, so re-reading it at a window's edge does not repeat it."""
    found = item.get("id") if isinstance(item, dict) else None
    if isinstance(found, str):
        return found
    content = json.dumps(item, sort_keys=True, default=repr, ensure_ascii=True)
    return "unidentified:" + hashlib.sha256(content.encode()).hexdigest()


def _unseen(items: list, seen: set) -> list:
    return [item for item in items if record_id(item) not in seen]


def _halves(start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    middle = start + (end - start) / 2
    return [(start, middle), (middle, end)]


def _dedupe(pages: Iterator[list[dict]]) -> Iterator[list[dict]]:
    seen: set[str] = set()
    for page in pages:
        fresh = _unseen(page, seen)
        seen.update(record_id(item) for item in page)
        if fresh:
            yield fresh


class PlytixResource(dg.ConfigurableResource):
    """Plytix PIM (product master). Unset env vars mean the embedded sandbox."""

    auth_url: str
    api_url: str
    api_key: str
    api_password: str
    max_requests_per_second: float = Field(2.0, description="Client-side pace shared by all calls (contract: <= 2/s).")
    timeout_s: float = 30.0
    max_attempts: int = 8
    _client: PlytixClient | None = PrivateAttr(None)

    def get_client(self) -> PlytixClient:
        if self._client is None:
            self._client = PlytixClient(self.auth_url, self.api_url, self.api_key, self.api_password,
                                        max_requests_per_second=self.max_requests_per_second,
                                        timeout_s=self.timeout_s, max_attempts=self.max_attempts)
        return self._client

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._client is not None:
            self._client.close()
