"""The sandbox's Plytix against ../shared/contracts/plytix.md: statuses, headers and bodies, raw HTTP."""

from __future__ import annotations

import base64
import json
import re

import httpx
import pytest

KEY, PASSWORD = "sandbox-plytix-key", "sandbox-plytix-password"
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$")


def pid(index: int) -> str:
    return f"6740a1f2{index:016x}"


def token(sandbox) -> str:
    reply = httpx.post(f"{sandbox.url}/plytix-auth/auth/api/get-token", json={"api_key": KEY, "api_password": PASSWORD})
    return reply.json()["data"][0]["access_token"]


@pytest.fixture
def pim(sandbox):
    with httpx.Client(base_url=f"{sandbox.url}/plytix", headers={"Authorization": f"Bearer {token(sandbox)}"}) as c:
        yield c


def search(pim, **body):
    return pim.post("/api/v1/products/search", json=body)


def test_token_body_and_lifetime(sandbox):
    sandbox.configure(plytix_token_ttl_s=123)
    reply = httpx.post(f"{sandbox.url}/plytix-auth/auth/api/get-token", json={"api_key": KEY, "api_password": PASSWORD})
    assert reply.status_code == 200 and set(reply.json()["data"][0]) == {"access_token", "refresh_token"}
    claims = json.loads(base64.urlsafe_b64decode(reply.json()["data"][0]["access_token"].split(".")[1] + "=="))
    assert claims["exp"] - claims["iat"] == 123 and claims["sub"] == KEY
    assert reply.headers["RateLimit-Limit"] == reply.headers["X-RateLimit-Limit-Second"]


def test_auth_errors(sandbox):
    url = f"{sandbox.url}/plytix-auth/auth/api/get-token"
    wrong = httpx.post(url, json={"api_key": KEY, "api_password": "nope"})
    assert wrong.status_code == 401 and wrong.json() == {"error": {
        "msg": "Bad api_key or api_password: Credentials not valid", "errors": [{"field": "http_status_code", "msg": 401}]}}
    for bad in (b"not json", json.dumps({"api_key": KEY}).encode()):
        reply = httpx.post(url, content=bad, headers={"Content-Type": "application/json"})
        assert reply.status_code == 400
        assert reply.json() == {"error": {"msg": "The browser sent a request that this server could not understand."}}


def test_auth_host_allows_eight_per_second(sandbox):
    sandbox.configure(plytix_auth_rate_per_s=8)
    url = f"{sandbox.url}/plytix-auth/auth/api/get-token"
    statuses = [httpx.post(url, json={"api_key": "burst-key", "api_password": "x"}).status_code for _ in range(9)]
    assert statuses[:8] == [401] * 8 and statuses[8] == 429  # counted per api_key, wrong or not


@pytest.mark.parametrize("header,message", [
    (None, "Missing Authorization Header"),
    ("bearer abc", "Missing 'Bearer' type in 'Authorization' header. Expected 'Authorization: Bearer <JWT>'"),
    ("Bearer garbage", "Signature verification failed"),
])
def test_pim_401_messages(sandbox, header, message):
    headers = {"Authorization": header} if header else {}
    reply = httpx.post(f"{sandbox.url}/plytix/api/v1/products/search", json={}, headers=headers)
    assert reply.status_code == 401 and reply.json() == {"error": {"msg": message}}


def test_expired_token_is_refused(sandbox, pim):
    sandbox.admin.post("/_sandbox/tokens/expire", json={"service": "plytix"}).raise_for_status()
    reply = search(pim)
    assert reply.status_code == 401 and reply.json() == {"error": {"msg": "Token has expired"}}


def test_search_defaults_and_minimal_items(sandbox, pim):
    body = search(pim).json()
    assert len(body["data"]) == 25 and body["pagination"] == {
        "count": 25, "order": None, "page": 1, "page_size": 25, "total_count": sandbox.health()["products"]}
    for item in body["data"]:
        assert set(item) - {"_parent_id"} == {"id", "sku", "attributes", "num_variations"} and item["attributes"] == {}
    assert any("_parent_id" in item for item in body["data"]) and any("_parent_id" not in i for i in body["data"])


def test_requested_fields_and_references(pim):
    item = search(pim, attributes=["modified", "categories", "thumbnail", "attributes.hero_image",
                                   "attributes.material"], pagination={"page_size": 100})
    items = item.json()["data"]
    assert all(STAMP.match(i["modified"]) for i in items)
    assert all(i["categories"] and set(i["categories"][0]) == {"id"} for i in items)
    heroes = [i for i in items if "hero_image" in i["attributes"]]
    assert heroes and all(set(h["attributes"]["hero_image"]) == {"id"} for h in heroes)
    assert any("material" not in i["attributes"] for i in items)  # empty attributes are omitted


def test_past_the_end_is_empty(pim):
    body = search(pim, pagination={"page": 1000, "page_size": 100}).json()
    assert body["data"] == [] and body["pagination"]["count"] == 0


@pytest.mark.parametrize("body,errors", [
    ({"pagination": {"page_size": 101}}, [{"field": "page_size", "msg": "Must be less than or equal to 100."}]),
    ({"attributes": [f"attributes.x{i}" for i in range(51)]},
     [{"field": "schema", "msg": "columns limit exceeded, current limit is 50"}]),
    ({"filters": [[{"field": "nope", "operator": "eq", "value": 1}]]},
     [{"field": "nope", "msg": "unknown field"}, {"field": "filters", "msg": "Unable to decode filters properly"}]),
    ({"filters": [[{"field": "modified", "operator": "like", "value": "x"}]]},
     [{"field": "like", "msg": "unknown field"}, {"field": "filters", "msg": "Unable to decode filters properly"}]),
])
def test_search_validation_errors(pim, body, errors):
    reply = search(pim, **body)
    assert reply.status_code == 422
    assert reply.json() == {"error": {"errors": errors, "msg": "Schema validation error"}}


def test_sorted_search_over_the_cap_is_428_unsorted_is_not(sandbox, pim):
    sandbox.configure(plytix_sort_cap=100)
    sorted_reply = search(pim, pagination={"order": "modified"})
    assert sorted_reply.status_code == 428 and sorted_reply.json() == {"error": {
        "msg": "Too many results to sort (limit 100). Refine the filters or remove the order."}}
    assert search(pim).status_code == 200


def test_bad_json_body_is_400(pim):
    reply = pim.post("/api/v1/products/search", content=b"{", headers={"Content-Type": "application/json"})
    assert reply.status_code == 400 and reply.json()["error"]["errors"] == [{"field": "http_status_code", "msg": 400}]
    assert reply.json()["error"]["msg"].startswith("Failed to decode JSON object")


def test_filter_grammar(pim):
    everything = []
    for page in range(1, 21):
        everything += search(pim, attributes=["modified", "status"], pagination={"page": page, "page_size": 100}
                             ).json()["data"]
    window = [{"field": "modified", "operator": "gte", "value": "2026-11-20"},
              {"field": "modified", "operator": "lt", "value": "2026-11-21T00:00:00+00:00"}]
    expected = sum(1 for i in everything if "2026-11-20" <= i["modified"][:10] < "2026-11-21")
    assert search(pim, filters=[window]).json()["pagination"]["total_count"] == expected > 0
    completed = sum(1 for i in everything if i["status"] == "Completed")
    either = [[{"field": "status", "operator": "eq", "value": "completed"}], window]  # OR of ANDs; eq ignores case
    overlap = sum(1 for i in everything if i["status"] == "Completed" and "2026-11-20" <= i["modified"][:10] < "2026-11-21")
    assert search(pim, filters=either).json()["pagination"]["total_count"] == completed + expected - overlap
    case_sensitive_in = [[{"field": "status", "operator": "in", "value": ["completed"]}]]
    assert search(pim, filters=case_sensitive_in).json()["pagination"]["total_count"] == 0


def test_listing_by_get_is_405_and_trailing_slash_301(pim):
    reply = pim.get("/api/v1/products")
    assert reply.status_code == 405 and reply.json() == {"error": {"msg": "The method is not allowed for the requested URL."}}
    moved = pim.get(f"/api/v1/products/{pid(2)}/", follow_redirects=False)
    assert moved.status_code == 301 and moved.headers["location"] == f"/plytix/api/v1/products/{pid(2)}"


def test_get_product_expanded_and_404(pim):
    product = pim.get(f"/api/v1/products/{pid(4)}").json()["data"][0]
    assert product["categories"][0]["path"] and product["categories"][0]["name"] == product["categories"][0]["path"][-1]
    assert all(set(a) == {"id", "filename", "thumbnail", "url"} for a in product["assets"])
    every = pim.get(f"/api/v1/products/{pid(4)}", params={"all_attributes": "true"}).json()["data"][0]["attributes"]
    assert "launch_date" in every and every["launch_date"] is None
    missing = pim.get("/api/v1/products/6740a1f2c3d4e5f6a7b8c9ff")
    assert missing.status_code == 404 and missing.json() == {"error": {
        "errors": [{"field": "id", "msg": "product does not exist"}], "msg": " No results found for 6740a1f2c3d4e5f6a7b8c9ff"}}


def test_patch_merges_clears_and_bumps_modified(sandbox, pim):
    target = pid(1810)
    before = pim.get(f"/api/v1/products/{target}").json()["data"][0]
    reply = pim.patch(f"/api/v1/products/{target}", json={
        "attributes": {"color": "Teal", "description_fr": None}, "unknown_top_level": 1})
    after = reply.json()["data"][0]
    assert reply.status_code == 200 and after["attributes"]["color"] == "Teal"
    assert "description_fr" not in after["attributes"] and after["attributes"]["brand"] == before["attributes"]["brand"]
    assert after["modified"] > before["modified"]
    again = pim.patch(f"/api/v1/products/{target}", json={}).json()["data"][0]
    assert again["modified"] > after["modified"]  # every PATCH bumps it, even an empty one
    assert any(w["path"] == f"/api/v1/products/{target}" and w["status"] == 200 for w in sandbox.writes("plytix"))


def test_patch_validation_bodies(pim):
    reply = pim.patch(f"/api/v1/products/{pid(1811)}", json={
        "status": "Live", "attributes": {"workflow_stage": "Shipped", "hero_img": "x"}})
    assert reply.status_code == 422 and reply.json() == {"error": {"errors": [
        {"field": "status", "msg": "Value is not valid, valid values are [Draft, Completed, Archived]"},
        {"field": "workflow_stage", "msg": "[u'Shipped'] are not a valid values for Workflow Stage attribute."},
        {"field": "hero_img", "msg": "label does not exist"}], "msg": "product data validation failed"}}


def test_assets_create_dedupe_and_links(sandbox, pim):
    url = f"{sandbox.url}/photoshelter/img-get2/I0000CONTRACT01/fit=2000x2000"
    created = pim.post("/api/v1/assets", json={"url": url, "filename": "I0000CONTRACT01.jpg"})
    asset_id = created.json()["data"][0]["id"]
    assert created.status_code == 201 and created.json()["data"][0]["filename"] == "I0000CONTRACT01.jpg"
    duplicate = pim.post("/api/v1/assets", json={"url": url, "filename": "other.jpg"})
    assert duplicate.status_code == 409 and duplicate.json() == {"error": {
        "errors": [{"field": "asset.id", "msg": asset_id}], "msg": "Asset already exists"}}
    no_name = pim.post("/api/v1/assets", json={"content": "aGVsbG8="})
    assert no_name.status_code == 422
    target = pid(1812)
    second = pim.post("/api/v1/assets", json={"url": url + "?v=2", "filename": "I0000CONTRACT02.jpg"}).json()["data"][0]["id"]
    for asset in (asset_id, second):
        assert pim.post(f"/api/v1/products/{target}/assets", json={"id": asset, "attribute_label": "hero_image"}
                        ).status_code == 201
        assert pim.post(f"/api/v1/products/{target}/assets", json={"id": asset, "attribute_label": "alternate_images"}
                        ).status_code == 201
    attributes = pim.get(f"/api/v1/products/{target}").json()["data"][0]["attributes"]
    assert attributes["hero_image"] == {"id": second}  # single media replaces
    assert attributes["alternate_images"][-2:] == [{"id": asset_id}, {"id": second}]  # gallery appends
    again = pim.post(f"/api/v1/products/{target}/assets", json={"id": second, "attribute_label": "alternate_images"})
    assert again.status_code == 409 and again.json()["error"]["msg"] == \
        f"Asset id {second} is already linked to product attribute"
    assert pim.post(f"/api/v1/products/{target}/assets", json={"id": "6740a3b0ffffffffffffffff",
                                                              "attribute_label": "hero_image"}).status_code == 404
    assert pim.post(f"/api/v1/products/{target}/assets", json={"attribute_label": "hero_image"}).status_code == 422
    assert pim.delete(f"/api/v1/products/{target}/assets/{second}").status_code == 204
    gone = pim.delete(f"/api/v1/products/{target}/assets/{second}")
    assert gone.status_code == 404 and gone.json()["error"]["errors"][0]["field"] == "asset_id"
    found = pim.post("/api/v1/assets/search", json={"filters": [[{"field": "filename", "operator": "eq",
                                                                   "value": "I0000CONTRACT01.jpg"}]],
                                                    "attributes": ["filename", "url"]}).json()
    assert [i["id"] for i in found["data"]] == [asset_id] and found["pagination"]["total_count"] == 1


def test_categories(pim):
    items = pim.post("/api/v1/categories/product/search", json={"pagination": {"page_size": 100}}).json()["data"]
    assert all(isinstance(c["order"], str) and isinstance(c["path"], list) for c in items)
    lamps = next(c for c in items if c["path"] == ["Home", "Lighting", "Lamps"])
    target = pid(1813)
    linked = pim.post(f"/api/v1/products/{target}/categories", json={"id": lamps["id"]})
    assert linked.status_code == 201 and linked.json()["data"] == [{"id": lamps["id"], "name": "Lamps",
                                                                    "path": ["Home", "Lighting", "Lamps"]}]
    assert pim.post(f"/api/v1/products/{target}/categories", json={"id": lamps["id"]}).status_code == 409
    assert pim.post(f"/api/v1/products/{target}/categories", json={"id": "nope"}).status_code == 422
    assert pim.delete(f"/api/v1/products/{target}/categories/{lamps['id']}").status_code == 204
    unrelated = pim.delete(f"/api/v1/products/{target}/categories/{lamps['id']}")
    assert unrelated.status_code == 404 and unrelated.json()["error"]["errors"][0]["field"] == "asset.id"


def test_jobs_are_forbidden(pim):
    assert pim.post("/api/v1/jobs/bulk", json={}).status_code == 403


def test_pim_rate_limit_headers(sandbox, pim):
    sandbox.configure(plytix_rate_per_10s=3)
    statuses = [search(pim, pagination={"page_size": 1}) for _ in range(5)]
    assert [r.status_code for r in statuses][:3] == [200, 200, 200]
    limited = statuses[3]
    assert limited.status_code == 429 and limited.json() == {"message": "API rate limit exceeded"}
    assert limited.headers["RateLimit-Remaining"] == "0" and limited.headers["RateLimit-Limit"] == "3"
    assert 1 <= int(limited.headers["Retry-After"]) <= 10 and limited.headers["RateLimit-Reset"]


def test_every_response_carries_a_gateway_request_id(pim):
    assert len(search(pim).headers["X-Kong-Request-Id"]) == 32


def test_injected_faults_look_like_the_real_ones(sandbox, pim):
    sandbox.fault("plytix", script=["503", "malformed", "drop"])
    gateway = search(pim)
    assert gateway.status_code == 503 and gateway.json() == {"message": "name resolution failed"}
    truncated = search(pim)
    assert truncated.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(truncated.content)
    with pytest.raises(httpx.RemoteProtocolError):
        search(pim)
