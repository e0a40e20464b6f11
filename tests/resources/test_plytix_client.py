"""The Plytix client against the running sandbox, over real loopback HTTP."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from resources.http import (
    AuthenticationFailed,
    MalformedResponse,
    ServiceUnavailable,
    UnexpectedRedirect,
)
from resources.plytix import PlytixClient, PlytixProduct, parse_timestamp

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FAR_FUTURE = datetime(2100, 1, 1, tzinfo=UTC)


def product_id(index: int) -> str:
    return f"6740a1f2{index:016x}"


class RecordingSleep:
    def __init__(self):
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def make_client(sandbox, *, password="sandbox-plytix-password", sleep=None, clock=time.time, **kwargs) -> PlytixClient:
    return PlytixClient(f"{sandbox.url}/plytix-auth", f"{sandbox.url}/plytix", "sandbox-plytix-key", password,
                        max_requests_per_second=None, sleep=sleep or RecordingSleep(), clock=clock, **kwargs)


def test_token_is_fetched_once_and_reused(sandbox):
    client = make_client(sandbox)
    for _ in range(3):
        client.search_products(page_size=1)
    assert client.token_fetches == 1


def test_wrong_credentials_fail_loudly_without_the_secret(sandbox):
    secret = "very-distinctive-secret-1234"
    client = make_client(sandbox, password=secret)
    with pytest.raises(AuthenticationFailed) as caught:
        client.search_products(page_size=1)
    error = caught.value
    assert (error.service, error.method, error.path, error.status) == ("plytix-auth", "POST", "/auth/api/get-token", 401)
    assert "Credentials not valid" in str(error)
    assert secret not in str(error) and secret not in repr(error.__dict__)


def test_expired_token_is_refreshed_once_and_the_call_retried(sandbox):
    client = make_client(sandbox)
    client.search_products(page_size=1)
    sandbox.admin.post("/_sandbox/tokens/expire", json={"service": "plytix"}).raise_for_status()
    reply = client.search_products(page_size=1)
    assert reply["pagination"]["total_count"] == sandbox.health()["products"]
    assert client.token_fetches == 2


def test_token_is_refreshed_before_exp_without_a_401(sandbox):
    sandbox.configure(plytix_token_ttl_s=400)
    offset = [0.0]
    client = make_client(sandbox, clock=lambda: time.time() + offset[0])
    client.search_products(page_size=1)
    offset[0] = 400 - 60 + 1  # just past exp - 60 s: the client must refresh on its own
    client.search_products(page_size=1)
    assert client.token_fetches == 2
    offset[0] = 400 - 60 + 2  # the new token is fresh: no third fetch
    client.search_products(page_size=1)
    assert client.token_fetches == 2


def _all_ids(client: PlytixClient) -> list[str]:
    return [item["id"] for page in client.iter_modified(EPOCH, FAR_FUTURE, ["modified"]) for item in page]


def test_full_read_splits_windows_below_the_sort_cap(sandbox):
    sandbox.configure(plytix_sort_cap=300)
    client = make_client(sandbox, split_above=250)
    ids = _all_ids(client)
    assert len(ids) == len(set(ids)) == sandbox.health()["products"]


def test_full_read_recovers_from_428_when_a_window_exceeds_the_cap(sandbox):
    sandbox.configure(plytix_sort_cap=300)
    client = make_client(sandbox)  # splits only above 9 000: every sorted read over 300 gets a 428
    ids = _all_ids(client)
    assert len(ids) == len(set(ids)) == sandbox.health()["products"]


def test_burst_on_one_instant_is_read_completely(sandbox):
    """150 products share one `modified` instant (more than a page): none may be skipped."""
    client = make_client(sandbox)
    rows = [item for page in client.iter_modified(EPOCH, FAR_FUTURE, ["modified"]) for item in page]
    by_instant: dict[str, int] = {}
    for row in rows:
        by_instant[row["modified"]] = by_instant.get(row["modified"], 0) + 1
    assert max(by_instant.values()) == sandbox.admin.get("/_sandbox/config").json()["burst_size"] == 150
    assert len(rows) == sandbox.health()["products"]


def test_day_window_returns_exactly_that_days_changes(sandbox):
    client = make_client(sandbox)
    everything = [item for page in client.iter_modified(EPOCH, FAR_FUTURE, ["modified"]) for item in page]
    day = datetime(2026, 11, 20, tzinfo=UTC)
    expected = {r["id"] for r in everything if day <= parse_timestamp(r["modified"]) < day + timedelta(days=1)}
    got = [r["id"] for page in client.iter_modified(day, day + timedelta(days=1), ["modified"]) for r in page]
    assert expected and sorted(got) == sorted(expected)


def test_pages_validate_as_products(sandbox):
    client = make_client(sandbox)
    page = client.search_products(attributes=["label", "modified", "categories", "thumbnail",
                                              "attributes.workflow_stage"], page_size=100)["data"]
    products = [PlytixProduct.model_validate(item) for item in page]
    assert len(products) == 100
    variants = [p for p in products if p.parent_id]
    assert variants and all(p.modified.tzinfo is not None for p in products)
    assert all(len(p.categories) == 1 for p in products)


def test_429_waits_retry_after_then_succeeds(sandbox):
    sleep = RecordingSleep()
    client = make_client(sandbox, sleep=sleep)
    client.search_products(page_size=1)  # token first, so the fault hits the search
    sandbox.fault("plytix", script=["429"])
    reply = client.search_products(page_size=1)
    assert reply["pagination"]["total_count"] == sandbox.health()["products"]
    assert sleep.calls == [1.0]  # the injected 429's Retry-After


def test_persistent_5xx_fails_after_the_retry_budget_naming_the_call(sandbox):
    sleep = RecordingSleep()
    client = make_client(sandbox, sleep=sleep, max_attempts=4)
    client.search_products(page_size=1)
    sandbox.fault("plytix", error_rate=1.0)
    with pytest.raises(ServiceUnavailable) as caught:
        client.search_products(page_size=1)
    error = caught.value
    assert (error.service, error.method, error.path) == ("plytix", "POST", "/api/v1/products/search")
    assert error.status in (500, 502, 503) and error.attempts == 4 and len(sleep.calls) == 3
    assert error.request_id and len(error.request_id) == 32  # the gateway's X-Kong-Request-Id
    assert "plytix POST /api/v1/products/search failed: HTTP 5" in str(error)


def test_backoff_grows_with_jitter_between_bounds(sandbox):
    sleep = RecordingSleep()
    client = make_client(sandbox, sleep=sleep, max_attempts=5)
    client.search_products(page_size=1)
    sandbox.fault("plytix", script=["500", "500", "500", "500", "500"])
    with pytest.raises(ServiceUnavailable):
        client.search_products(page_size=1)
    ceilings = [1, 2, 4, 8]
    assert len(sleep.calls) == 4
    assert all(c / 2 <= s <= c for s, c in zip(sleep.calls, ceilings, strict=True))


def test_malformed_json_fails_clearly_after_retries(sandbox):
    client = make_client(sandbox, max_attempts=3)
    client.search_products(page_size=1)
    sandbox.fault("plytix", malformed_rate=1.0)
    with pytest.raises(MalformedResponse) as caught:
        client.search_products(page_size=1)
    assert "not valid JSON" in str(caught.value) and caught.value.attempts == 3


def test_a_transient_truncated_body_is_read_again(sandbox):
    client = make_client(sandbox)
    client.search_products(page_size=1)
    sandbox.fault("plytix", script=["malformed"])
    assert client.search_products(page_size=1)["pagination"]["page_size"] == 1


def test_dropped_connection_is_retried(sandbox):
    sleep = RecordingSleep()
    client = make_client(sandbox, sleep=sleep)
    client.search_products(page_size=1)
    sandbox.fault("plytix", script=["drop"])
    reply = client.search_products(page_size=1)
    assert reply["pagination"]["total_count"] == sandbox.health()["products"] and len(sleep.calls) == 1


def test_a_post_that_may_have_been_applied_is_not_resent(sandbox):
    client = make_client(sandbox)
    client.search_products(page_size=1)
    sandbox.fault("plytix", script=["503"])
    with pytest.raises(ServiceUnavailable) as caught:
        client.api.request("POST", "/api/v1/products/search", idempotent=False, auth=client._headers,
                           json={"filters": []})
    assert caught.value.attempts == 1


def test_timeout_is_retried(sandbox):
    client = make_client(sandbox, timeout_s=0.5)
    client.search_products(page_size=1)
    sandbox.fault("plytix", script=["timeout"], timeout_s=2)
    assert client.search_products(page_size=1)["pagination"]["page"] == 1


def test_redirects_are_never_followed(sandbox):
    client = make_client(sandbox)
    with pytest.raises(UnexpectedRedirect) as caught:
        client.api.request("GET", f"/api/v1/products/{product_id(3)}/", auth=client._headers)
    assert caught.value.status == 301


def test_update_sends_only_differences_and_round_trips(sandbox):
    client = make_client(sandbox)
    pid = product_id(1901)
    before = client.get_product(pid)
    new_stage = "Approved" if before["attributes"]["workflow_stage"] != "Approved" else "Published"
    assert client.update_product_if_changed(pid, attributes={"workflow_stage": new_stage}) is True
    after = client.get_product(pid)
    assert after["attributes"]["workflow_stage"] == new_stage
    assert parse_timestamp(after["modified"]) > parse_timestamp(before["modified"])
    writes = len(sandbox.writes("plytix"))
    assert client.update_product_if_changed(pid, attributes={"workflow_stage": new_stage}) is False
    assert len(sandbox.writes("plytix")) == writes  # no empty PATCH: it would bump `modified`


def test_asset_create_and_link_are_idempotent(sandbox):
    client = make_client(sandbox)
    pid = product_id(1902)
    url = f"{sandbox.url}/photoshelter/img-get2/I0000TESTASSET1/fit=2000x2000"
    first = client.create_asset(url, "I0000TESTASSET1.jpg")
    assert client.create_asset(url, "I0000TESTASSET1.jpg") == first  # 409 "Asset already exists"
    assert client.find_asset("I0000TESTASSET1.jpg")["id"] == first
    assert client.link_asset(pid, first, "alternate_images") is True
    assert client.link_asset(pid, first, "alternate_images") is False  # 409 already linked
    product = client.get_product(pid)
    assert product["attributes"]["alternate_images"].count({"id": first}) == 1
    assert first in [a["id"] for a in client.product_assets(pid)]
    client.unlink_asset(pid, first)
    assert first not in [a["id"] for a in client.product_assets(pid)]


def test_categories_listing_and_links(sandbox):
    client = make_client(sandbox)
    categories = list(client.iter_categories())
    paths = {tuple(c["path"]) for c in categories}
    assert ("Apparel", "Outerwear", "Jackets") in paths and ("Imported", "Unsorted") in paths
    pid = product_id(1903)
    extra = next(c for c in categories if c["path"] == ["Home", "Lighting", "Lamps"])
    assert client.link_category(pid, extra["id"]) is True
    assert client.link_category(pid, extra["id"]) is False
    assert extra["id"] in [c["id"] for c in client.get_product(pid)["categories"]]
    client.unlink_category(pid, extra["id"])
    assert extra["id"] not in [c["id"] for c in client.get_product(pid)["categories"]]


def test_definitions_are_readable(sandbox):
    client = make_client(sandbox)
    labels = {a["label"] for a in client.attribute_definitions()}
    assert {"workflow_stage", "hero_image", "alternate_images", "license_expiration_date"} <= labels
    keys = {a["key"] for a in client.product_filters()["attributes"]}
    assert {"modified", "status", "attributes.workflow_stage"} <= keys


def test_client_pacing_spaces_calls(sandbox):
    """The shared pacer keeps the account under its budget (here 20/s, measured on a fake clock)."""
    sleep = RecordingSleep()
    client = PlytixClient(f"{sandbox.url}/plytix-auth", f"{sandbox.url}/plytix", "sandbox-plytix-key",
                          "sandbox-plytix-password", max_requests_per_second=20, sleep=sleep)
    start = time.monotonic()
    for _ in range(5):
        client.search_products(page_size=1)
    waited = sum(sleep.calls)
    # 5 paced API calls need 4 intervals of 50 ms between them; the fake sleep returns at once.
    assert waited + (time.monotonic() - start) >= 0.2 - 0.01
    assert len(sleep.calls) >= 3


def test_transport_errors_name_the_service(sandbox):
    client = PlytixClient("http://127.0.0.1:9/plytix-auth", "http://127.0.0.1:9/plytix", "k", "p",
                          max_requests_per_second=None, sleep=RecordingSleep(), max_attempts=2)
    with pytest.raises(ServiceUnavailable) as caught:
        client.search_products()
    assert caught.value.service == "plytix-auth" and caught.value.status is None
    assert "ConnectError" in str(caught.value)
    assert isinstance(caught.value.__cause__, type(None)) or not isinstance(caught.value.__cause__, httpx.HTTPError)


def test_auth_host_5xx_is_retried_every_5_seconds(sandbox):
    sleep = RecordingSleep()
    client = make_client(sandbox, sleep=sleep)
    sandbox.fault("plytix-auth", script=["502", "503"])
    client.search_products(page_size=1)
    assert sleep.calls == [5.0, 5.0] and client.token_fetches == 1
