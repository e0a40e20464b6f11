"""The sandbox's PhotoShelter against ../shared/contracts/photoshelter.md, over raw HTTP."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from resources.photoshelter import LISTING_EXTEND

KEY = {"X-PS-Api-Key": "sandbox-ps-key"}
LOGIN = {"email": "dam@sandbox.example", "password": "sandbox-ps-password", "mode": "token"}


def image_id(index: int) -> str:
    return f"I0000{index:011d}"


def login(sandbox, org: bool = True) -> httpx.Client:
    client = httpx.Client(base_url=f"{sandbox.url}/photoshelter/psapi/v3/mem", headers=KEY)
    token = client.post("/authenticate", data=LOGIN).json()["data"]["token"]
    client.headers["X-PS-Auth-Token"] = token
    if org:
        assert client.post("/organization/O0000SANDBOX/authenticate").json() == {"status": "ok", "data": {}}
    return client


@pytest.fixture
def ps(sandbox):
    client = login(sandbox)
    yield client
    client.close()


def test_api_key_is_required_everywhere(sandbox):
    for path in ("/psapi/v3/mem/authenticate", "/psapi/v3/mem/collection/root/children"):
        reply = httpx.get(f"{sandbox.url}/photoshelter{path}")
        assert reply.status_code == 401
        assert reply.json() == {"status": "error", "message": "Invalid API key", "code": "InvalidApiKey"}


def test_authentication_errors(sandbox):
    url = f"{sandbox.url}/photoshelter/psapi/v3/mem/authenticate"
    wrong = httpx.post(url, headers=KEY, data={**LOGIN, "password": "nope"})
    assert wrong.status_code == 401 and wrong.json()["code"] == "AuthenticationFailed"
    missing = httpx.post(url, headers=KEY, data={"email": LOGIN["email"]})
    assert missing.status_code == 400 and missing.json()["message"] == "Missing required parameter: password"
    as_json = httpx.post(url, headers=KEY, json=LOGIN)  # some clients send JSON; accepted
    assert as_json.json()["data"]["org"] == [{"id": "O0000SANDBOX", "name": "Sandbox Brand"}]


def test_org_content_needs_step_two_and_the_right_org(sandbox):
    client = login(sandbox, org=False)
    before = client.get("/collection/root/children")
    assert before.status_code == 403 and before.json()["code"] == "OrganizationAuthRequired"
    other = client.get("/organization/O0000OTHER/authenticate")
    assert other.status_code == 403 and other.json()["message"] == "Not a member of organization O0000OTHER"
    assert client.get("/organization/O0000SANDBOX/authenticate").status_code == 200  # GET is accepted too
    assert client.get("/collection/root/children").status_code == 200
    client.close()


def test_idle_session_expires_and_loses_its_org(sandbox, ps):
    sandbox.configure(photoshelter_session_idle_ttl_s=1)
    time.sleep(1.2)
    expired = ps.get("/collection/root/children")
    assert expired.status_code == 401 and expired.json()["code"] == "AuthenticationRequired"


def test_children_and_gallery(ps):
    children = ps.get("/collection/root/children").json()["data"]["Children"]
    assert "Gallery" not in children  # an empty kind is omitted
    collection = children["Collection"][0]
    assert collection["f_list"] == "f" and collection["created_at"].endswith(" GMT")
    galleries = ps.get(f"/collection/{collection['collection_id']}/children").json()["data"]["Children"]["Gallery"]
    gallery = ps.get(f"/gallery/{galleries[0]['gallery_id']}").json()["data"]["Gallery"]
    assert gallery["gallery_id"] == galleries[0]["gallery_id"] and gallery["gallery_id"].startswith("G0000")
    assert ps.get("/collection/C0000NOPE/children").json() == {"status": "error", "message": "Collection not found",
                                                                "code": "NotFound"}


def test_gallery_listing_paging_and_extend(sandbox, ps):
    gallery = ps.get("/collection/C000000000000000/children").json()["data"]["Children"]["Gallery"][0]["gallery_id"]
    first = ps.get(f"/gallery/{gallery}/images", params={"page": 1, "per_page": 5, "extend": LISTING_EXTEND}).json()
    paging = first["data"]["Paging"]
    assert paging["next"] == "2" and paging["per_page"] == "5" and int(paging["total"]) > 5
    last_page = paging["pages"]
    last = ps.get(f"/gallery/{gallery}/images", params={"page": last_page, "per_page": 5}).json()["data"]
    assert "next" not in last["Paging"] and set(last["GalleryImage"][0]) == {"image_id", "f_visible"}
    item = first["data"]["GalleryImage"][0]
    assert item["Image"]["file_size"].isdigit() and item["Image"]["model_released"] in ("t", "f")
    assert set(item["Image"]["Iptc"]) >= {"keyword", "caption", "credit", "title"}
    assert item["ImageLink"]["link"] == f"{sandbox.url}/photoshelter/img-get2/{item['image_id']}/fit=2000x2000"
    assert [f["field_name"] for f in item["CustomMetadata"]][:4] == ["SKU", "Style Code", "Product Family",
                                                                     "Approval Status"]
    huge = ps.get(f"/gallery/{gallery}/images", params={"per_page": 99999}).json()["data"]["Paging"]
    assert huge["per_page"] == "1500"  # clamped


def test_custom_metadata_has_ten_fields_in_order_with_nulls(ps):
    fields = ps.get(f"/image/{image_id(0)}/custom").json()["data"]["CustomMetadata"]
    assert [f["field_id"] for f in fields] == [f"MF{n:014d}" for n in range(1, 11)]
    assert fields[0] == {"field_id": "MF00000000000001", "field_name": "SKU", "tag": None}  # a style-level shot
    assert fields[9]["field_name"] == "License Expiration Date" and len(fields[9]["tag"]) == 10


def test_iptc_update_round_trip(sandbox, ps):
    target = image_id(5902)
    before = ps.get(f"/image/{target}").json()["data"]["Image"]["updated_at"]
    same = ps.post(f"/image/{target}/iptc/update", data={"credit": "Studio B"})
    assert same.json()["data"]["Iptc"]["credit"] == "Studio B"
    assert ps.get(f"/image/{target}").json()["data"]["Image"]["updated_at"] == before  # no real change
    changed = ps.post(f"/image/{target}/iptc/update", data={"keyword": "a,b", "headline": "New"}).json()["data"]["Iptc"]
    assert changed["keyword"] == "a,b" and changed["headline"] == "New"
    assert ps.get(f"/image/{target}/iptc").json()["data"]["Iptc"]["keyword"] == "a,b"
    assert ps.get(f"/image/{target}").json()["data"]["Image"]["updated_at"] != before
    assert [w["body"] for w in sandbox.writes("photoshelter")][-1] == {"keyword": "a,b", "headline": "New"}


def test_iptc_update_errors(ps):
    target = image_id(5903)
    assert ps.get(f"/image/{target}/iptc/update").json()["code"] == "MethodNotAllowed"
    unknown = ps.post(f"/image/{target}/iptc/update", data={"keywords": "x"})
    assert unknown.status_code == 400 and unknown.json()["message"] == "Unknown parameter: keywords"
    long = ps.post(f"/image/{target}/iptc/update", data={"keyword": "x" * 65})
    assert long.status_code == 400 and long.json()["message"] == "Keyword too long"
    assert ps.post(f"/image/{image_id(10**9)}/iptc/update", data={"keyword": "x"}).status_code == 404


def test_link_and_search(sandbox, ps):
    link = ps.get(f"/image/{image_id(7)}/link").json()["data"]["ImageLink"]
    assert link["link"].endswith("/fit=2000x2000") and "auth=" in link["auth_link"]
    assert httpx.get(link["link"]).headers["content-type"] == "image/jpeg"
    results = ps.get("/image/search", params={"terms": json.dumps(["SKU-100002"])}).json()["data"]
    assert results["Results"] and all("SKU-100002" in r["Image"]["file_name"] for r in results["Results"])
    by_custom_only = ps.get("/image/search", params={"terms": json.dumps(["Approved"])}).json()["data"]
    assert by_custom_only["Results"] == []  # custom metadata is not searched


def test_rate_limit_429(sandbox, ps):
    sandbox.configure(photoshelter_rate_per_s=1)
    replies = [ps.get("/collection/root/children") for _ in range(3)]
    limited = [r for r in replies if r.status_code == 429]
    assert limited and limited[0].headers["Retry-After"] == "2"
    assert limited[0].json() == {"status": "error", "message": "Rate limit exceeded", "code": "RateLimitExceeded"}


def test_auth_has_its_own_per_minute_limit(sandbox):
    sandbox.configure(photoshelter_auth_rate_per_min=2)
    url = f"{sandbox.url}/photoshelter/psapi/v3/mem/authenticate"
    statuses = [httpx.post(url, headers=KEY, data=LOGIN).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]


def test_trailing_slash_and_deep_page_and_envelope_faults(sandbox, ps):
    moved = ps.get("/collection/root/children/", follow_redirects=False)
    assert moved.status_code == 301 and moved.headers["location"].endswith("/collection/root/children")
    sandbox.configure(photoshelter_fail_beyond_page=2)
    assert ps.get("/gallery/G000000000000000/images", params={"page": 3}).status_code == 500
    sandbox.fault("photoshelter", script=["status_error", "503"])
    envelope = ps.get("/collection/root/children")
    assert envelope.status_code == 200 and envelope.json()["status"] == "error"
    overload = ps.get("/collection/root/children")
    assert overload.status_code == 503 and overload.json()["code"] == "ServiceUnavailable"
