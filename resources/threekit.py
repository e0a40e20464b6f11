"""Threekit REST client and Dagster resource (../shared/contracts/threekit.md §7 "What a client must do").

Every request carries the private token and `orgId`; 401 and 403 are fatal. Lists are read with
`perPage=100` and stop on an empty page or when `page x perPage >= count`, with the `perPage` the
service echoes (it clamps). Incremental reads walk newest first and stop five minutes past the
high-water mark, deduplicating by id because offset pages shift when rows arrive mid-read. The only
write is a status note on an order: read, merge `metadata`, PUT `status` and `metadata` only, read
back to confirm (there is no ETag); a 422 is logged and the order skipped, never retried.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import dagster as dg
import httpx
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from resources.http import (
    AuthenticationFailed,
    HttpService,
    MalformedResponse,
    Pacer,
    Reply,
    RequestRejected,
    RetryPolicy,
)

log = logging.getLogger("catalog_ops.threekit")

PER_PAGE = 100  # the documented maximum
OVERLAP = timedelta(minutes=5)  # re-read this far behind the high-water mark
STATUS_NOTE_MAX = 1_000  # project convention (§4.3)
STATUSES = ("List", "In Cart", "New", "In Progress", "Complete", "Cancelled")
# resource -> (path, envelope key, sort, the timestamp the sort is on) for incremental reads (§7).
INCREMENTAL = {
    "configurations": ("/api/configurations", "configurations", "-createdAt", "createdAt"),
    "orders": ("/api/orders", "orders", "-updatedAt", "updatedAt"),
    "assets": ("/api/assets", "assets", "-updatedAt", "updatedAt"),
}


# ---------- parsing ----------
def parse_time(value: str | None) -> datetime | None:
    """`2026-11-20T16:05:12.345Z` as an aware UTC datetime."""
    if not value:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def time_field(raw: dict, name: str) -> datetime | None:
    """`raw[name]` read by `parse_time`; a value that is not a timestamp is refused naming the field."""
    value = raw.get(name)
    try:
        return parse_time(value)
    except (TypeError, ValueError, AttributeError):
        raise ValueError(f"{name}: expected an ISO 8601 timestamp, got {printable_value(value)}") from None


def printable_value(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def format_time(value: datetime) -> str:
    value = value.astimezone(UTC) if value.tzinfo else value
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def to_decimal(value: Any) -> Decimal | None:
    """A price as Decimal: JSON numbers through `str()` (never the float's binary expansion),
    decimal strings as written; anything else (missing, empty, not a finite number) is None."""
    if value is None or isinstance(value, bool):
        return None
    try:
        amount = Decimal(str(value).strip()) if isinstance(value, int | float | str) else None
    except InvalidOperation:
        return None
    return amount if amount is not None and amount.is_finite() else None


class AssetRef(BaseModel):
    """An asset attribute's value, `{"assetId": ...}`."""

    model_config = ConfigDict(frozen=True)
    asset_id: str


def variant_value(value: Any) -> Any:
    """A configuration's chosen value: a string, a number (as Decimal) or an asset reference.
    Any other shape is passed through unchanged rather than refused."""
    if isinstance(value, dict) and isinstance(value.get("assetId"), str) and set(value) == {"assetId"}:
        return AssetRef(asset_id=value["assetId"])
    if isinstance(value, int | float) and not isinstance(value, bool):
        return Decimal(str(value))
    return value


class Configuration(BaseModel):
    id: str
    short_id: str | None = None
    product_id: str | None = None
    product_version: str | None = None
    variant: dict[str, Any] = {}
    metadata: dict[str, Any] = {}
    # None when `metadata.price` is missing or not a number: a finding for the caller, not an error.
    price: Decimal | None = None
    currency: str | None = None
    pricebook_id: str | None = None
    shopify_line_item_id: str | None = None
    customer_id: str | None = None
    thumbnail: str | None = None
    created_at: datetime | None = None

    @classmethod
    def from_api(cls, raw: dict) -> Configuration:
        metadata = raw.get("metadata") if isinstance(raw.get("metadata"), dict) else {}
        variant = raw.get("variant") if isinstance(raw.get("variant"), dict) else {}
        return cls(id=raw["id"], short_id=raw.get("shortId"), product_id=raw.get("productId"),
                   product_version=raw.get("productVersion"),
                   variant={name: variant_value(v) for name, v in variant.items()}, metadata=metadata,
                   price=to_decimal(metadata.get("price")), currency=metadata.get("currency"),
                   pricebook_id=metadata.get("pricebookId"), shopify_line_item_id=metadata.get("shopifyLineItemId"),
                   customer_id=raw.get("customerId"), thumbnail=raw.get("thumbnail"),
                   created_at=time_field(raw, "createdAt"))


class CartLine(BaseModel):
    configuration_id: str
    count: int = 1
    metadata: dict[str, Any] = {}


class Order(BaseModel):
    id: str
    short_id: str | None = None
    name: str | None = None
    status: str
    platform: dict[str, Any] | None = None
    metadata: dict[str, Any] = {}
    cart: list[CartLine] = []
    customer_id: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @classmethod
    def from_api(cls, raw: dict) -> Order:
        cart = [CartLine(configuration_id=line["configurationId"], count=line.get("count", 1),
                         metadata=line.get("metadata") or {})
                for line in raw.get("cart") or [] if isinstance(line, dict) and line.get("configurationId")]
        return cls(id=raw["id"], short_id=raw.get("shortId"), name=raw.get("name"), status=raw["status"],
                   platform=raw.get("platform"), metadata=raw.get("metadata") or {}, cart=cart,
                   customer_id=raw.get("customerId"), created_at=time_field(raw, "createdAt"),
                   updated_at=time_field(raw, "updatedAt"))

    @property
    def shopify_order_id(self) -> str | None:
        return (self.platform or {}).get("id") or self.metadata.get("shopifyOrderId")


class Pricebook(BaseModel):
    id: str
    name: str | None = None
    currencies: list[str] = []
    deleted_at: datetime | None = None

    @classmethod
    def from_api(cls, raw: dict) -> Pricebook:
        return cls(id=raw["id"], name=raw.get("name"), currencies=raw.get("currencies") or [],
                   deleted_at=time_field(raw, "deletedAt"))


class Asset(BaseModel):
    """An item or a model (other asset types are read as well, but the project ignores them)."""

    id: str
    name: str | None = None
    type: str
    metadata: dict[str, Any] = {}
    proxy_id: str | None = None
    attributes: list[dict] = []
    created_at: datetime | None = None
    updated_at: datetime | None = None
    published_at: datetime | None = None
    # pricebook id -> currency -> amount, from the item's `Pricing` attributes.
    prices: dict[str, dict[str, Decimal]] = {}

    @classmethod
    def from_api(cls, raw: dict) -> Asset:
        attributes = raw.get("attributes") or []
        if not isinstance(attributes, list) or not all(isinstance(a, dict) for a in attributes):
            raise ValueError(f"attributes: expected a list of objects, got {printable_value(attributes)}")
        prices: dict[str, dict[str, Decimal]] = {}
        for attribute in attributes:
            if attribute.get("type") != "Pricing":
                continue
            for entry in attribute.get("values") or []:
                currencies = entry.get("currencies") if isinstance(entry, dict) else None
                if not isinstance(currencies, dict | None):
                    raise ValueError(f"attributes.{attribute.get('name')}.currencies: expected an object, "
                                     f"got {printable_value(currencies)}")
                amounts = {c: to_decimal(a) for c, a in (currencies or {}).items()}
                prices.setdefault(entry.get("pricebook"), {}).update({c: a for c, a in amounts.items() if a is not None})
        return cls(id=raw["id"], name=raw.get("name"), type=raw.get("type", ""),
                   metadata=raw.get("metadata") or {}, proxy_id=raw.get("proxyId"),
                   attributes=attributes, created_at=time_field(raw, "createdAt"),
                   updated_at=time_field(raw, "updatedAt"), published_at=time_field(raw, "publishedAt"),
                   prices=prices)

    def price(self, pricebook_id: str, currency: str) -> Decimal | None:
        return self.prices.get(pricebook_id, {}).get(currency)

    def offers(self, attribute: str, value: Any) -> bool | None:
        """Whether a chosen value is one the item offers; None when the attribute is unknown.
        An attribute with no listed values is free input (a monogram, a width)."""
        for candidate in self.attributes:
            if candidate.get("name") == attribute:
                allowed = [variant_value(v) for v in candidate.get("values") or []]
                return not allowed or variant_value(value) in allowed
        return None

    @property
    def has_unpublished_changes(self) -> bool:
        """Never published, or edited since the last publish (§4.5)."""
        return self.published_at is None or (self.updated_at is not None and self.updated_at > self.published_at)


@dataclass
class IncrementalRead:
    """Pages of rows changed since a mark. Persist `next_mark` (the read's start) only once every
    page has been consumed and stored."""

    next_mark: datetime
    pages: Iterator[list[dict]]


@dataclass
class WriteResult:
    order_id: str
    applied: bool  # the re-read order shows what was written
    written: bool  # a PUT was sent and accepted
    order: Order | None = None
    details: list[dict] = field(default_factory=list)  # the 422's, when the order was skipped


class ThreekitClient:
    def __init__(self, api_url: str, org_id: str, token: str, *, max_requests_per_second: float | None = 15.0,
                 timeout_s: float = 30.0, max_attempts: int = 6, transport: httpx.BaseTransport | None = None,
                 sleep: Callable[[float], None] = time.sleep, now: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.org_id = org_id
        self._token = token
        self._now = now
        # 429: Retry-After, else 1 s doubling to 30 s; 5xx and timeouts the same; 6 tries in all (§7).
        self.http = HttpService(
            "threekit", api_url, timeout=httpx.Timeout(timeout_s, connect=min(10.0, timeout_s)),
            retry=RetryPolicy(max_attempts=max_attempts, base_delay_s=1.0, max_delay_s=30.0),
            pacer=Pacer(max_requests_per_second, sleep=sleep), transport=transport, sleep=sleep,
            headers={"Accept": "application/json"},
        )

    def close(self) -> None:
        self.http.close()

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"}

    def _call(self, method: str, path: str, params: dict | None = None, **kwargs) -> Reply:
        try:
            return self.http.request(method, path, params={"orgId": self.org_id, **(params or {})}, auth=self._auth,
                                     **kwargs)
        except RequestRejected as exc:
            if exc.status != 403:
                raise
            # A token of another org, or one that may not write: as fatal as a 401.
            raise AuthenticationFailed(exc.service, exc.method, exc.path, exc.status, exc.request_id, exc.detail,
                                       exc.attempts) from None

    def _get(self, path: str, params: dict | None = None) -> dict:
        body = self._call("GET", path, params).body
        if not isinstance(body, dict):
            raise MalformedResponse("threekit", "GET", path, 200, None, "expected a JSON object")
        return body

    # ---- paging ----
    def iter_pages(self, path: str, key: str, params: dict | None = None) -> Iterator[list[dict]]:
        """Raw pages of a list endpoint, `perPage=100`, trusting only the echoed `perPage`."""
        page = 1
        while True:
            body = self._get(path, {**(params or {}), "page": page, "perPage": PER_PAGE})
            if not isinstance(body.get(key), list) or "count" not in body:
                raise MalformedResponse("threekit", "GET", path, 200, None, f"no {key!r} list or count in the envelope")
            rows = body[key]
            if not rows:
                return
            yield rows
            per_page = int(body.get("perPage") or len(rows))
            if page * per_page >= int(body["count"]):
                return
            page += 1

    def read_incremental(self, resource: str, mark: datetime | None, **filters: str) -> IncrementalRead:
        """Rows of `configurations`, `orders` or `assets` changed since `mark` (everything if None)."""
        return IncrementalRead(next_mark=self._now(), pages=self._changed_pages(resource, mark, filters))

    def _changed_pages(self, resource: str, mark: datetime | None, filters: dict) -> Iterator[list[dict]]:
        path, key, sort, stamp = INCREMENTAL[resource]
        cutoff = None if mark is None else mark - OVERLAP
        seen: set[str] = set()
        for rows in self.iter_pages(path, key, {**filters, "sort": sort}):
            times = [parse_time(row.get(stamp)) for row in rows]
            fresh = [row for row, at in zip(rows, times, strict=True)
                     if row["id"] not in seen and (cutoff is None or at is None or at >= cutoff)]
            seen.update(row["id"] for row in fresh)
            if fresh:
                yield fresh
            known = [at for at in times if at is not None]
            if cutoff is not None and known and min(known) < cutoff:
                return  # this page reached past the mark's overlap: everything older is known

    # ---- reads ----
    def iter_configurations(self) -> Iterator[list[Configuration]]:
        for rows in self.iter_pages("/api/configurations", "configurations", {"sort": "-createdAt"}):
            yield [Configuration.from_api(row) for row in rows]

    def iter_orders(self, *, status: str | None = None) -> Iterator[list[Order]]:
        params = {"sort": "-updatedAt", **({"status": status} if status else {})}
        for rows in self.iter_pages("/api/orders", "orders", params):
            yield [Order.from_api(row) for row in rows]

    def iter_catalog_products(self) -> Iterator[list[dict]]:
        """The catalog is small: read it whole every run (§7)."""
        yield from self.iter_pages("/api/catalog/products", "products", {"sort": "createdAt"})

    def iter_assets(self, asset_type: str | None = None) -> Iterator[list[Asset]]:
        params = {"sort": "-updatedAt", **({"type": asset_type} if asset_type else {})}
        for rows in self.iter_pages("/api/assets", "assets", params):
            yield [Asset.from_api(row) for row in rows]

    def iter_variants(self, item_id: str, status: str | list[str] | None = None) -> Iterator[list[dict]]:
        params = {}
        if status is not None:
            params["status"] = status if isinstance(status, str) else json.dumps(status)
        yield from self.iter_pages(f"/api/catalog/items/{item_id}/variants", "variants", params)

    def pricebooks(self, *, include_deleted: bool = False) -> list[Pricebook]:
        """Every pricebook (one page with `all=true`); deleted ones are skipped unless asked for."""
        books = [Pricebook.from_api(row) for rows in
                 self.iter_pages(f"/api/orgs/{self.org_id}/pricebooks", "pricebooks", {"all": "true"}) for row in rows]
        return books if include_deleted else [b for b in books if b.deleted_at is None]

    def get_asset(self, asset_id: str) -> Asset:
        return Asset.from_api(self._get(f"/api/assets/{asset_id}"))

    def get_configuration(self, ident: str) -> Configuration:
        return Configuration.from_api(self._get(f"/api/configurations/{ident}"))

    def get_order(self, ident: str) -> Order:
        return Order.from_api(self._get(f"/api/orders/{ident}"))

    def webhooks(self) -> list[dict]:
        return [row for rows in self.iter_pages("/api/webhooks", "webhooks") for row in rows]

    # ---- write-back ----
    def update_order(self, ident: str, *, status: str | None = None, metadata: dict | None = None) -> WriteResult:
        """Merge `metadata` into the order's and PUT `status` and `metadata` only (never `cart`).

        A PUT replaces each key it sends, so the current metadata is read first. It is safe to retry;
        a 422 is logged with its details and the order skipped. The order is read again afterwards,
        because without an ETag another writer may have won.
        """
        return self._put(self.get_order(ident), status, metadata or {})

    def _put(self, current: Order, status: str | None, metadata: dict) -> WriteResult:
        body: dict[str, Any] = {"metadata": {**current.metadata, **metadata}}
        if status is not None:
            body["status"] = status
        path = f"/api/orders/{current.id}"
        reply = self._call("PUT", path, json=body, ok_statuses=(422,))
        if reply.status == 422:
            details = ((reply.body or {}).get("error") or {}).get("details") or []
            log.warning("threekit PUT %s refused with 422, order skipped: %s", path, details)
            return WriteResult(current.id, applied=False, written=False, order=current, details=details)
        confirmed = self.get_order(current.id)
        applied = all(confirmed.metadata.get(k) == v for k, v in metadata.items()) and \
            (status is None or confirmed.status == status)
        return WriteResult(current.id, applied=applied, written=True, order=confirmed)

    def write_status_note(self, ident: str, note: str, *, status: str | None = None,
                          at: datetime | None = None) -> WriteResult:
        """Record a status note (at most 1 000 characters) and optionally a status; nothing is sent
        when the order already carries both."""
        note = note[:STATUS_NOTE_MAX]
        current = self.get_order(ident)
        if current.metadata.get("statusNote") == note and status in (None, current.status):
            return WriteResult(current.id, applied=True, written=False, order=current)
        return self._put(current, status, {"statusNote": note, "statusNoteAt": format_time(at or self._now())})


class ThreekitResource(dg.ConfigurableResource):
    """Threekit configurator (configurations, orders, catalog, 3D assets). Unset env vars mean the sandbox."""

    api_url: str
    org_id: str
    token: str
    max_requests_per_second: float = Field(15.0, description="Client-side pace (the service allows 20/s per token).")
    timeout_s: float = 30.0
    max_attempts: int = 6
    _client: ThreekitClient | None = PrivateAttr(None)

    def get_client(self) -> ThreekitClient:
        if self._client is None:
            self._client = ThreekitClient(self.api_url, self.org_id, self.token,
                                          max_requests_per_second=self.max_requests_per_second,
                                          timeout_s=self.timeout_s, max_attempts=self.max_attempts)
        return self._client

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._client is not None:
            self._client.close()
