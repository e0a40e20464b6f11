"""Shopify Admin GraphQL client and Dagster resource (../shared/contracts/shopify.md §10 "What a client must do").

- Paces itself by `extensions.cost.throttleStatus`: before a request whose cost it knows (the same
  document with the same page sizes), it waits `(requested − currentlyAvailable) / restoreRate` when
  the bucket would not hold it, so steady paging never meets THROTTLED.
- THROTTLED (at 200, or 429 with Retry-After) retries the same request after
  `max(Retry-After, deficit / restoreRate)` plus jitter; MAX_COST_EXCEEDED halves `first` once, then
  fails; other 429/5xx, INTERNAL_SERVER_ERROR and timeouts back off 1 s to 30 s, 5 tries.
- 401 and ACCESS_DENIED are fatal and say whether the token or which scope is at fault.
- Orders are read in `updated_at` windows in UPDATED_AT order, deduplicated by id keeping the latest
  `updatedAt`; a window that reaches the 25 000-object cap is halved. Money comes out as `Decimal`;
  gids and UnsignedInt64 stay strings.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import dagster as dg
import httpx
from pydantic import Field, PrivateAttr

from resources.http import (
    AuthenticationFailed,
    HttpService,
    RateLimited,
    RequestRejected,
    RetryPolicy,
    ServiceUnavailable,
    retry_after_s,
    retry_delay_scale,
)
from resources.shopify_queries import CHECKOUTS_QUERY, EVENTS_QUERY, LEVELS_QUERY, LOCATIONS_QUERY, ORDERS_QUERY

log = logging.getLogger("catalog_ops.shopify")
PAGINATION_CAP = 25_000
MAX_QUERY_COST = 1000
ORDERS_PAGE = 14  # 2 + 14 × 68 = 954 ≤ 1000 with lists of 5 (§5.1)
FULL_LISTS = 50
CHECKOUTS_PAGE, LOCATIONS_PAGE, LEVELS_PAGE, EVENTS_PAGE = 50, 50, 100, 50
MAX_THROTTLED_RETRIES = 20
WINDOW_LAG, WINDOW_OVERLAP = timedelta(minutes=2), timedelta(minutes=5)

# ---------- errors ----------
class ShopifyQueryError(RequestRejected):
    """The API refused the document or its arguments (validation, paging, MAX_COST_EXCEEDED twice)."""

    def __init__(self, *args, errors: list[dict] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.errors = errors or []

    def has_message(self, prefix: str) -> bool:
        return any(str(e.get("message", "")).startswith(prefix) for e in self.errors)


class ShopifyAccessDenied(AuthenticationFailed):
    """The token lacks a scope (ACCESS_DENIED): fatal, never retried."""


# ---------- helpers ----------
def search_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def next_window(previous_hi: datetime | None, now: datetime, first_lo: datetime) -> tuple[datetime, datetime]:
    """§10: `hi = now − 2 min`, `lo = previous hi − 5 min` (or `first_lo` on the first run)."""
    hi = now - WINDOW_LAG
    return (first_lo if previous_hi is None else previous_hi - WINDOW_OVERLAP), hi


def decimal_money(value: Any) -> Any:
    """Every `MoneyV2` (`{amount, currencyCode}`) with its amount as a Decimal, never a float."""
    if isinstance(value, list):
        return [decimal_money(v) for v in value]
    if isinstance(value, dict):
        out = {k: decimal_money(v) for k, v in value.items()}
        if isinstance(out.get("amount"), str) and "currencyCode" in out:
            try:
                out["amount"] = Decimal(out["amount"])
            except InvalidOperation:  # the schema's Decimal scalar is a plain decimal string
                raise ValueError(f"amount: {out['amount'][:40]!r} is not a decimal amount") from None
        return out
    return value


class ThrottlePacer:
    """The client's view of the cost bucket, shared by every thread using one client."""

    def __init__(self, clock=time.monotonic, sleep=time.sleep):
        self.clock, self.sleep = clock, sleep
        self._lock = threading.Lock()
        self.available: float | None = None
        self.maximum = self.rate = 0.0
        self.at = 0.0
        self.costs: dict[tuple, int] = {}  # requested cost last seen for a document and its page sizes
        self.waited_s = 0.0

    def before(self, key: tuple) -> None:
        """Wait until the bucket holds the request's known cost, and reserve it."""
        with self._lock:
            cost = self.costs.get(key)
            if cost is None or self.available is None or not self.rate:
                return
            cost = min(cost, self.maximum)
            now = self.clock()
            have = min(self.maximum, self.available + self.rate * (now - self.at))
            wait = max(0.0, (cost - have) / self.rate)
            self.available, self.at = have + self.rate * wait - cost, now + wait
        if wait > 0:
            self.waited_s += wait
            self.sleep(wait + 0.01)  # the server refills meanwhile; 10 ms covers rounding

    def after(self, key: tuple, cost: dict | None) -> None:
        if not cost:
            return
        status = cost.get("throttleStatus") or {}
        with self._lock:
            if cost.get("requestedQueryCost") is not None:
                self.costs[key] = int(cost["requestedQueryCost"])
            if status:
                self.maximum = float(status["maximumAvailable"])
                self.rate = float(status["restoreRate"])
                self.available = float(status["currentlyAvailable"])
                self.at = self.clock()

    def deficit_s(self, requested: int | None) -> float:
        if requested is None or self.available is None or not self.rate:
            return 0.0
        return max(0.0, (requested - self.available) / self.rate)


class ShopifyClient:
    """GraphQL over the shared HTTP layer, with Shopify's throttle and paging rules."""

    def __init__(self, shop_url: str, api_version: str, access_token: str, *, timeout_s: float = 30.0,
                 max_attempts: int = 5, transport: httpx.BaseTransport | None = None, sleep=time.sleep,
                 clock=time.monotonic, seed: int | None = None, pagination_cap: int = PAGINATION_CAP):
        self.path = f"/admin/api/{api_version}/graphql.json"
        self.http = HttpService("shopify", shop_url, timeout=httpx.Timeout(timeout_s, connect=min(10.0, timeout_s)),
                                retry=RetryPolicy(max_attempts=max_attempts, base_delay_s=1.0, max_delay_s=30.0),
                                transport=transport, sleep=sleep, seed=seed,
                                headers={"Content-Type": "application/json", "Accept": "application/json"})
        self._token = access_token
        self.max_attempts = max_attempts
        self.pacer = ThrottlePacer(clock=clock, sleep=sleep)
        self.sleep = sleep
        self._rng = random.Random(seed)
        self.pagination_cap = pagination_cap
        self.throttled = 0  # THROTTLED answers met (stays 0 while paced, whoever else drains the bucket)

    def close(self) -> None:
        self.http.close()

    # ---------- one request ----------
    def execute(self, query: str, variables: dict | None = None, *, page_size_var: str | None = None) -> dict:
        """The `data` of one query, after throttle pacing and Shopify's retry rules."""
        return self.execute_full(query, variables, page_size_var=page_size_var)["data"]

    def execute_full(self, query: str, variables: dict | None = None, *, page_size_var: str | None = None) -> dict:
        """The whole answer (`data` and `extensions`)."""
        variables = dict(variables or {})
        halved, failures, throttled = False, 0, 0
        while True:
            key = (query, tuple(sorted((k, v) for k, v in variables.items() if isinstance(v, int))))
            self.pacer.before(key)
            reply = self._post(query, variables)
            body = reply.body if isinstance(reply.body, dict) else {}
            self.pacer.after(key, (body.get("extensions") or {}).get("cost"))
            codes = {str((e.get("extensions") or {}).get("code")) for e in body.get("errors") or []
                     if isinstance(e, dict)}
            if reply.status == 429 or "THROTTLED" in codes:
                throttled += 1
                self.throttled += 1
                if throttled > MAX_THROTTLED_RETRIES:
                    raise RateLimited("shopify", "POST", self.path, reply.status, reply.request_id,
                                      "still THROTTLED after retries", throttled)
                self._wait_throttled(reply, body)
                continue
            if "INTERNAL_SERVER_ERROR" in codes:
                failures += 1
                if failures >= self.max_attempts:
                    raise ServiceUnavailable("shopify", "POST", self.path, reply.status, reply.request_id,
                                             "INTERNAL_SERVER_ERROR", failures)
                delay = self.http.retry.backoff(failures, self._rng)
                log.warning("shopify: INTERNAL_SERVER_ERROR (request id %s), retry in %.1fs", reply.request_id, delay)
                self.sleep(delay)
                continue
            if "MAX_COST_EXCEEDED" in codes and page_size_var and not halved and variables.get(page_size_var, 0) > 1:
                halved = True
                variables[page_size_var] = max(1, variables[page_size_var] // 2)
                log.warning("shopify: MAX_COST_EXCEEDED, retrying with %s=%d", page_size_var,
                            variables[page_size_var])
                continue
            self._raise_for_errors(body, reply, codes)
            if reply.status != 200 or "data" not in body:
                raise ShopifyQueryError("shopify", "POST", self.path, reply.status, reply.request_id,
                                        f"unexpected answer: {str(body)[:200]}")
            return body

    def _post(self, query: str, variables: dict):
        try:
            return self.http.request("POST", self.path, json={"query": query, "variables": variables},
                                     auth=lambda: {"X-Shopify-Access-Token": self._token}, ok_statuses=(429,))
        except AuthenticationFailed as exc:
            raise AuthenticationFailed(
                exc.service, exc.method, exc.path, exc.status, exc.request_id,
                "Shopify rejected the access token (check SHOPIFY_ACCESS_TOKEN; custom-app tokens never expire, "
                "so this is not retried)", exc.attempts) from None

    def _wait_throttled(self, reply, body: dict) -> None:
        cost = (body.get("extensions") or {}).get("cost") or {}
        deficit = self.pacer.deficit_s(cost.get("requestedQueryCost"))
        retry_after = (retry_after_s(reply.headers) or 0.0) * retry_delay_scale()
        delay = max(retry_after, deficit) + self._rng.uniform(0.05, 0.25)
        log.warning("shopify: THROTTLED (request id %s), retry in %.2fs", reply.request_id, delay)
        self.sleep(delay)

    def _raise_for_errors(self, body: dict, reply, codes: set[str]) -> None:
        errors = body.get("errors")
        if not errors:
            return
        if isinstance(errors, str | dict):
            errors = [{"message": str(errors)}]
        if "ACCESS_DENIED" in codes:
            denied = [e for e in errors if (e.get("extensions") or {}).get("code") == "ACCESS_DENIED"]
            scopes = ", ".join(sorted({str(e["extensions"].get("requiredAccess")) for e in denied}))
            fields = ", ".join(".".join(map(str, e.get("path") or [])) for e in denied)
            raise ShopifyAccessDenied("shopify", "POST", self.path, reply.status, reply.request_id,
                                      f"the token lacks a scope: {fields} needs {scopes}")
        summary = "; ".join(str(e.get("message")) for e in errors)[:500]
        raise ShopifyQueryError("shopify", "POST", self.path, reply.status, reply.request_id, summary,
                                errors=errors)

    # ---------- orders ----------
    def iter_orders(self, lo: datetime, hi: datetime, *, lists: int = 5, first: int = ORDERS_PAGE,
                    with_events: bool = False) -> Iterator[list[dict]]:
        """Every order with `lo <= updatedAt < hi`, page by page, each once (the latest version seen).

        Complete lists: an order whose fulfillments, transactions, refunds or returns hold exactly
        `lists` items is re-read with 50. `with_events` adds `events` to fulfillments updated in the window.
        """
        first = min(first, max(1, (MAX_QUERY_COST - 2) // (18 + 10 * lists)))  # the §5.1 cost: 2 + n × (18 + 10 × lists)
        seen: dict[str, str] = {}
        windows = [(lo, hi)]
        while windows:
            start, end = windows.pop(0)
            window_query = f"updated_at:>='{search_time(start)}' AND updated_at:<'{search_time(end)}'"
            after, read, last = None, 0, start
            while True:
                try:
                    data = self.execute(ORDERS_QUERY, {"first": first, "after": after, "query": window_query,
                                                       "lists": lists}, page_size_var="first")
                except ShopifyQueryError as exc:
                    if not exc.has_message("Pagination limit"):
                        raise
                    windows[:0] = self._halves(last, end)
                    break
                connection = data["orders"]
                nodes = connection["nodes"]
                fresh = [decimal_money(o) for o in nodes if seen.get(o["id"], "") < o["updatedAt"]]
                for order in fresh:
                    seen[order["id"]] = order["updatedAt"]
                if fresh:
                    yield [self._complete(o, lists, start, end, with_events) for o in fresh]
                read += len(nodes)
                last = parse_time(nodes[-1]["updatedAt"]) if nodes else last
                if not connection["pageInfo"]["hasNextPage"]:
                    break
                if read + first > self.pagination_cap:  # the next page would pass the cap: halve the rest
                    windows[:0] = self._halves(last, end)
                    break
                after = connection["pageInfo"]["endCursor"]

    def _halves(self, resume: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
        """What is left of a window, from the last instant read (re-read; deduplicated), in two halves."""
        if end - resume <= timedelta(seconds=1):
            raise ShopifyQueryError("shopify", "POST", self.path, 200, None,
                                    f"more than {self.pagination_cap} orders share one second of updatedAt")
        middle = resume + (end - resume) / 2
        return [(resume, middle), (middle, end)]

    def _complete(self, order: dict, lists: int, lo: datetime, hi: datetime, with_events: bool) -> dict:
        full = any(len(order.get(name) or []) >= lists for name in ("fulfillments", "transactions", "refunds")) \
            or len((order.get("returns") or {}).get("nodes") or []) >= lists
        if full and lists < FULL_LISTS:
            number = order["id"].rsplit("/", 1)[-1]
            data = self.execute(ORDERS_QUERY, {"first": 1, "after": None, "query": f"id:{number}",
                                               "lists": FULL_LISTS})
            if data["orders"]["nodes"]:
                order = decimal_money(data["orders"]["nodes"][0])
        if with_events:
            for fulfillment in order.get("fulfillments") or []:
                if lo <= parse_time(fulfillment["updatedAt"]) < hi:
                    fulfillment["events"] = self.fulfillment_events(fulfillment["id"])
        return order

    def fulfillment_events(self, fulfillment_id: str) -> list[dict]:
        """Every tracking event of one fulfillment, oldest first (§5.2); [] for an unknown id."""
        events, after = [], None
        while True:
            data = self.execute(EVENTS_QUERY, {"id": fulfillment_id, "first": EVENTS_PAGE, "after": after})
            fulfillment = data["fulfillment"]
            if fulfillment is None:
                return events
            connection = fulfillment["events"]
            events += connection["nodes"]
            if not connection["pageInfo"]["hasNextPage"]:
                return events
            after = connection["pageInfo"]["endCursor"]

    # ---------- checkouts and inventory ----------
    def iter_abandoned_checkouts(self, lo: datetime, hi: datetime) -> Iterator[list[dict]]:
        """Abandoned checkouts with `lo <= updatedAt < hi`; no UPDATED_AT sort exists, so by id, in full."""
        query = f"updated_at:>='{search_time(lo)}' AND updated_at:<'{search_time(hi)}'"
        yield from self._pages(CHECKOUTS_QUERY, {"first": CHECKOUTS_PAGE, "query": query}, ("abandonedCheckouts",))

    def locations(self) -> list[dict]:
        return [node for page in self._pages(LOCATIONS_QUERY, {"first": LOCATIONS_PAGE}, ("locations",))
                for node in page]

    def iter_inventory_levels(self, location_id: str, updated_since: datetime | None = None) -> Iterator[list[dict]]:
        """A location's inventory levels (a snapshot, or those updated since `updated_since`)."""
        query = f"updated_at:>='{search_time(updated_since)}'" if updated_since else None
        yield from self._pages(LEVELS_QUERY, {"locationId": location_id, "first": LEVELS_PAGE, "query": query},
                               ("location", "inventoryLevels"))

    def _pages(self, query: str, variables: dict, path: tuple[str, ...]) -> Iterator[list[dict]]:
        after = None
        while True:
            data = self.execute(query, {**variables, "after": after}, page_size_var="first")
            connection = data
            for key in path:
                connection = connection.get(key) if connection else None
            if not connection:
                return
            if connection["nodes"]:
                yield decimal_money(connection["nodes"])
            if not connection["pageInfo"]["hasNextPage"]:
                return
            after = connection["pageInfo"]["endCursor"]


class ShopifyResource(dg.ConfigurableResource):
    """Shopify Admin GraphQL (orders, fulfillments, inventory, checkouts). Unset env vars mean the sandbox."""

    shop_url: str
    api_version: str = "2026-01"
    access_token: str
    timeout_s: float = 30.0
    max_attempts: int = Field(5, description="Tries for 5xx, INTERNAL_SERVER_ERROR and timeouts (contract: 5).")
    _client: ShopifyClient | None = PrivateAttr(None)

    def get_client(self) -> ShopifyClient:
        if self._client is None:
            self._client = ShopifyClient(self.shop_url, self.api_version, self.access_token,
                                         timeout_s=self.timeout_s, max_attempts=self.max_attempts)
        return self._client

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._client is not None:
            self._client.close()
