"""The Shopify client against the running sandbox, over real loopback HTTP, and the webhook HMAC check."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from resources.http import AuthenticationFailed
from resources.shopify import (
    ShopifyAccessDenied,
    ShopifyClient,
    ShopifyQueryError,
    ShopifyResource,
    decimal_money,
    next_window,
)
from resources.shopify_queries import LEVELS_QUERY
from resources.shopify_webhooks import shopify_hmac, verify_shopify_hmac

EPOCH, FAR_FUTURE = datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
PORTLAND = "gid://shopify/Location/76543210986"
FAST = {"shopify_restore_rate": 1_000_000.0}


class RecordingSleep:
    """Records each wait; really sleeps only when asked to (pacing must actually wait)."""

    def __init__(self, real: bool = False):
        self.calls: list[float] = []
        self.real = real

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        if self.real:
            time.sleep(seconds)


def make_client(sandbox, token: str = "shpat_sandbox", **kwargs) -> ShopifyClient:
    kwargs.setdefault("sleep", RecordingSleep())
    return ShopifyClient(f"{sandbox.url}/shopify", "2026-01", token, seed=1, **kwargs)


def counts(sandbox) -> dict:
    return sandbox.admin.get("/_sandbox/shopify/stats").json()


# ---------- HMAC (§9.2) ----------
BODY = b'{"foo": "bar"}'


@pytest.mark.parametrize(("secret", "digest"), [
    ("test_secret_key", "B23tXN681gZ0qIWNRrgtzBE9XSDo5yaUu6wfmhu3a7g="),
    ("sandbox-webhook-secret", "TGfy1sJsNAAoPGt23QQ2BM+wljqxx3tSZOwAwlf2oRM="),
])
def test_hmac_matches_the_contract_vectors(secret, digest):
    assert len(BODY) == 14 and shopify_hmac(BODY, secret) == digest
    assert verify_shopify_hmac(BODY, digest, [secret])
    assert verify_shopify_hmac(BODY, digest, ["rotated-new-secret", secret])  # the previous secret still counts
    assert not verify_shopify_hmac(BODY, digest, ["another-secret"])
    assert not verify_shopify_hmac(BODY + b" ", digest, [secret])  # the exact bytes, not the parsed JSON


@pytest.mark.parametrize("header", [None, "", "not base64!", "QUJD"])
def test_hmac_rejects_missing_and_malformed_headers(header):
    assert not verify_shopify_hmac(BODY, header, ["sandbox-webhook-secret"])
    assert not verify_shopify_hmac(BODY, shopify_hmac(BODY, "x"), [])


# ---------- reading ----------
def test_orders_are_read_once_each_with_decimal_money_and_windows_hold_their_orders(sandbox):
    sandbox.configure(**FAST)
    client = make_client(sandbox)
    orders = [o for page in client.iter_orders(EPOCH, FAR_FUTURE) for o in page]
    assert len(orders) == len({o["id"] for o in orders}) == counts(sandbox)["counts"]["orders"]
    assert all(isinstance(o["totalPriceSet"]["shopMoney"]["amount"], Decimal) for o in orders)
    assert all(isinstance(o["id"], str) for o in orders)
    assert all(isinstance(o["customer"]["numberOfOrders"], str) for o in orders if o["customer"])
    high = {o["id"] for o in orders if o["risk"]["assessments"] and
            o["risk"]["assessments"][0]["riskLevel"] == "HIGH"}
    assert high == set(sandbox.ground_truth()["ids"]["shopify_high_risk_order"])

    lo, hi = datetime(2026, 11, 20, 6, tzinfo=UTC), datetime(2026, 11, 21, 18, tzinfo=UTC)
    window = [o for page in client.iter_orders(lo, hi) for o in page]
    expected = {o["id"] for o in orders if lo.strftime("%Y-%m-%dT%H:%M:%SZ") <= o["updatedAt"]
                < hi.strftime("%Y-%m-%dT%H:%M:%SZ")}
    assert {o["id"] for o in window} == expected and expected
    assert next_window(hi, hi + timedelta(hours=1), lo) == (hi - timedelta(minutes=5),
                                                           hi + timedelta(hours=1) - timedelta(minutes=2))


def test_a_window_past_the_cap_is_halved(sandbox):
    sandbox.configure(**FAST)
    client = make_client(sandbox)
    lo, hi = datetime(2026, 11, 20, 12, tzinfo=UTC), datetime(2026, 11, 22, 12, tzinfo=UTC)
    whole = {o["id"] for page in client.iter_orders(lo, hi) for o in page}
    sandbox.configure(shopify_pagination_cap=30)
    assert len(whole) > 60
    # The client assumes 25 000: it meets the server's error and halves what is left of the window.
    halved = [o["id"] for page in client.iter_orders(lo, hi) for o in page]
    assert len(halved) == len(set(halved)) and set(halved) == whole
    capped = make_client(sandbox, pagination_cap=30)  # told the cap, it halves before meeting the error
    assert {o["id"] for page in capped.iter_orders(lo, hi) for o in page} == whole


def test_full_lists_are_read_again_with_50(sandbox):
    sandbox.configure(**FAST)
    client = make_client(sandbox)
    refunded = client.execute('{ orders(first: 1, query: "return_status:returned") { nodes { updatedAt } } }')
    at = datetime.fromisoformat(refunded["orders"]["nodes"][0]["updatedAt"].replace("Z", "+00:00"))
    window = (at, at + timedelta(seconds=1))
    full = {o["id"]: o for page in client.iter_orders(*window, lists=50) for o in page}
    short = {o["id"]: o for page in client.iter_orders(*window, lists=1) for o in page}
    assert any(len(o["transactions"]) > 1 for o in full.values())  # a sale and its refund
    assert short == full  # every list that came back full was read again


def test_fulfillment_events_follow_a_world_change(sandbox):
    sandbox.configure(**FAST)
    order_id = 6214737500011
    change = sandbox.admin.post(f"/_sandbox/shopify/orders/{order_id}/events",
                                json={"type": "fulfillment_event", "status": "DELAYED", "message": "Snow"}).json()
    changed_at = datetime.fromisoformat(change["updated_at"].replace("Z", "+00:00"))
    client = make_client(sandbox)
    pages = list(client.iter_orders(changed_at, changed_at + timedelta(seconds=1), with_events=True))
    order = next(o for page in pages for o in page if o["id"] == f"gid://shopify/Order/{order_id}")
    events = order["fulfillments"][-1]["events"]
    assert events[-1]["status"] == "DELAYED" and events[-1]["message"] == "Snow"
    assert [e["happenedAt"] for e in events] == sorted(e["happenedAt"] for e in events)
    assert client.fulfillment_events("gid://shopify/Fulfillment/1") == []


def test_checkouts_locations_and_inventory(sandbox):
    sandbox.configure(**FAST)
    client = make_client(sandbox)
    checkouts = [c for page in client.iter_abandoned_checkouts(EPOCH, FAR_FUTURE) for c in page]
    assert len(checkouts) == counts(sandbox)["counts"]["checkouts"]
    planted = set(sandbox.ground_truth()["ids"]["shopify_abandoned_after_failed_payment"])
    assert planted <= {c["id"] for c in checkouts}
    assert all(isinstance(c["totalPriceSet"]["shopMoney"]["amount"], Decimal) for c in checkouts)
    locations = client.locations()
    assert [loc["isActive"] for loc in locations] == [True] * 3  # the closed location is not listed
    levels = [lvl for page in client.iter_inventory_levels(PORTLAND) for lvl in page]
    threshold = sandbox.ground_truth()["options"]["shopify_low_stock_threshold"]
    low = {lvl["id"] for lvl in levels if lvl["item"]["tracked"] and lvl["quantities"][0]["quantity"] <= threshold}
    truth = {i for i in sandbox.ground_truth()["ids"]["shopify_low_stock"] if "/76543210986?" in i}
    assert low == truth and low


# ---------- the throttle (§7, §10) ----------
def test_a_paced_client_is_never_throttled_while_a_naive_burst_is(sandbox):
    sandbox.configure(shopify_bucket_size=700.0, shopify_restore_rate=3000.0)
    before = counts(sandbox)["throttle"]["throttled"]
    client = make_client(sandbox, sleep=RecordingSleep(real=True))
    levels = [lvl for page in client.iter_inventory_levels(PORTLAND) for lvl in page]  # 603 a page
    assert len(levels) == counts(sandbox)["counts"]["inventory_items"]  # every item is stocked there
    assert client.throttled == 0
    assert counts(sandbox)["throttle"]["throttled"] == before  # the sandbox saw no THROTTLED either
    assert client.pacer.waited_s > 0  # ...because it waited for the bucket
    with httpx.Client(base_url=sandbox.url, headers={"X-Shopify-Access-Token": "shpat_sandbox"}) as naive:
        codes = []
        for _ in range(6):
            body = naive.post("/shopify/admin/api/2026-01/graphql.json", json={
                "query": LEVELS_QUERY, "variables": {"locationId": PORTLAND, "first": 100}}).json()
            codes += [e["extensions"]["code"] for e in body.get("errors", [])]
    assert "THROTTLED" in codes and counts(sandbox)["throttle"]["throttled"] > before


def test_throttled_429_is_retried_not_failed(sandbox):
    sandbox.configure(shopify_bucket_size=100.0, shopify_restore_rate=100.0, shopify_throttle_status=429)
    query = "query($first: Int!) { orders(first: $first) { nodes { id } } }"
    make_client(sandbox).execute(query, {"first": 90})  # another worker drains the bucket (92 charged)
    sleep = RecordingSleep(real=True)
    client = make_client(sandbox, sleep=sleep)  # knows nothing yet: its first try is refused
    data = client.execute(query, {"first": 90})
    assert len(data["orders"]["nodes"]) == 90 and client.throttled == 1
    assert sleep.calls and sleep.calls[0] >= 1.0  # waited at least the Retry-After


def test_max_cost_exceeded_halves_first_once(sandbox):
    sandbox.configure(**FAST)
    client = make_client(sandbox)
    query = "query($first: Int!) { orders(first: $first) { nodes { id lineItems(first: 10) { nodes { id } } } } }"
    data = client.execute(query, {"first": 100}, page_size_var="first")  # 1302, then 652
    assert len(data["orders"]["nodes"]) == 50
    with pytest.raises(ShopifyQueryError, match="MAX_COST|exceeds the single query max cost"):
        client.execute(query, {"first": 200}, page_size_var="first")  # 2602, then 1302: still too much


# ---------- fatal and transient errors ----------
def test_a_bad_token_is_fatal_and_named(sandbox):
    secret = "shpat_very-distinctive-token"
    client = make_client(sandbox, token=secret)
    with pytest.raises(AuthenticationFailed) as caught:
        client.locations()
    assert caught.value.status == 401 and caught.value.attempts == 1
    assert "SHOPIFY_ACCESS_TOKEN" in str(caught.value) and secret not in str(caught.value)


def test_a_missing_scope_is_fatal_and_names_the_scope(sandbox):
    sandbox.configure(shopify_scopes="read_locations,read_inventory")
    client = make_client(sandbox)
    with pytest.raises(ShopifyAccessDenied, match="read_orders"):
        next(client.iter_orders(EPOCH, FAR_FUTURE))
    assert client.locations()  # a granted scope still reads


def test_internal_errors_and_edge_5xx_are_retried(sandbox):
    sandbox.fault("shopify", script=["status_error", "503", "ok"])
    sleep = RecordingSleep()
    client = make_client(sandbox, sleep=sleep)
    assert len(client.locations()) == 3
    assert len(sleep.calls) == 2 and all(0.5 <= s <= 2.0 for s in sleep.calls)


def test_the_resource_builds_a_working_client(sandbox_env):
    from orchestration.settings import env_value

    resource = ShopifyResource(shop_url=env_value("SHOPIFY_SHOP_URL"), api_version=env_value("SHOPIFY_API_VERSION"),
                               access_token=env_value("SHOPIFY_ACCESS_TOKEN"))
    client = resource.get_client()
    assert client.path == "/admin/api/2026-01/graphql.json"
    assert [loc["name"] for loc in client.locations()] == ["Louisville DC", "Portland Warehouse", "Toronto Store"]


def test_decimal_money_converts_only_money():
    converted = decimal_money({"amount": "0.1", "currencyCode": "USD", "n": "12",
                               "list": [{"amount": "184.9", "currencyCode": "EUR"}]})
    assert converted == {"amount": Decimal("0.1"), "currencyCode": "USD", "n": "12",
                         "list": [{"amount": Decimal("184.9"), "currencyCode": "EUR"}]}
