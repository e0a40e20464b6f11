"""The sandbox's Threekit against ../shared/contracts/threekit.md: statuses, envelopes, shapes, raw HTTP."""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from tests.conftest import start_sandbox, stop_sandbox

TOKEN, PUBLIC = "sandbox-threekit-token", "sandbox-threekit-public-token"
ORG, OTHER_ORG = "00000000-0000-4000-8000-000000000001", "00000000-0000-4000-8000-000000000002"
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
ENVELOPE = {"count", "page", "perPage", "sort"}
CONFIGURATION_KEYS = {"id", "shortId", "orgId", "productId", "productVersion", "variant", "metadata", "customerId",
                      "thumbnail", "attachments", "identifier", "scope", "createdAt"}
ORDER_KEYS = {"id", "shortId", "orgId", "name", "customerId", "originOrgId", "platform", "metadata", "items", "cart",
              "derivative", "status", "createdAt", "updatedAt"}
PRODUCT_KEYS = {"id", "name", "description", "orgId", "proxyId", "keywords", "categories", "metadata"}
ASSET_KEYS = {"id", "name", "type", "orgId", "tags", "keywords", "metadata", "proxyId", "branch", "importedFileId",
              "attributes", "createdAt", "updatedAt", "publishedAt"}
PRICEBOOK_KEYS = {"id", "orgId", "name", "currencies", "createdAt", "createdBy", "deletedAt"}
VARIANT_KEYS = {"id", "customId", "itemId", "status", "options", "createdAt", "updatedAt"}
WEBHOOK_KEYS = {"id", "address", "topic", "orgId", "createdBy", "createdAt", "updatedAt", "deletedAt"}
STATUSES = ["List", "In Cart", "New", "In Progress", "Complete", "Cancelled"]


@pytest.fixture
def api(sandbox):
    """A private-token client; the per-token limit is lifted except where a test sets it."""
    sandbox.configure(threekit_rate_limit_rps=100_000)
    with httpx.Client(base_url=f"{sandbox.url}/threekit", params={"orgId": ORG},
                      headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        yield client


def first(api, path: str, key: str, **params) -> dict:
    return api.get(path, params={"perPage": 1, **params}).json()[key][0]


def test_auth_errors(sandbox, api):
    url = f"{sandbox.url}/threekit/api/orders"
    unauthorized = {"error": {"code": "unauthorized", "message": "Invalid or missing access token"}}
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": TOKEN}):
        reply = httpx.get(url, params={"orgId": ORG}, headers=headers)
        assert reply.status_code == 401 and reply.json() == unauthorized
    other = api.get("/api/orders", params={"orgId": OTHER_ORG})
    assert other.status_code == 403
    assert other.json() == {"error": {"code": "forbidden", "message": f"Token is not authorized for org {OTHER_ORG}"}}
    assert api.get(f"/api/orgs/{OTHER_ORG}/pricebooks").status_code == 403  # the org in the path is checked too
    # A browser token reads, but may not write (§3).
    order = first(api, "/api/orders", "orders")
    public = {"orgId": ORG, "bearer_token": PUBLIC}
    assert httpx.get(url, params=public).status_code == 200
    put = httpx.put(f"{url}/{order['id']}", params=public, json={"status": "Complete"})
    assert put.status_code == 403 and put.json()["error"]["code"] == "forbidden"
    assert api.get(f"/api/orders/{order['id']}").json()["status"] == order["status"]


def test_envelope_defaults_clamp_and_past_the_end(sandbox, api):
    config = sandbox.admin.get("/_sandbox/config").json()
    world = config["products"] * config["threekit_configurations_per_100_products"] // 100
    body = api.get("/api/configurations").json()
    assert list(body) == ["count", "page", "perPage", "sort", "configurations"]
    assert (body["count"], body["page"], body["perPage"], body["sort"]) == (world, 1, 30, "-createdAt")
    assert len(body["configurations"]) == 30
    clamped = api.get("/api/configurations", params={"perPage": 500, "page": 2}).json()
    assert clamped["perPage"] == 100 and len(clamped["configurations"]) == 100 and clamped["count"] == world
    last = -(-world // 100)
    tail = api.get("/api/configurations", params={"perPage": 100, "page": last}).json()
    assert len(tail["configurations"]) == world - 100 * (last - 1)
    past = api.get("/api/configurations", params={"perPage": 100, "page": last + 1}).json()
    assert past["configurations"] == [] and past["count"] == world
    bad = api.get("/api/configurations", params={"page": 0})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_request"


def test_walking_every_page_yields_each_record_once(api):
    for path, key in (("/api/orders", "orders"), ("/api/assets", "assets"), ("/api/catalog/products", "products")):
        ids, page = [], 1
        while True:
            body = api.get(path, params={"perPage": 100, "page": page}).json()
            ids += [row["id"] for row in body[key]]
            if page * body["perPage"] >= body["count"]:
                break
            page += 1
        assert len(ids) == len(set(ids)) == body["count"] > 100, path


@pytest.mark.parametrize("path,key,field", [
    ("/api/orders", "orders", "createdAt"), ("/api/orders", "orders", "updatedAt"), ("/api/orders", "orders", "name"),
    ("/api/assets", "assets", "updatedAt"), ("/api/assets", "assets", "name"),
    ("/api/configurations", "configurations", "createdAt"),
])
def test_sort_ascending_and_descending(api, path, key, field):
    for sort, descending in ((field, False), (f"-{field}", True)):
        body = api.get(path, params={"sort": sort, "perPage": 100, "page": 2}).json()
        values = [row[field] for row in body[key]]
        assert body["sort"] == sort and len(values) == 100
        assert values == sorted(values, reverse=descending)
    reply = api.get(path, params={"sort": "-price"})
    assert reply.status_code == 400 and set(reply.json()["error"]) == {"code", "message"}


def test_exact_key_sets_nulls_and_timestamps(api):
    configuration = first(api, "/api/configurations", "configurations")
    assert set(configuration) == CONFIGURATION_KEYS and configuration["productVersion"] == "v1"
    assert (configuration["attachments"], configuration["identifier"], configuration["scope"]) == ({}, None, None)
    assert {"price", "currency", "pricebookId", "shopifyLineItemId"} >= set(configuration["metadata"]) >= {
        "currency", "pricebookId", "shopifyLineItemId"}
    order = first(api, "/api/orders", "orders")
    assert set(order) == ORDER_KEYS and order["items"] == [] and order["status"] in STATUSES
    assert set(order["metadata"]) == {"shopifyOrderId", "statusNote", "statusNoteAt"}
    assert set(order["cart"][0]) == {"configurationId", "count", "metadata"}
    assert set(first(api, "/api/catalog/products", "products")) == PRODUCT_KEYS
    item = first(api, "/api/assets", "assets", type="item")
    model = first(api, "/api/assets", "assets", type="model")
    assert set(item) == set(model) == ASSET_KEYS and item["proxyId"] and model["proxyId"] is None
    assert {a["name"] for a in item["attributes"]} >= {"Color", "Size"}
    assert {a["type"] for a in item["attributes"]} <= {"Asset", "String", "Number", "Pricing"}
    pricebooks = api.get(f"/api/orgs/{ORG}/pricebooks", params={"all": "true"}).json()["pricebooks"]
    assert all(set(p) == PRICEBOOK_KEYS for p in pricebooks)
    assert any(p["deletedAt"] is None for p in pricebooks) and any(p["deletedAt"] for p in pricebooks)
    variants = api.get(f"/api/catalog/items/{item['id']}/variants").json()
    assert list(variants) == ["count", "page", "perPage", "variants"] and variants["perPage"] == 50
    assert variants["variants"] and all(set(v) == VARIANT_KEYS for v in variants["variants"])
    for record in (configuration, order, item, model, *pricebooks, *variants["variants"]):
        assert UUID.match(record["id"])
        for name in ("createdAt", "updatedAt", "publishedAt", "deletedAt"):
            assert record.get(name) is None or STAMP.match(record[name]), (name, record[name])


def test_lookup_by_id_and_short_id_and_404s(api):
    for path, key, what in (("/api/configurations", "configurations", "Configuration"),
                            ("/api/orders", "orders", "Order")):
        row = first(api, path, key)
        assert api.get(f"{path}/{row['id']}").json() == api.get(f"{path}/{row['shortId']}").json() == row
        missing = api.get(f"{path}/kq8XjT2mB")
        assert missing.status_code == 404
        assert missing.json() == {"error": {"code": "not_found", "message": f"{what} kq8XjT2mB not found"}}
    assert api.get("/api/assets/00000000-0000-4000-8000-00000000dead").status_code == 404


def test_assets_require_org_id(sandbox):
    reply = httpx.get(f"{sandbox.url}/threekit/api/assets", headers={"Authorization": f"Bearer {TOKEN}"})
    assert reply.status_code == 400 and reply.json()["error"]["code"] == "bad_request"


def test_filters(api):
    models = api.get("/api/assets", params={"type": "model", "perPage": 100}).json()
    assert models["assets"] and {a["type"] for a in models["assets"]} == {"model"}
    item = first(api, "/api/catalog/products", "products")
    by_metadata = api.get("/api/catalog/products", params={"metadata": json.dumps({"sku": item["metadata"]["sku"]})})
    assert [p["id"] for p in by_metadata.json()["products"]] == [item["id"]]
    order = first(api, "/api/orders", "orders")
    platform = json.dumps({"platform": "shopify", "id": order["platform"]["id"]})
    assert [o["id"] for o in api.get("/api/orders", params={"platform": platform}).json()["orders"]] == [order["id"]]
    assert api.get("/api/orders", params={"platform": "{not json"}).status_code == 400
    status = api.get("/api/orders", params={"status": "In Progress", "perPage": 100}).json()
    assert status["count"] > 0 and {o["status"] for o in status["orders"]} == {"In Progress"}
    variants = api.get(f"/api/catalog/items/{item['id']}/variants", params={"status": '["active","invalid"]'}).json()
    assert {v["status"] for v in variants["variants"]} <= {"active", "invalid"}
    assert api.get(f"/api/catalog/items/{item['id']}/variants", params={"status": "gone"}).status_code == 400
    by_sku = api.get(f"/api/catalog/items/{item['metadata']['sku']}/variants").json()  # customId works too
    assert by_sku["count"] == 3


def test_put_replaces_only_the_keys_sent_and_bumps_updated_at(sandbox, api):
    order = first(api, "/api/orders", "orders", sort="createdAt")
    body = {"status": "In Progress",
            "metadata": {"statusNote": "Paid in Shopify", "statusNoteAt": "2026-11-21T08:20:00.000Z"}}
    reply = api.put(f"/api/orders/{order['shortId']}", json=body)
    assert reply.status_code == 200
    after = reply.json()
    assert after["status"] == "In Progress" and after["metadata"] == body["metadata"]  # replaced, not merged
    assert "shopifyOrderId" not in after["metadata"]
    assert {k: after[k] for k in ORDER_KEYS - {"status", "metadata", "updatedAt"}} == \
        {k: order[k] for k in ORDER_KEYS - {"status", "metadata", "updatedAt"}}
    assert STAMP.match(after["updatedAt"]) and after["updatedAt"] > order["updatedAt"]
    assert api.get(f"/api/orders/{order['id']}").json() == after
    second = api.put(f"/api/orders/{order['id']}", json={}).json()  # nothing sent, still a write
    assert second["metadata"] == after["metadata"] and second["updatedAt"] > after["updatedAt"]
    recorded = [w for w in sandbox.writes("threekit") if w["path"] == f"/api/orders/{order['shortId']}"]
    assert recorded[-1]["method"] == "PUT" and recorded[-1]["status"] == 200 and recorded[-1]["body"] == body


@pytest.mark.parametrize("body,path", [
    ({"status": "complete"}, "status"), ({"status": "In progress"}, "status"), ({"status": None}, "status"),
    ({"metadata": "note"}, "metadata"), ({"metadata": ["a"]}, "metadata"), ({"name": "x" * 256}, "name"),
])
def test_put_validation_is_422_and_changes_nothing(sandbox, api, body, path):
    order = first(api, "/api/orders", "orders", sort="name")
    reply = api.put(f"/api/orders/{order['id']}", json=body)
    assert reply.status_code == 422
    error = reply.json()["error"]
    assert (error["code"], error["message"]) == ("validation_error", "Invalid order")
    assert [d["path"] for d in error["details"]] == [path]
    if path == "status":
        assert error["details"][0]["message"] == "must be one of List, In Cart, New, In Progress, Complete, Cancelled"
    assert api.get(f"/api/orders/{order['id']}").json() == order
    assert sandbox.writes("threekit")[-1]["status"] == 422


def test_put_errors(api):
    order = first(api, "/api/orders", "orders")
    malformed = api.put(f"/api/orders/{order['id']}", content=b"{not json", headers={"Content-Type": "application/json"})
    assert malformed.status_code == 400 and malformed.json()["error"]["code"] == "bad_request"
    missing = api.put("/api/orders/kq8XjT2mB", json={"status": "New"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert api.delete(f"/api/orders/{order['id']}").status_code == 405


def test_rate_limit_is_429_with_retry_after(sandbox, api):
    sandbox.configure(threekit_rate_limit_rps=5)
    replies = [api.get("/api/orders", params={"perPage": 1}) for _ in range(8)]
    assert [r.status_code for r in replies[:5]] == [200] * 5
    refused = [r for r in replies if r.status_code == 429]
    assert refused and refused[0].headers["Retry-After"] == "1"
    assert refused[0].json() == {"error": {"code": "rate_limited", "message": "Too many requests"}}


def test_injected_faults_use_threekit_shapes(sandbox, api):
    sandbox.fault("threekit", script=["500", "429", "502"])
    internal, limited, gateway = (api.get("/api/orders") for _ in range(3))
    assert internal.json() == {"error": {"code": "internal", "message": "Internal server error"}}
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "1"
    assert gateway.status_code == 502 and gateway.text.startswith("<html>")


# ---------- webhooks (§5), through the shared hub ----------
class Receiver:
    """Records every POST and answers from a script of statuses (then 200)."""

    def __init__(self, statuses: list[int]):
        self.received: list[dict] = []
        self.statuses = list(statuses)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.received.append({"path": self.path, "headers": dict(self.headers.items()), "body": body})
                self.send_response(receiver.statuses.pop(0) if receiver.statuses else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/threekit/unguessable-token"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def wait_for(self, n: int, timeout: float = 10.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.received) < n and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.received

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(sandbox):
    made: list[tuple[Receiver, str]] = []

    def register(statuses: list[int] = (), **options) -> Receiver:
        hook = Receiver(list(statuses))
        reply = sandbox.admin.post("/_sandbox/webhooks", json={"service": "threekit", "address": hook.url, **options})
        assert reply.status_code == 201, reply.text
        made.append((hook, reply.json()["id"]))
        return hook

    yield register
    for hook, registration in made:
        sandbox.admin.delete(f"/_sandbox/webhooks/{registration}")
        hook.close()


def test_webhooks_are_listed_one_row_per_topic(sandbox, api, receiver):
    hook = receiver(topics=["order.updated", "asset.published"])
    body = api.get("/api/webhooks").json()
    mine = [row for row in body["webhooks"] if row["address"] == hook.url]
    assert sorted(row["topic"] for row in mine) == ["asset.published", "order.updated"]
    assert all(set(row) == WEBHOOK_KEYS and row["orgId"] == ORG and row["deletedAt"] is None for row in mine)
    assert len({row["id"] for row in mine}) == 2 and set(body) == ENVELOPE | {"webhooks"}
    only = api.get("/api/webhooks", params={"topic": "asset.published"}).json()["webhooks"]
    assert [row["topic"] for row in only if row["address"] == hook.url] == ["asset.published"]


def test_order_put_delivers_order_updated_with_the_same_delivery_id_on_retry(api, receiver):
    hook = receiver([500], topics=["order.updated"], retry_schedule_s=[0.2, 0.2, 0.2])
    order = first(api, "/api/orders", "orders")
    updated = api.put(f"/api/orders/{order['id']}", json={"status": "Complete"}).json()
    first_try, retry = hook.wait_for(2)[:2]
    assert first_try["headers"]["X-Threekit-Delivery-Id"] == retry["headers"]["X-Threekit-Delivery-Id"]
    assert UUID.match(first_try["headers"]["X-Threekit-Delivery-Id"])
    assert first_try["body"] == retry["body"]  # frozen bytes
    assert first_try["headers"]["X-Threekit-Topic"] == "order.updated"
    assert first_try["headers"]["Content-Type"] == "application/json"
    assert not any(name.lower().endswith(("signature", "hmac-sha256")) for name in first_try["headers"])  # unsigned
    payload = json.loads(first_try["body"])
    assert set(payload) == {"id", "topic", "orgId", "createdAt", "data"} and STAMP.match(payload["createdAt"])
    assert payload["data"] == {"id": order["id"], "shortId": order["shortId"], "updatedAt": updated["updatedAt"]}


def test_publishing_a_model_emits_asset_published(api, sandbox, receiver):
    hook = receiver(topics=["asset.published"])
    stale = next(a for a in api.get("/api/assets", params={"type": "model", "perPage": 100}).json()["assets"]
                 if a["publishedAt"] is None or a["publishedAt"] < a["updatedAt"])
    published = sandbox.admin.post(f"/_sandbox/threekit/assets/{stale['id']}/publish").json()
    assert published["publishedAt"] >= published["updatedAt"] == stale["updatedAt"]
    payload = json.loads(hook.wait_for(1)[0]["body"])
    assert payload["topic"] == "asset.published" and payload["data"]["id"] == stale["id"]
    assert payload["data"]["publishedAt"] == published["publishedAt"]
    # An edit after the publish leaves changes unpublished again (and puts the planted case back).
    edited = sandbox.admin.post(f"/_sandbox/threekit/assets/{stale['id']}/touch").json()
    assert edited["updatedAt"] > edited["publishedAt"] == published["publishedAt"]
    assert api.get(f"/api/assets/{stale['id']}").json() == edited


def test_deliver_builds_threekit_payloads(sandbox, api, receiver):
    hook = receiver(topics=["order.created", "asset.updated"])
    order = first(api, "/api/orders", "orders")
    model = first(api, "/api/assets", "assets", type="model")
    deliver = "/_sandbox/webhooks/deliver"
    for topic, resource in (("order.created", order["shortId"]), ("asset.updated", model["id"])):
        reply = sandbox.admin.post(deliver, json={"service": "threekit", "topic": topic, "resource_id": resource})
        assert reply.status_code == 202 and len(reply.json()["webhook_ids"]) == 1
    sample = sandbox.admin.post(deliver, json={"service": "threekit", "topic": "order.created", "sample": True})
    assert sample.status_code == 202
    bodies = [json.loads(r["body"]) for r in hook.wait_for(3)]  # delivered concurrently: in any order
    (sample,) = [b for b in bodies if b["topic"] == "order.created" and b["data"]["id"] != order["id"]]
    by_topic = {b["topic"]: b for b in bodies if b is not sample}
    assert by_topic["order.created"]["data"] == {"id": order["id"], "shortId": order["shortId"],
                                                 "updatedAt": order["updatedAt"]}
    assert by_topic["asset.updated"]["data"] == {"id": model["id"], "type": "model", "updatedAt": model["updatedAt"],
                                                 "publishedAt": model["publishedAt"]}
    assert sample["data"]["shortId"] == "Qm4Z8wLr2"  # the contract's example, verbatim
    missing = sandbox.admin.post(deliver, json={"service": "threekit", "topic": "order.updated", "resource_id": "nope"})
    unknown = sandbox.admin.post(deliver, json={"service": "threekit", "topic": "orders/updated", "resource_id": "x"})
    assert (missing.status_code, unknown.status_code) == (404, 400)


def test_storefront_saves_and_orders_emit_their_topics():
    """On a sandbox of its own: new records would change the shared world's counts."""
    proc, url = start_sandbox(products=40)
    hook = Receiver([])
    try:
        admin = httpx.Client(base_url=url)
        admin.post("/_sandbox/webhooks", json={"service": "threekit", "address": hook.url}).raise_for_status()
        api = httpx.Client(base_url=f"{url}/threekit", params={"orgId": ORG}, headers={"Authorization": f"Bearer {TOKEN}"})
        item = first(api, "/api/catalog/products", "products")
        saved = admin.post("/_sandbox/threekit/configurations", json={
            "productId": item["id"], "variant": {"Size": "M"}, "metadata": {"price": "10.00", "currency": "USD"}})
        assert saved.status_code == 201 and set(saved.json()) == CONFIGURATION_KEYS
        newest = first(api, "/api/configurations", "configurations")
        assert newest == saved.json() and api.get(f"/api/configurations/{newest['shortId']}").json() == newest
        placed = admin.post("/_sandbox/threekit/orders", json={"cart": [newest["shortId"]], "name": "Web #1"})
        assert placed.status_code == 201 and placed.json()["cart"][0]["configurationId"] == newest["id"]
        assert admin.post("/_sandbox/threekit/orders", json={"cart": ["nope"]}).status_code == 400
        topics = [json.loads(r["body"])["topic"] for r in hook.wait_for(2)]
        assert topics == ["configuration.created", "order.created"]
    finally:
        hook.close()
        stop_sandbox(proc)
