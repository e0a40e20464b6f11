"""The Threekit client against the running sandbox, over real loopback HTTP."""

from __future__ import annotations

import logging
import time
from decimal import Decimal

import httpx
import pytest

import resources.threekit as threekit
from resources.http import AuthenticationFailed, NotFound, ServiceUnavailable
from resources.photoshelter import PhotoShelterClient
from resources.plytix import PlytixClient
from resources.threekit import AssetRef, Configuration, ThreekitClient, parse_time

TOKEN, ORG = "sandbox-threekit-token", "00000000-0000-4000-8000-000000000001"


class RecordingSleep:
    def __init__(self, real: bool = False):
        self.calls: list[float] = []
        self.real = real

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        if self.real:
            time.sleep(seconds)


class RecordingTransport(httpx.HTTPTransport):
    """Real HTTP, remembering every request the client sent."""

    def __init__(self):
        super().__init__()
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return super().handle_request(request)


@pytest.fixture
def fast(sandbox):
    """The per-token limit lifted, for tests about something else."""
    sandbox.configure(threekit_rate_limit_rps=100_000)
    return sandbox


def make_client(sandbox, *, token=TOKEN, org_id=ORG, sleep=None, pace=None, **kwargs) -> ThreekitClient:
    return ThreekitClient(f"{sandbox.url}/threekit", org_id, token, max_requests_per_second=pace,
                          sleep=sleep or RecordingSleep(), **kwargs)


def everything(pages) -> list:
    return [row for page in pages for row in page]


def test_every_request_carries_the_bearer_token_and_org_id(fast):
    transport = RecordingTransport()
    client = make_client(fast, transport=transport)
    order = next(client.iter_orders())[0]
    client.write_status_note(order.id, "Checked by the test")
    client.pricebooks()
    client.get_asset(next(client.iter_assets("item"))[0].id)
    assert len(transport.requests) >= 7
    for request in transport.requests:
        assert request.headers["Authorization"] == f"Bearer {TOKEN}"
        assert request.url.params["orgId"] == ORG and request.headers["Accept"] == "application/json"
    puts = [r for r in transport.requests if r.method == "PUT"]
    assert len(puts) == 1 and puts[0].headers["Content-Type"] == "application/json"


@pytest.mark.parametrize("token,org_id,status", [("distinctive-threekit-secret", ORG, 401),
                                                 (TOKEN, "00000000-0000-4000-8000-000000000002", 403)])
def test_401_and_403_are_fatal_and_keep_the_token_out(fast, token, org_id, status):
    sleep = RecordingSleep()
    client = make_client(fast, token=token, org_id=org_id, sleep=sleep)
    with pytest.raises(AuthenticationFailed) as caught:
        client.get_order("kq8XjT2mB")
    error = caught.value
    assert (error.service, error.status, error.attempts) == ("threekit", status, 1) and sleep.calls == []
    assert token not in str(error) and token not in repr(error.__dict__)


def test_paging_counts_equal_the_world(fast):
    config = fast.admin.get("/_sandbox/config").json()
    client = make_client(fast)
    configurations = everything(client.iter_configurations())
    assert len({c.id for c in configurations}) == len(configurations) == \
        config["products"] * config["threekit_configurations_per_100_products"] // 100
    orders = everything(client.iter_orders())
    envelope = httpx.get(f"{fast.url}/threekit/api/orders", params={"orgId": ORG, "perPage": 1},
                         headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert len({o.id for o in orders}) == len(orders) == envelope["count"] > 100
    items, models = everything(client.iter_assets("item")), everything(client.iter_assets("model"))
    products = everything(client.iter_catalog_products())
    assert {i.id for i in items} == {p["id"] for p in products} and {i.proxy_id for i in items} == {m.id for m in models}


def test_paging_trusts_the_echoed_per_page(fast, monkeypatch):
    """Asking for more than the service's maximum: stopping at page x asked >= count would lose rows."""
    monkeypatch.setattr(threekit, "PER_PAGE", 250)
    client = make_client(fast)
    ids = [c.id for c in everything(client.iter_configurations())]
    config = fast.admin.get("/_sandbox/config").json()
    assert len(set(ids)) == config["products"] * config["threekit_configurations_per_100_products"] // 100


def test_planted_defects_read_through_the_clients_equal_the_ground_truth(fast):
    truth = {kind: set(ids) for kind, ids in fast.ground_truth()["ids"].items() if kind.startswith("threekit_")}
    threshold = Decimal(str(fast.admin.get("/_sandbox/config").json()["threekit_review_threshold"]))
    client = make_client(fast)
    items = {i.id: i for i in everything(client.iter_assets("item"))}
    models = everything(client.iter_assets("model"))
    books = client.pricebooks()
    assert books and all(b.deleted_at is None for b in books)  # the deleted 2025 book is skipped
    assert {i for i, item in items.items() if any(item.price(b.id, c) is None for b in books for c in b.currencies)} \
        == truth["threekit_missing_price"]
    assert {m.id for m in models if m.has_unpublished_changes} == truth["threekit_unpublished_model_change"]

    plytix = PlytixClient(f"{fast.url}/plytix-auth", f"{fast.url}/plytix", "sandbox-plytix-key",
                          "sandbox-plytix-password", max_requests_per_second=None)
    skus = sorted({item.metadata["sku"] for item in items.values()})
    known = {p["sku"].strip().upper() for page in plytix.iter_skus(skus) for p in page}
    assert {i for i, item in items.items() if item.metadata["sku"] not in known} == truth["threekit_broken_sku_ref"]
    photoshelter = PhotoShelterClient(f"{fast.url}/photoshelter", "sandbox-ps-key", "dam@sandbox.example",
                                      "sandbox-ps-password", "O0000SANDBOX", max_requests_per_second=None)
    broken_images = set()
    for item_id, item in items.items():
        if item.metadata.get("photoshelterImageId"):
            try:
                photoshelter.get_image(item.metadata["photoshelterImageId"])
            except NotFound:
                broken_images.add(item_id)
    assert broken_images == truth["threekit_broken_image_ref"]

    configurations = everything(client.iter_configurations())
    assert {c.id for c in configurations if c.price is None} == truth["threekit_config_missing_price"]
    assert {c.id for c in configurations if c.price is not None and c.price > threshold} == \
        truth["threekit_config_needs_review"]
    outside = {c.id for c in configurations
               if any(items[c.product_id].offers(name, value) is False for name, value in c.variant.items())}
    assert outside == truth["threekit_config_invalid_option"]
    # Every stored price is exactly its item's pricebook price, as Decimal (a float would not compare equal).
    priced = [c for c in configurations if c.price is not None]
    assert all(c.price == items[c.product_id].price(c.pricebook_id, c.currency) for c in priced)
    assert any(isinstance(v, Decimal) for c in configurations for v in c.variant.values())
    assert all(isinstance(c.variant["Color"], AssetRef) or c.id in outside for c in configurations)


def test_parsing_is_lenient_where_the_contract_says_so():
    raw = {"id": "c1", "metadata": {"price": "abc", "currency": "USD"},
           "variant": {"Frame Color": {"assetId": "a1"}, "Size": "Large", "Width": 120, "Depth": 80.5,
                       "Engraving": "For Ada", "Extras": ["x", "y"], "Note": {"text": "odd"}}}
    configuration = Configuration.from_api(raw)
    assert configuration.price is None and configuration.currency == "USD"
    assert configuration.variant == {"Frame Color": AssetRef(asset_id="a1"), "Size": "Large", "Width": Decimal("120"),
                                     "Depth": Decimal("80.5"), "Engraving": "For Ada", "Extras": ["x", "y"],
                                     "Note": {"text": "odd"}}
    assert Configuration.from_api({"id": "c2"}).price is None
    assert Configuration.from_api({"id": "c3", "metadata": {"price": "1249.00"}}).price == Decimal("1249.00")
    item = threekit.Asset.from_api({"id": "i", "type": "item", "attributes": [
        {"name": "Price", "type": "Pricing", "values": [{"pricebook": "p", "currencies": {"USD": 1295.35, "EUR": "x"}}]}]})
    assert item.price("p", "USD") == Decimal("1295.35") and str(item.price("p", "USD")) == "1295.35"
    assert item.price("p", "EUR") is None and item.price("q", "USD") is None


def test_incremental_read_stops_after_the_overlap_and_returns_the_changes(fast):
    client = make_client(fast)
    full = client.read_incremental("orders", None)
    orders = everything(full.pages)
    assert len(orders) == len({o["id"] for o in orders})
    target = orders[-1]  # the least recently updated
    client.write_status_note(target["id"], "Sent to production")
    sent_before = client.http.requests_sent
    changes = client.read_incremental("orders", full.next_mark)
    changed = everything(changes.pages)
    cutoff = full.next_mark - threekit.OVERLAP
    expected = {target["id"]} | {o["id"] for o in orders if parse_time(o["updatedAt"]) >= cutoff}
    assert {o["id"] for o in changed} == expected
    assert client.http.requests_sent - sent_before == 1  # the first page already reached past the mark
    assert changes.next_mark > full.next_mark


def test_rows_shifting_mid_read_are_deduplicated_and_caught_by_the_next_read(fast):
    client = make_client(fast)
    read = client.read_incremental("orders", None)
    pages = iter(read.pages)
    seen = [o["id"] for o in next(pages)]
    oldest = everything(client.iter_pages("/api/orders", "orders", {"sort": "updatedAt"}))[0]
    client.write_status_note(oldest["id"], "Moved to the front mid-read")  # every later row shifts by one
    seen += [o["id"] for page in pages for o in page]
    count = len(everything(client.iter_orders()))
    assert len(seen) == len(set(seen)) == count - 1 and oldest["id"] not in seen
    caught = {o["id"] for o in everything(client.read_incremental("orders", read.next_mark).pages)}
    assert oldest["id"] in caught and set(seen) | caught == {o.id for o in everything(client.iter_orders())}


def test_status_note_write_back_merges_metadata_and_never_sends_the_cart(fast):
    client = make_client(fast)
    order = everything(client.iter_orders(status="New"))[0]
    writes_before = len(fast.writes("threekit"))
    result = client.write_status_note(order.short_id, "Paid in Shopify; sent to production" + "!" * 1200,
                                      status="In Progress")
    assert result.applied and result.written and result.order.status == "In Progress"
    write = fast.writes("threekit")[-1]
    assert write["method"] == "PUT" and write["status"] == 200 and write["path"] == f"/api/orders/{order.id}"
    assert set(write["body"]) == {"status", "metadata"}
    note = write["body"]["metadata"]["statusNote"]
    assert len(note) == threekit.STATUS_NOTE_MAX and note.startswith("Paid in Shopify")
    assert write["body"]["metadata"]["shopifyOrderId"] == order.metadata["shopifyOrderId"]  # merged, kept
    assert result.order.cart == order.cart and result.order.updated_at > order.updated_at
    again = client.write_status_note(order.id, note, status="In Progress")
    assert again.applied and not again.written and len(fast.writes("threekit")) == writes_before + 1


def test_422_is_logged_and_skipped_never_retried(fast, caplog):
    client = make_client(fast)
    order = next(client.iter_orders())[0]
    with caplog.at_level(logging.WARNING, logger="catalog_ops.threekit"):
        result = client.update_order(order.id, status="complete", metadata={"statusNote": "x"})
    assert not result.written and not result.applied
    assert [d["path"] for d in result.details] == ["status"] and "must be one of" in caplog.text
    refused = [w for w in fast.writes("threekit") if w["path"] == f"/api/orders/{order.id}"]
    assert [w["status"] for w in refused][-1] == 422 and sum(w["status"] == 422 for w in refused) == 1
    assert client.get_order(order.id).status == order.status


def test_429_waits_retry_after_and_the_read_completes(sandbox):
    sandbox.configure(threekit_rate_limit_rps=4)
    sleep = RecordingSleep(real=True)
    client = make_client(sandbox, sleep=sleep)
    shorts = [o.short_id for o in next(client.iter_orders())[:9]]
    orders = [client.get_order(short) for short in shorts]
    assert [o.short_id for o in orders] == shorts
    assert 1.0 in sleep.calls  # the service's Retry-After, not a guess
    assert client.http.requests_sent > 1 + len(shorts)


def test_a_paced_client_stays_under_the_limit(sandbox):
    sandbox.configure(threekit_rate_limit_rps=10)
    client = make_client(sandbox, sleep=time.sleep, pace=8.0)
    shorts = [o.short_id for o in next(client.iter_orders())[:12]]
    for short in shorts:
        client.get_order(short)
    assert client.http.requests_sent == 1 + len(shorts)  # no attempt was refused and retried


def test_5xx_backs_off_and_retries_then_gives_up_naming_the_call(fast):
    sleep = RecordingSleep()
    client = make_client(fast, sleep=sleep)
    order = next(client.iter_orders())[0]
    fast.fault("threekit", script=["503", "500"])
    assert client.get_order(order.id).id == order.id
    assert len(sleep.calls) == 2 and 0.5 <= sleep.calls[0] <= 1.0 and 1.0 <= sleep.calls[1] <= 2.0
    fast.fault("threekit", error_rate=1.0)
    with pytest.raises(ServiceUnavailable) as caught:
        client.get_order(order.id)
    assert caught.value.attempts == 6 and caught.value.path == f"/api/orders/{order.id}"
