"""The sandbox's Shopify against ../shared/contracts/shopify.md: auth, validation, cost, paging and
webhooks, over raw loopback HTTP."""

from __future__ import annotations

import base64
import json
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import graphql
import httpx
import pytest

from resources.shopify_queries import CHECKOUTS_QUERY, EVENTS_QUERY, LEVELS_QUERY, LOCATIONS_QUERY, ORDERS_QUERY
from resources.shopify_webhooks import verify_shopify_hmac
from sandbox.services.shopify_webhooks import TEMPLATE_DIR
from tests.conftest import free_port

TOKEN, SECRET = "shpat_sandbox", "sandbox-webhook-secret"
PATH = "/shopify/admin/api/2026-01/graphql.json"
INVALID_TOKEN = {"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"}
WINDOW = "updated_at:>='2026-11-21T00:00:00Z' AND updated_at:<'2026-11-22T00:00:00Z'"
EVERYTHING = "updated_at:>='2000-01-01T00:00:00Z'"
FAST = {"shopify_restore_rate": 1_000_000.0}  # paging the whole world should not wait on the bucket


@pytest.fixture
def shop(sandbox):
    with httpx.Client(base_url=sandbox.url, headers={"X-Shopify-Access-Token": TOKEN}, timeout=30) as client:
        yield client


def gql(shop, query: str, variables: dict | None = None) -> httpx.Response:
    return shop.post(PATH, json={"query": query, "variables": variables or {}})


def ids_of(shop, search: str) -> set[str]:
    """Every order id a search selects, paged 250 at a time."""
    found, after = set(), None
    while True:
        body = gql(shop, "query($q: String, $after: String) { orders(first: 250, after: $after, query: $q) "
                         "{ pageInfo { hasNextPage endCursor } nodes { id } } }", {"q": search, "after": after}).json()
        found |= {n["id"] for n in body["data"]["orders"]["nodes"]}
        if not body["data"]["orders"]["pageInfo"]["hasNextPage"]:
            return found
        after = body["data"]["orders"]["pageInfo"]["endCursor"]


def stats(sandbox) -> dict:
    return sandbox.admin.get("/_sandbox/shopify/stats").json()


# ---------- auth and the endpoint ----------
def test_missing_or_wrong_token_gets_shopifys_401(sandbox):
    for headers in ({}, {"X-Shopify-Access-Token": "shpat_wrong"}):
        reply = httpx.post(f"{sandbox.url}{PATH}", json={"query": "{ shop { name } }"}, headers=headers)
        assert reply.status_code == 401 and reply.json() == INVALID_TOKEN
        assert reply.headers["X-Request-Id"]


def test_missing_query_or_bad_json_is_400(shop):
    for body in ({"variables": {}}, "not json"):
        reply = shop.post(PATH, content=body if isinstance(body, str) else json.dumps(body))
        assert reply.status_code == 400
        assert reply.json() == {"errors": {"query": "Required parameter missing or invalid"}}


def test_any_version_in_the_path_is_answered_as_2026_01(shop):
    reply = shop.post("/shopify/admin/api/2024-10/graphql.json", json={"query": "{ shop { myshopifyDomain } }"})
    assert reply.json()["data"]["shop"]["myshopifyDomain"] == "sandbox.myshopify.com"
    assert reply.headers["X-Shopify-API-Version"] == "2026-01"


# ---------- validation (§8) ----------
def test_unknown_field_is_rejected_in_shopifys_words(shop):
    reply = gql(shop, "query OrdersIncremental {\n  orders(first: 1) {\n    nodes { id financialStatus }\n  }\n}")
    assert reply.status_code == 200
    assert reply.json() == {"errors": [{
        "message": "Field 'financialStatus' doesn't exist on type 'Order'", "locations": [{"line": 3, "column": 16}],
        "path": ["query OrdersIncremental", "orders", "nodes", "financialStatus"],
        "extensions": {"code": "undefinedField", "typeName": "Order", "fieldName": "financialStatus"}}]}


def test_unknown_argument_and_other_errors(shop):
    body = gql(shop, "{ orders(first: 1, limit: 5) { nodes { id } } }").json()
    assert body["errors"][0]["message"] == "Field 'orders' doesn't accept argument 'limit'"
    assert body["errors"][0]["extensions"]["code"] == "argumentNotAccepted"
    assert "data" not in body and "extensions" not in body
    other = gql(shop, "{ orders(first: 1) { nodes { id } }").json()  # a syntax error: graphql-core's words
    assert other["errors"][0]["message"].startswith("Syntax Error") and "extensions" not in other["errors"][0]


@pytest.mark.parametrize(("query", "variables", "cost"), [
    (ORDERS_QUERY, {"first": 10, "after": None, "query": WINDOW, "lists": 5}, 682),
    (ORDERS_QUERY, {"first": 1, "query": "id:6214737500001", "lists": 50}, 520),
    (EVENTS_QUERY, {"id": "gid://shopify/Fulfillment/1", "first": 50}, 53),
    (CHECKOUTS_QUERY, {"first": 50, "query": WINDOW}, 602),
    (LOCATIONS_QUERY, {"first": 50}, 52),
    (LEVELS_QUERY, {"locationId": "gid://shopify/Location/76543210986", "first": 100, "query": None}, 603),
])
def test_contract_queries_validate_and_cost_as_documented(shop, query, variables, cost):
    body = gql(shop, query, variables).json()
    assert "errors" not in body
    assert body["extensions"]["cost"]["requestedQueryCost"] == cost
    assert body["extensions"]["cost"]["actualQueryCost"] <= cost


def _selected(query: str, *path: str) -> set[str]:
    """The field names a document selects under `path` (e.g. orders, nodes)."""
    selection = graphql.parse(query).definitions[0].selection_set
    for name in path:
        selection = next(s for s in selection.selections if s.name.value == name).selection_set
    return {s.name.value for s in selection.selections}


def test_every_selected_field_is_present_with_the_contract_formats(shop):
    body = gql(shop, ORDERS_QUERY, {"first": 14, "query": WINDOW}).json()
    nodes = body["data"]["orders"]["nodes"]
    assert nodes
    for order in nodes:
        assert set(order) == _selected(ORDERS_QUERY, "orders", "nodes")
        assert order["id"].startswith("gid://shopify/Order/") and order["updatedAt"].endswith("Z")
        assert isinstance(order["totalPriceSet"]["shopMoney"]["amount"], str)
        assert "2026-11-21T00:00:00Z" <= order["updatedAt"] < "2026-11-22T00:00:00Z"
        for fulfillment in order["fulfillments"]:
            assert set(fulfillment) == _selected(ORDERS_QUERY, "orders", "nodes", "fulfillments")
    assert [o["updatedAt"] for o in nodes] == sorted(o["updatedAt"] for o in nodes)


# ---------- paging and search (§6) ----------
def test_paging_counts_equal_the_world(sandbox, shop):
    sandbox.configure(**FAST)
    assert len(ids_of(shop, EVERYTHING)) == stats(sandbox)["counts"]["orders"]


@pytest.mark.parametrize(("search", "kind"), [
    ("risk_level:high", "shopify_high_risk_order"), ("financial_status:pending", "shopify_payment_pending"),
    ("return_status:returned", None),
])
def test_search_selects_the_planted_orders(sandbox, shop, search, kind):
    sandbox.configure(**FAST)
    truth = sandbox.ground_truth()["ids"]
    found = ids_of(shop, search)
    assert found and found <= set(truth["shopify_return" if kind is None else kind])
    if kind:
        assert found == set(truth[kind])


def test_search_combines_or_and_negation(sandbox, shop):
    sandbox.configure(**FAST)
    high, pending = ids_of(shop, "risk_level:high"), ids_of(shop, "financial_status:pending")
    assert ids_of(shop, "risk_level:high OR financial_status:pending") == high | pending
    assert ids_of(shop, 'financial_status:"pending" -risk_level:high') == pending - high
    assert ids_of(shop, "NOT risk_level:high AND risk_level:high") == set()


def test_keyset_cursors_walk_forward_and_back(shop):
    first = gql(shop, "{ orders(first: 5, sortKey: UPDATED_AT) { pageInfo { endCursor } nodes { id } } }").json()
    cursor = first["data"]["orders"]["pageInfo"]["endCursor"]
    decoded = json.loads(base64.b64decode(cursor))
    assert set(decoded) == {"last_id", "last_value"} and decoded["last_value"].endswith("Z")
    second = gql(shop, "query($a: String) { orders(first: 5, after: $a, sortKey: UPDATED_AT) "
                       "{ pageInfo { startCursor hasPreviousPage } nodes { id } } }", {"a": cursor}).json()
    back = gql(shop, "query($b: String) { orders(last: 5, before: $b, sortKey: UPDATED_AT) { nodes { id } } }",
               {"b": second["data"]["orders"]["pageInfo"]["startCursor"]}).json()
    assert back["data"]["orders"]["nodes"] == first["data"]["orders"]["nodes"]
    assert second["data"]["orders"]["pageInfo"]["hasPreviousPage"]
    assert not {n["id"] for n in second["data"]["orders"]["nodes"]} & {n["id"] for n in first["data"]["orders"]["nodes"]}


def test_paging_errors_have_shopifys_shape(shop):
    for query, message in (("{ orders { nodes { id } } }", "you must provide one of first or last"),
                           ("{ orders(first: 300) { nodes { id } } }",
                            "Argument 'first' on Field 'orders' has an invalid value (300). "
                            "Expected a page size from 0 to 250.")):
        body = gql(shop, query).json()
        assert body["data"] is None and body["errors"][0]["message"] == message
        assert body["errors"][0]["path"] == ["orders"] and body["errors"][0]["locations"]
        assert "cost" in body["extensions"]


def test_no_connection_pages_past_the_cap(sandbox, shop):
    sandbox.configure(shopify_pagination_cap=30)
    query = "query($a: String) { orders(first: 10, after: $a) { pageInfo { endCursor } nodes { id } } }"
    after, statuses = None, []
    for _ in range(4):
        body = gql(shop, query, {"a": after}).json()
        if body.get("errors"):
            statuses.append(body["errors"][0]["message"])
            break
        statuses.append(len(body["data"]["orders"]["nodes"]))
        after = body["data"]["orders"]["pageInfo"]["endCursor"]
    assert statuses == [10, 10, 10, "Pagination limit of 30 objects reached. Narrow the query."]


def test_unknown_search_field_matches_all_and_warns(shop):
    body = gql(shop, "{ orders(first: 3, query: \"foo:bar\") { nodes { id } } }").json()
    assert len(body["data"]["orders"]["nodes"]) == 3
    assert body["extensions"]["search"] == [{"path": ["orders"], "query": "foo:bar", "warnings": [
        {"field": "foo", "message": "Invalid search field for this query."}]}]


def test_unknown_id_is_null_without_error(shop):
    body = gql(shop, EVENTS_QUERY, {"id": "gid://shopify/Fulfillment/1", "first": 50}).json()
    assert body["data"] == {"fulfillment": None} and "errors" not in body
    nodes = gql(shop, '{ nodes(ids: ["gid://shopify/Order/6214737500001", "gid://shopify/Order/1"]) { id } }').json()
    assert nodes["data"]["nodes"] == [{"id": "gid://shopify/Order/6214737500001"}, None]


# ---------- ground truth, read back through the API ----------
def test_planted_cases_are_visible_through_the_api(sandbox, shop):
    world = sandbox.ground_truth()
    truth, large = world["ids"], world["options"]["shopify_large_order_threshold"]
    checks = {
        "shopify_fulfillment_exception": lambda o: any(f["displayStatus"] in ("DELAYED", "ATTEMPTED_DELIVERY",
                                                                             "FAILURE") for f in o["fulfillments"]),
        "shopify_declined_payment": lambda o: any(t["status"] in ("FAILURE", "ERROR") and t["errorCode"]
                                                  for t in o["transactions"]),
        "shopify_return": lambda o: bool(o["returns"]["nodes"]),
        "shopify_large_order": lambda o: float(o["totalPriceSet"]["shopMoney"]["amount"]) >= large,
    }
    query = ("query($ids: [ID!]!) { nodes(ids: $ids) { ... on Order { id fulfillments(first: 5) { displayStatus } "
             "transactions(first: 5) { status errorCode } returns(first: 5) { nodes { status } } "
             "totalPriceSet { shopMoney { amount } } } } }")
    for kind, rule in checks.items():
        sample = truth[kind][:20]
        assert sample, kind
        orders = gql(shop, query, {"ids": sample}).json()["data"]["nodes"]
        assert all(rule(o) for o in orders), kind
    checkout = truth["shopify_abandoned_after_failed_payment"][0]
    node = gql(shop, "query($id: ID!) { node(id: $id) { ... on AbandonedCheckout { completedAt } } }", {"id": checkout})
    assert node.json()["data"]["node"] == {"completedAt": None}


def test_low_stock_truth_matches_the_inventory_levels(sandbox, shop):
    sandbox.configure(**FAST)
    location = "gid://shopify/Location/76543210986"
    threshold = sandbox.ground_truth()["options"]["shopify_low_stock_threshold"]
    low, after = set(), None
    while True:
        body = gql(shop, LEVELS_QUERY, {"locationId": location, "first": 100, "after": after}).json()
        levels = body["data"]["location"]["inventoryLevels"]
        low |= {n["id"] for n in levels["nodes"] if n["item"]["tracked"] and n["quantities"][0]["quantity"] <= threshold}
        if not levels["pageInfo"]["hasNextPage"]:
            break
        after = levels["pageInfo"]["endCursor"]
    truth = {i for i in sandbox.ground_truth()["ids"]["shopify_low_stock"] if i.startswith(location.replace(
        "Location", "InventoryLevel") + "?")}
    assert low == truth and low


# ---------- cost and throttle (§7) ----------
def test_cost_is_refunded_and_a_throttled_request_charges_nothing(sandbox, shop):
    sandbox.configure(shopify_bucket_size=100.0, shopify_restore_rate=1.0)
    first = gql(shop, LOCATIONS_QUERY, {"first": 50}).json()["extensions"]["cost"]
    assert first["requestedQueryCost"] == 52 and first["actualQueryCost"] == 2 + 3  # three active locations
    assert 95 <= first["throttleStatus"]["currentlyAvailable"] <= 96  # 100 − 52 + (52 − 5), plus refill
    assert first["throttleStatus"]["maximumAvailable"] == 100.0 and first["throttleStatus"]["restoreRate"] == 1.0
    big = "{ orders(first: 98) { nodes { id } } }"  # requested 100 > available
    throttled = gql(shop, big).json()
    assert throttled["errors"] == [{"message": "Throttled", "extensions": {
        "code": "THROTTLED", "documentation": "https://shopify.dev/api/usage/rate-limits"}}]
    assert throttled["extensions"]["cost"]["actualQueryCost"] is None and "data" not in throttled
    after = gql(shop, LOCATIONS_QUERY, {"first": 50}).json()["extensions"]["cost"]["throttleStatus"]
    assert after["currentlyAvailable"] >= first["throttleStatus"]["currentlyAvailable"] - 5  # nothing was charged


def test_throttled_as_429_carries_retry_after(sandbox, shop):
    sandbox.configure(shopify_bucket_size=100.0, shopify_restore_rate=2.0, shopify_throttle_status=429)
    gql(shop, "{ orders(first: 60) { nodes { id } } }")  # 62 charged, none refunded
    reply = gql(shop, "{ orders(first: 90) { nodes { id } } }")  # 92 > ~38 available
    assert reply.status_code == 429 and reply.json()["errors"][0]["extensions"]["code"] == "THROTTLED"
    status = reply.json()["extensions"]["cost"]["throttleStatus"]
    deficit = 92 - status["currentlyAvailable"]  # currentlyAvailable is rounded down
    assert math.ceil((deficit - 1) / 2.0) <= int(reply.headers["Retry-After"]) <= math.ceil(deficit / 2.0)


def test_max_cost_exceeded_charges_nothing(shop):
    body = gql(shop, "{ orders(first: 100) { nodes { id lineItems(first: 10) { nodes { id } } } } }").json()
    error = body["errors"][0]
    assert error["message"].startswith("Query cost is 1302, which exceeds the single query max cost limit (1000).")
    assert error["extensions"] == {"code": "MAX_COST_EXCEEDED", "cost": 1302, "maxCost": 1000,
                                   "documentation": "https://shopify.dev/api/usage/limits#rate-limits"}
    assert "data" not in body


def test_a_missing_scope_is_access_denied(sandbox, shop):
    sandbox.configure(shopify_scopes="read_customers,read_locations")
    body = gql(shop, "{\n  orders(first: 1) { nodes { id } }\n}").json()
    assert body["data"] is None
    assert body["errors"] == [{
        "message": "Access denied for orders field. Required access: `read_orders` access scope.",
        "locations": [{"line": 2, "column": 3}], "path": ["orders"],
        "extensions": {"code": "ACCESS_DENIED", "requiredAccess": "`read_orders` access scope."}}]


def test_injected_internal_error_quotes_its_request_id(sandbox, shop):
    sandbox.fault("shopify", script=["status_error", "502"])
    internal = gql(shop, "{ shop { name } }")
    error = internal.json()["errors"][0]
    assert internal.status_code == 200 and error["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    assert error["extensions"]["requestId"] == internal.headers["X-Request-Id"] in error["message"]
    edge = gql(shop, "{ shop { name } }")
    assert edge.status_code == 502 and not edge.text.startswith("{")


# ---------- webhooks (§9) ----------
class Receiver:
    """A webhook endpoint on loopback that records every delivery."""

    def __init__(self):
        self.deliveries: list[tuple[dict, bytes]] = []
        received = self.deliveries

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                received.append((dict(self.headers), self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhooks/shopify"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count: int, timeout_s: float = 10) -> list[tuple[dict, bytes]]:
        deadline = time.monotonic() + timeout_s
        while len(self.deliveries) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.deliveries)


@pytest.fixture
def receiver(sandbox):
    hook = Receiver()
    yield hook
    hook.server.shutdown()
    for registration in sandbox.admin.get("/_sandbox/webhooks", params={"service": "shopify"}).json()["registrations"]:
        sandbox.admin.delete(f"/_sandbox/webhooks/{registration['id']}")


def test_a_world_change_shows_in_graphql_and_as_signed_webhooks(sandbox, shop, receiver):
    sandbox.admin.post("/_sandbox/webhooks", json={"service": "shopify", "address": receiver.url,
                                                   "topics": ["fulfillment_events/create", "orders/updated"],
                                                   "duplicate_rate": 1.0}).raise_for_status()
    order_id = 6214737500007
    one = "query($id: ID!) { order(id: $id) { updatedAt fulfillments(first: 5) { id displayStatus } } }"
    before = gql(shop, one, {"id": f"gid://shopify/Order/{order_id}"}).json()
    change = sandbox.admin.post(f"/_sandbox/shopify/orders/{order_id}/events",
                                json={"type": "fulfillment_event", "status": "ATTEMPTED_DELIVERY"}).json()
    assert change["updated_at"] > before["data"]["order"]["updatedAt"]
    after = gql(shop, one, {"id": f"gid://shopify/Order/{order_id}"}).json()["data"]["order"]
    assert after["updatedAt"] == change["updated_at"] and after["fulfillments"][-1]["displayStatus"] == \
        "ATTEMPTED_DELIVERY"
    assert f"gid://shopify/Order/{order_id}" in ids_of(shop, f"updated_at:>='{change['updated_at']}'")
    assert f"gid://shopify/Order/{order_id}" in sandbox.ground_truth()["ids"]["shopify_fulfillment_exception"]

    deliveries = receiver.wait_for(4)  # two topics, each delivered twice (duplicate_rate 1)
    assert len(deliveries) == 4
    by_id: dict[str, list[bytes]] = {}
    for headers, body in deliveries:
        assert verify_shopify_hmac(body, headers["X-Shopify-Hmac-Sha256"], [SECRET])
        assert not verify_shopify_hmac(body, headers["X-Shopify-Hmac-Sha256"], ["another-secret"])
        assert headers["X-Shopify-Shop-Domain"] == "sandbox.myshopify.com"
        assert headers["X-Shopify-API-Version"] == "2026-01" and headers["X-Shopify-Triggered-At"].endswith("Z")
        by_id.setdefault(headers["X-Shopify-Webhook-Id"], []).append(body)
    assert sorted(len(bodies) for bodies in by_id.values()) == [2, 2]  # duplicates keep their Webhook-Id...
    assert all(bodies[0] == bodies[1] for bodies in by_id.values())  # ...and their exact bytes
    payloads = {h["X-Shopify-Topic"]: json.loads(b) for h, b in deliveries}
    event = payloads["fulfillment_events/create"]
    assert event["status"] == "attempted_delivery" and event["order_id"] == order_id
    assert event["fulfillment_id"] == int(after["fulfillments"][-1]["id"].rsplit("/", 1)[1])
    order = payloads["orders/updated"]
    assert order["admin_graphql_api_id"] == f"gid://shopify/Order/{order_id}"
    assert order["updated_at"] == change["updated_at"].replace("Z", "+00:00")
    log = sandbox.admin.get("/_sandbox/webhooks", params={"service": "shopify"}).json()["deliveries"]
    assert {entry["webhook_id"] for entry in log} == set(by_id) and sum(e["duplicate"] for e in log) == 2


def test_a_sample_is_the_template_verbatim(sandbox, receiver):
    sandbox.admin.post("/_sandbox/webhooks", json={"service": "shopify", "address": receiver.url}).raise_for_status()
    reply = sandbox.admin.post("/_sandbox/webhooks/deliver", json={
        "service": "shopify", "topic": "checkouts/update", "resource_id": None, "sample": True})
    assert reply.status_code == 202
    headers, body = receiver.wait_for(1)[0]
    assert body == (TEMPLATE_DIR / "checkouts_create.json").read_bytes()
    assert headers["X-Shopify-Topic"] == "checkouts/update" and verify_shopify_hmac(
        body, headers["X-Shopify-Hmac-Sha256"], [SECRET])
    missing = sandbox.admin.post("/_sandbox/webhooks/deliver", json={
        "service": "shopify", "topic": "refunds/create", "resource_id": "gid://shopify/Refund/1"})
    assert missing.status_code == 404
