"""The sandbox's PhotoShelter against ../shared/contracts/photoshelter.md, over real loopback HTTP.

A small world of its own (200 products) served by uvicorn in a thread, so this module needs no
other fixture and its world edits (IPTC updates) never reach other modules' tests.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import uvicorn

from sandbox.app import create_app
from sandbox.options import SandboxOptions

KEY = {"X-PS-Api-Key": "sandbox-ps-key"}
LOGIN = {"email": "dam@sandbox.example", "password": "sandbox-ps-password", "mode": "token"}
MEM = "/photoshelter/psapi/v3/mem"
FULL_EXTEND = json.dumps({
    "Image": {"fields": "image_id,file_name,file_size,width,height,updated_at,uploaded_at,model_released,"
                        "property_released", "params": {}},
    "Iptc": {"fields": "keyword,caption,credit,title", "params": {}},
    "ImageLink": {"fields": "link,base", "params": {"image_size": "2000x2000", "image_mode": "fit",
                                                    "f_https_link": "t"}},
    "CustomMetadata": {"fields": "field_id,field_name,tag", "params": {}},
})
CUSTOM_NAMES = ["SKU", "Style Code", "Product Family", "Approval Status", "Usage: E-commerce", "Usage: Social",
                "Usage: Print", "Usage: Marketplaces", "Licensed Market", "License Expiration Date"]


class _AnyString:
    def __eq__(self, other) -> bool:
        return isinstance(other, str)


ANY_STRING = _AnyString()


def error(code: str, message: str) -> dict:
    return {"status": "error", "message": message, "code": code}


def image_id(index: int) -> str:
    return f"I0000{index:011d}"


def gmt(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%d %H:%M:%S GMT").replace(tzinfo=UTC)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    options = SandboxOptions(products=200, world_now="2026-11-22T12:00:00Z", photoshelter_rate_per_s=1000,
                             photoshelter_auth_rate_per_min=1000)
    uv = uvicorn.Server(uvicorn.Config(create_app(options), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not uv.started:
        assert time.monotonic() < deadline, "sandbox did not start"
        time.sleep(0.05)
    yield url
    uv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def admin(server) -> Iterator[httpx.Client]:
    """The admin API; options and faults a test changes are put back afterwards."""
    with httpx.Client(base_url=server) as client:
        start = client.get("/_sandbox/config").json()
        yield client
        client.delete("/_sandbox/faults")
        current = client.get("/_sandbox/config").json()
        client.post("/_sandbox/config", json={k: v for k, v in start.items() if current[k] != v}).raise_for_status()


def configure(admin: httpx.Client, **changes) -> None:
    admin.post("/_sandbox/config", json=changes).raise_for_status()


def login(server: str, org: bool = True) -> httpx.Client:
    client = httpx.Client(base_url=f"{server}{MEM}", headers=KEY)
    reply = client.post("/authenticate", data=LOGIN)
    assert reply.status_code == 200, reply.text
    client.headers["X-PS-Auth-Token"] = reply.json()["data"]["token"]
    if org:
        assert client.post("/organization/O0000SANDBOX/authenticate").json() == {"status": "ok", "data": {}}
    return client


@pytest.fixture
def ps(server, admin) -> Iterator[httpx.Client]:
    client = login(server)
    yield client
    client.close()


# ---------- auth ----------
def test_api_key_is_required_on_every_path(server):
    for method, path in (("POST", f"{MEM}/authenticate"), ("GET", f"{MEM}/collection/root/children"),
                         ("GET", f"{MEM}/no/such/route")):
        for headers in ({}, {"X-PS-Api-Key": "wrong"}):
            reply = httpx.request(method, f"{server}{path}", headers=headers)
            assert reply.status_code == 401
            assert reply.json() == error("InvalidApiKey", "Invalid API key")


def test_authentication_bodies(server):
    url = f"{server}{MEM}/authenticate"
    reply = httpx.post(url, headers=KEY, data=LOGIN)
    assert reply.status_code == 200 and reply.json()["status"] == "ok"
    assert reply.json()["data"]["org"] == [{"id": "O0000SANDBOX", "name": "Sandbox Brand"}]
    assert len(reply.json()["data"]["token"]) == 32
    wrong = httpx.post(url, headers=KEY, data={**LOGIN, "password": "nope"})
    assert wrong.status_code == 401 and wrong.json() == error("AuthenticationFailed", "Invalid email or password")
    missing = httpx.post(url, headers=KEY, data={"email": LOGIN["email"], "mode": "token"})
    assert missing.status_code == 400
    assert missing.json() == error("MissingParameter", "Missing required parameter: password")
    as_json = httpx.post(url, headers=KEY, json=LOGIN)  # some clients send JSON; accepted
    assert as_json.status_code == 200 and as_json.json()["data"]["token"] != reply.json()["data"]["token"]
    in_url = httpx.get(url, headers=KEY, params=LOGIN)  # credentials never travel in a URL
    assert in_url.status_code == 405 and in_url.json() == error("MethodNotAllowed", "Method not allowed")


def test_org_content_needs_step_two_and_the_right_org(server):
    with closing(login(server, org=False)) as client:
        before = client.get("/collection/root/children")
        assert before.status_code == 403
        assert before.json() == error("OrganizationAuthRequired", "Organization authentication required")
        other = client.post("/organization/O0000OTHER/authenticate")
        assert other.status_code == 403 and other.json() == error("Forbidden", "Not a member of organization O0000OTHER")
        assert client.get("/collection/root/children").status_code == 403  # a wrong org binds nothing
        assert client.get("/organization/O0000SANDBOX/authenticate").status_code == 200  # GET is accepted too
        assert client.get("/collection/root/children").status_code == 200
    for token in (None, "f" * 32):
        headers = {**KEY, **({"X-PS-Auth-Token": token} if token else {})}
        reply = httpx.get(f"{server}{MEM}/collection/root/children", headers=headers)
        assert reply.status_code == 401 and reply.json() == error("AuthenticationRequired", "Authentication required")


def test_idle_session_expires_unless_used(server, admin, ps):
    configure(admin, photoshelter_session_idle_ttl_s=1)
    for _ in range(3):  # each successful call resets the idle clock, so 1.8 s of use stays alive
        time.sleep(0.6)
        assert ps.get("/collection/root/children").status_code == 200
    time.sleep(1.1)
    expired = ps.get("/collection/root/children")
    assert expired.status_code == 401 and expired.json()["code"] == "AuthenticationRequired"
    # The org binding went with the session: step 2 on the old token is refused too.
    assert ps.post("/organization/O0000SANDBOX/authenticate").status_code == 401


def test_session_maximum_lifetime_and_admin_expiry_and_logout(server, admin, ps):
    configure(admin, photoshelter_session_max_ttl_s=1)
    assert ps.get("/collection/root/children").status_code == 200
    time.sleep(1.1)
    assert ps.get("/collection/root/children").status_code == 401  # busy, yet past the maximum
    configure(admin, photoshelter_session_max_ttl_s=43_200)
    with closing(login(server)) as first, closing(login(server)) as second:
        admin.post("/_sandbox/tokens/expire", json={"service": "photoshelter"}).raise_for_status()
        assert {first.get("/collection/root/children").status_code,
                second.get("/collection/root/children").status_code} == {401}
    with closing(login(server)) as client:
        assert client.get("/authenticate/logout").json() == {"status": "ok", "data": {}}
        assert client.get("/collection/root/children").status_code == 401


# ---------- collections, galleries, the listing ----------
def walk_galleries(ps: httpx.Client) -> list[str]:
    galleries, pending = [], ["root"]
    while pending:
        children = ps.get(f"/collection/{pending.pop()}/children").json()["data"]["Children"]
        pending += [c["collection_id"] for c in children.get("Collection", [])]
        galleries += [g["gallery_id"] for g in children.get("Gallery", [])]
    return galleries


def test_gallery_walk_reaches_every_image_once(admin, ps):
    total = admin.get("/_sandbox/health").json()["images"]
    seen: list[str] = []
    galleries = walk_galleries(ps)
    assert galleries and all(g.startswith("G0000") for g in galleries)
    for gallery in galleries:
        page = 1
        while True:
            data = ps.get(f"/gallery/{gallery}/images", params={"page": page, "per_page": 5}).json()["data"]
            ids = [item["image_id"] for item in data["GalleryImage"]]
            assert ids == sorted(ids)  # ordered by seq (ids are numbered by seq)
            seen += ids
            paging = data["Paging"]
            assert paging["page"] == str(page) and paging["per_page"] == "5"
            if "next" not in paging:
                assert page == int(paging["pages"]) and len(ids) == int(paging["total"]) - 5 * (page - 1)
                break
            assert paging["next"] == str(page + 1) and len(ids) == 5
            page += 1
    assert len(seen) == len(set(seen)) == total


def test_children_and_gallery_records(ps):
    children = ps.get("/collection/root/children").json()["data"]["Children"]
    assert set(children) == {"Collection"}  # an empty kind is omitted
    collection = children["Collection"][0]
    assert collection["collection_id"].startswith("C0000") and collection["f_list"] == "f"
    gmt(collection["created_at"])
    galleries = ps.get(f"/collection/{collection['collection_id']}/children").json()["data"]["Children"]["Gallery"]
    gallery = ps.get(f"/gallery/{galleries[0]['gallery_id']}").json()["data"]["Gallery"]
    assert gallery == galleries[0] and gallery["display_order"].isdigit()
    for path, message in (("/collection/C0000NOPE/children", "Collection not found"),
                          (f"/collection/{gallery['gallery_id']}/children", "Collection not found"),
                          ("/gallery/G0000NOPE", "Gallery not found"), ("/gallery/G0000NOPE/images", "Gallery not found"),
                          ("/image/I0000NOPE", "Image not found"), ("/image/I0000NOPE/custom", "Image not found")):
        reply = ps.get(path)
        assert reply.status_code == 404 and reply.json() == error("NotFound", message)


def test_listing_extend_shapes_and_rendition(server, ps):
    gallery = walk_galleries(ps)[0]
    plain = ps.get(f"/gallery/{gallery}/images").json()["data"]
    assert set(plain["GalleryImage"][0]) == {"image_id", "f_visible"}  # nothing unless extended
    item = ps.get(f"/gallery/{gallery}/images", params={"fields": "image_id,f_visible", "extend": FULL_EXTEND}
                  ).json()["data"]["GalleryImage"][0]
    image = item["Image"]
    assert set(image) == {"image_id", "gallery_id", "file_name", "file_size", "width", "height", "updated_at",
                          "uploaded_at", "model_released", "property_released", "Iptc"}
    assert image["gallery_id"] == gallery and image["file_size"].isdigit() and image["model_released"] in "tf"
    gmt(image["updated_at"])
    assert set(image["Iptc"]) == {"keyword", "caption", "credit", "title"}
    root = f"{server}/photoshelter/img-get2/{item['image_id']}/"
    assert item["ImageLink"] == {"link": f"{root}fit=2000x2000", "base": root}
    assert [f["field_name"] for f in item["CustomMetadata"]] == CUSTOM_NAMES
    rendition = httpx.get(item["ImageLink"]["link"])  # the link is fetchable, no key needed (a CDN)
    assert rendition.status_code == 200 and rendition.headers["content-type"] == "image/jpeg"
    assert rendition.content.startswith(b"\xff\xd8")
    assert httpx.get(f"{server}/photoshelter/img-get2/I0000NOPE/fit=2000x2000").status_code == 404


def test_per_page_default_and_clamp(admin, ps):
    gallery = walk_galleries(ps)[0]
    url = f"/gallery/{gallery}/images"
    assert ps.get(url).json()["data"]["Paging"]["per_page"] == "100"
    assert ps.get(url, params={"per_page": 99999}).json()["data"]["Paging"]["per_page"] == "1500"
    configure(admin, photoshelter_max_per_page=3)
    data = ps.get(url, params={"per_page": 500}).json()["data"]
    assert data["Paging"]["per_page"] == "3" and len(data["GalleryImage"]) == 3 and data["Paging"]["next"] == "2"


def test_deep_page_fault(admin, ps):
    gallery = walk_galleries(ps)[0]
    configure(admin, photoshelter_fail_beyond_page=1)
    assert ps.get(f"/gallery/{gallery}/images", params={"page": 1, "per_page": 5}).status_code == 200
    deep = ps.get(f"/gallery/{gallery}/images", params={"page": 2, "per_page": 5})
    assert deep.status_code == 500 and deep.json() == error("InternalError", "Internal server error")


# ---------- one image ----------
def test_custom_metadata_order_values_and_nulls(ps):
    fields = ps.get(f"/image/{image_id(0)}/custom").json()["data"]["CustomMetadata"]
    assert [f["field_id"] for f in fields] == [f"MF{n:014d}" for n in range(1, 11)]
    assert [f["field_name"] for f in fields] == CUSTOM_NAMES
    tags = {f["field_name"]: f["tag"] for f in fields}
    assert tags["SKU"] is None and tags["Style Code"] == "ST-1000"  # a style-level shot has no SKU
    assert tags["Approval Status"] in ("Approved", "Pending Review", "Rejected")
    assert tags["Usage: Print"] in ("Allowed", "Not Allowed")
    datetime.strptime(tags["License Expiration Date"], "%Y-%m-%d")
    orphan = {f["field_name"]: f["tag"] for f in ps.get(f"/image/{image_id(600)}/custom").json()["data"]["CustomMetadata"]}
    assert orphan["SKU"] == "SKU-9000000" and orphan["Usage: Social"] is None and orphan["Product Family"] is None


def test_single_image_iptc_and_link(server, ps):
    target = image_id(1)
    image = ps.get(f"/image/{target}").json()["data"]["Image"]
    assert image["image_id"] == target and image["organization_id"] == "O0000SANDBOX" and "Iptc" not in image
    assert image["owner_id"].startswith("U0000") and image["stat_show"] == "t" and image["height"] == "5000"
    picked = ps.get(f"/image/{target}", params={"fields": "file_name,bogus",
                                                "extend": json.dumps({"Iptc": {"fields": "keyword"}})}).json()
    assert picked["data"]["Image"] == {"image_id": target, "gallery_id": image["gallery_id"],
                                       "file_name": image["file_name"], "Iptc": {"keyword": ANY_STRING}}
    iptc = ps.get(f"/image/{target}/iptc").json()["data"]["Iptc"]
    assert list(iptc) == ["keyword", "caption", "credit", "title", "headline", "byline", "copyright", "city",
                          "state", "country", "country_code", "instructions", "source", "job_identifier"]
    assert iptc["copyright"] == "Sandbox Brand" and iptc["headline"] == "" and "," in iptc["keyword"]
    link = ps.get(f"/image/{target}/link", params={"image_size": "800x800", "image_mode": "fit"}).json()["data"]
    root = f"{server}/photoshelter/img-get2/{target}/"
    assert link["ImageLink"]["link"] == f"{root}fit=800x800" and link["ImageLink"]["base"] == root
    assert link["ImageLink"]["auth_link"].startswith(f"{root}fit=800x800?auth=")


def test_iptc_update_round_trip(server, admin, ps):
    target = image_id(30)
    update = f"/image/{target}/iptc/update"
    before = ps.get(f"/image/{target}").json()["data"]["Image"]["updated_at"]
    keywords = ps.get(f"/image/{target}/iptc").json()["data"]["Iptc"]["keyword"].split(",")
    same = ps.post(update, data={"credit": "Studio B", "copyright": "Sandbox Brand",
                                 "keyword": " , ".join(reversed(keywords))})
    assert same.status_code == 200 and same.json()["data"]["Iptc"]["credit"] == "Studio B"
    assert ps.get(f"/image/{target}").json()["data"]["Image"]["updated_at"] == before  # no real change
    started = datetime.now(UTC).replace(microsecond=0)
    sent = {"keyword": "jacket, outdoor,JACKET,SKU-100010", "headline": "New", "city": "Reykjavik",
            "copyright": "Studio B Ltd"}
    changed = ps.post(update, data=sent).json()["data"]["Iptc"]
    assert changed["keyword"] == "jacket,outdoor,SKU-100010"  # replaces the whole set, deduped
    assert changed["headline"] == "New" and changed["copyright"] == "Studio B Ltd"
    assert changed["caption"] != "" and changed["credit"] == "Studio B"  # fields not sent are kept
    assert ps.get(f"/image/{target}/iptc").json()["data"]["Iptc"] == changed
    after = gmt(ps.get(f"/image/{target}").json()["data"]["Image"]["updated_at"])
    assert started - timedelta(seconds=1) <= after <= datetime.now(UTC)
    writes = admin.get("/_sandbox/writes", params={"service": "photoshelter"}).json()["writes"]
    assert [(w["method"], w["path"], w["status"]) for w in writes[-2:]] == [
        ("POST", f"/psapi/v3/mem/image/{target}/iptc/update", 200)] * 2
    assert writes[-1]["body"] == sent
    found = ps.get("/image/search", params={"terms": json.dumps(["reykjavik"])}).json()["data"]["Results"]
    assert [r["image_id"] for r in found] == [target]  # search covers IPTC city


def test_iptc_update_errors(admin, ps):
    update = f"/image/{image_id(31)}/iptc/update"
    for method in ("GET", "PUT"):
        reply = ps.request(method, update)
        assert reply.status_code == 405 and reply.json() == error("MethodNotAllowed", "Method not allowed")
    unknown = ps.post(update, data={"keywords": "x"})
    assert unknown.status_code == 400 and unknown.json() == error("InvalidParameter", "Unknown parameter: keywords")
    long = ps.post(update, data={"keyword": "ok," + "x" * 65})
    assert long.status_code == 400 and long.json() == error("InvalidParameter", "Keyword too long")
    assert ps.post(update, data={"keyword": "x" * 64}).status_code == 200  # 64 is still allowed
    missing = ps.post(f"/image/{image_id(10**9)}/iptc/update", data={"keyword": "x"})
    assert missing.status_code == 404 and missing.json() == error("NotFound", "Image not found")
    writes = admin.get("/_sandbox/writes", params={"service": "photoshelter"}).json()["writes"]
    assert [w["status"] for w in writes[-4:]] == [400, 400, 200, 404]  # refused writes are recorded too


def test_search_terms_results_and_paging(ps):
    data = ps.get("/image/search", params={"terms": json.dumps(["SKU-100002"]),
                                           "extend": json.dumps({"Image": {}, "ImageLink": {}})}).json()["data"]
    assert data["Results"] and all(r["Image"]["file_name"].startswith("SKU-100002_") for r in data["Results"])
    assert all(r["ImageLink"]["link"].endswith("/fit=2000x2000") for r in data["Results"])
    assert data["Paging"]["total"] == str(len(data["Results"])) and "next" not in data["Paging"]
    assert ps.get("/image/search", params={"terms": '["SKU-10000"]'}).json()["data"]["Results"] == []  # whole words
    assert ps.get("/image/search", params={"terms": '["Approved"]'}).json()["data"]["Results"] == []  # not custom
    bad = ps.get("/image/search", params={"terms": "[not json"})
    assert bad.status_code == 400 and bad.json()["code"] == "InvalidParameter"


# ---------- limits, routing, faults ----------
def test_rate_limit_429_and_refusals_do_not_count(admin, ps):
    configure(admin, photoshelter_rate_per_s=2)  # a bucket of two
    replies = [ps.get("/collection/root/children") for _ in range(5)]
    limited = [r for r in replies if r.status_code == 429]
    assert len(limited) >= 2 and limited[0].headers["Retry-After"] == "2"
    assert limited[0].json() == error("RateLimitExceeded", "Rate limit exceeded")
    time.sleep(0.6)  # refills 1.2 tokens; had the refusals counted, the bucket would still be empty
    assert ps.get("/collection/root/children").status_code == 200


def test_auth_steps_share_a_per_minute_limit(server, admin, ps):
    configure(admin, photoshelter_auth_rate_per_min=3)
    url = f"{server}{MEM}/authenticate"
    assert [httpx.post(url, headers=KEY, data=LOGIN).status_code for _ in range(2)] == [200, 200]
    assert ps.post("/organization/O0000SANDBOX/authenticate").status_code == 200  # the third auth step
    refused = httpx.post(url, headers=KEY, data=LOGIN)
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "2"
    assert refused.json() == error("RateLimitExceeded", "Rate limit exceeded")
    assert ps.get("/collection/root/children").status_code == 200  # ordinary calls have their own bucket
    time.sleep(1.1)  # a per-second limit would have refilled by now; a per-minute one has not
    assert httpx.post(url, headers=KEY, data=LOGIN).status_code == 429


def test_trailing_slash_unknown_route_and_wrong_method(ps):
    moved = ps.get("/collection/root/children/", params={"extend": "{}"}, follow_redirects=False)
    assert moved.status_code == 301
    assert moved.headers["location"] == f"{MEM}/collection/root/children?extend=%7B%7D"
    unknown = ps.get("/no/such/thing")
    assert unknown.status_code == 404 and unknown.json() == error("NotFound", "Not found")
    wrong = ps.post("/collection/root/children")
    assert wrong.status_code == 405 and wrong.json()["code"] == "MethodNotAllowed"


def test_injected_faults_use_the_v3_envelope(admin, ps):
    admin.post("/_sandbox/faults", json={"service": "photoshelter", "script": ["status_error", "429", "503"]}
               ).raise_for_status()
    envelope = ps.get("/collection/root/children")
    assert envelope.status_code == 200 and envelope.json()["status"] == "error"
    storm = ps.get("/collection/root/children")
    assert storm.status_code == 429 and storm.headers["Retry-After"] == "2"
    assert storm.json() == error("RateLimitExceeded", "Rate limit exceeded")
    overload = ps.get("/collection/root/children")
    assert overload.status_code == 503
    assert overload.json() == error("ServiceUnavailable", "Service temporarily unavailable")
    assert ps.get("/collection/root/children").json()["status"] == "ok"  # the script is spent
