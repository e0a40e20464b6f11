"""The PhotoShelter client against the running sandbox, over real loopback HTTP."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from resources.http import AuthenticationFailed, RateLimited, ServiceError, ServiceUnavailable
from resources.photoshelter import PhotoShelterClient, merge_keywords, split_keywords


class RecordingSleep:
    def __init__(self):
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def make_client(sandbox, *, password="sandbox-ps-password", org_id="O0000SANDBOX", sleep=None, **kwargs):
    return PhotoShelterClient(f"{sandbox.url}/photoshelter", "sandbox-ps-key", "dam@sandbox.example", password,
                              org_id, max_requests_per_second=None, sleep=sleep or RecordingSleep(), **kwargs)


def image_id(index: int) -> str:
    return f"I0000{index:011d}"


def test_login_is_done_once_for_many_calls(sandbox):
    client = make_client(sandbox)
    for _ in range(3):
        client.children()
    assert client.logins == 1


def test_wrong_password_fails_loudly_without_the_secret(sandbox):
    client = make_client(sandbox, password="distinctive-ps-secret-99")
    with pytest.raises(AuthenticationFailed) as caught:
        client.children()
    assert caught.value.status == 401 and "AuthenticationFailed" in str(caught.value)
    assert "distinctive-ps-secret-99" not in str(caught.value)


def test_an_org_the_user_is_not_in_fails_loudly(sandbox):
    with pytest.raises(AuthenticationFailed, match="not a member of organization O0000OTHER"):
        make_client(sandbox, org_id="O0000OTHER").children()


def test_expired_session_is_renewed_once(sandbox):
    client = make_client(sandbox)
    client.children()
    sandbox.admin.post("/_sandbox/tokens/expire", json={"service": "photoshelter"}).raise_for_status()
    assert client.children()["Collection"]  # 401 -> step 1 and step 2 again -> retried
    assert client.logins == 2


def test_session_is_renewed_before_the_idle_ttl(sandbox):
    now = [0.0]
    client = make_client(sandbox, clock=lambda: now[0], session_idle_ttl_s=600)
    client.children()
    now[0] = 600 - 59  # within a minute of the idle TTL: log in again first
    client.children()
    assert client.logins == 2


def test_gallery_walk_reaches_every_image(sandbox):
    client = make_client(sandbox)
    ids = [image.image_id for _, page in client.iter_images() for image in page]
    assert len(ids) == len(set(ids)) == sandbox.health()["images"]


def test_gallery_pages_stop_without_next(sandbox):
    client = make_client(sandbox)
    gallery = next(client.iter_galleries())
    pages = list(client.iter_gallery_pages(gallery["gallery_id"], per_page=5))
    assert len(pages) > 1 and [p.has_next for p in pages] == [True] * (len(pages) - 1) + [False]
    assert all(len(p.items) == 5 for p in pages[:-1])


def test_images_are_parsed_with_their_custom_metadata(sandbox):
    client = make_client(sandbox)
    _, images = next((g, page) for g, page in client.iter_images() if page)
    image = images[0]
    assert image.updated_at.tzinfo is UTC and isinstance(image.file_size, int)
    assert image.approval_status in {"Approved", "Pending Review", "Rejected"}
    assert image.license_expiration_date is not None and image.style_code.startswith("ST-")
    assert image.link.startswith(f"{sandbox.url}/photoshelter/img-get2/{image.image_id}/")
    assert client.custom_metadata(image.image_id)["Approval Status"] == image.approval_status


def test_updated_after_watermark_filters(sandbox):
    client = make_client(sandbox)
    everything = [i for _, page in client.iter_images() for i in page]
    mark = sorted(i.updated_at for i in everything)[len(everything) // 2]
    newer = [i.image_id for _, page in client.iter_images(updated_after=mark) for i in page]
    assert sorted(newer) == sorted(i.image_id for i in everything if i.updated_at > mark)


def test_keywords_merge_is_idempotent_and_keeps_the_creatives_words(sandbox):
    client = make_client(sandbox)
    target = image_id(5901)
    before = split_keywords(client.iptc(target)["keyword"])
    updated_at = client.get_image(target)["updated_at"]
    assert client.add_keywords(target, ["SKU-101967", " Outerwear ", "a,b", before[0].upper()]) is True
    after = split_keywords(client.iptc(target)["keyword"])
    assert after[: len(before)] == before and after[len(before):] == ["SKU-101967", "Outerwear", "a b"]
    assert client.get_image(target)["updated_at"] != updated_at  # a real change moves updated_at
    writes = len(sandbox.writes("photoshelter"))
    assert client.add_keywords(target, ["sku-101967"]) is False  # nothing new: no write
    assert len(sandbox.writes("photoshelter")) == writes


def test_merge_keywords_rules():
    assert merge_keywords(["jacket", "Moss"], ["moss", "", " x ", "y" * 65, "a,b"]) == ["jacket", "Moss", "x", "a b"]


def test_search_finds_by_file_name(sandbox):
    client = make_client(sandbox)
    results = client.search(["SKU-100001"])
    assert results and all("SKU-100001" in r["Image"]["file_name"] for r in results)


def test_rendition_link_points_at_the_sandbox(sandbox):
    link = make_client(sandbox).rendition_link(image_id(3))
    assert link == f"{sandbox.url}/photoshelter/img-get2/{image_id(3)}/fit=2000x2000"


def test_a_200_with_an_error_envelope_is_an_error(sandbox):
    client = make_client(sandbox)
    client.children()
    sandbox.fault("photoshelter", script=["status_error"])
    with pytest.raises(ServiceError, match="error envelope"):
        client.children()


def test_429_waits_retry_after(sandbox):
    sleep = RecordingSleep()
    client = make_client(sandbox, sleep=sleep)
    client.children()
    sandbox.fault("photoshelter", script=["429", "429"])
    assert client.children()["Collection"]
    assert sleep.calls == [2.0, 2.0]


def test_real_rate_limit_gives_up_after_the_budget(sandbox):
    client = make_client(sandbox, max_attempts=2)
    client.children()
    sandbox.configure(photoshelter_rate_per_s=0.01)  # the bucket still holds one token, then empty
    with pytest.raises(RateLimited) as caught:
        for _ in range(3):
            client.children()
    assert caught.value.status == 429 and caught.value.service == "photoshelter"


def test_persistent_503_fails_naming_the_call(sandbox):
    client = make_client(sandbox, max_attempts=3)
    client.children()
    sandbox.fault("photoshelter", error_rate=1.0, error_statuses=[503])
    with pytest.raises(ServiceUnavailable) as caught:
        client.children()
    assert caught.value.path == "/psapi/v3/mem/collection/root/children" and caught.value.attempts == 3


def test_dropped_connection_is_retried(sandbox):
    client = make_client(sandbox)
    client.children()
    sandbox.fault("photoshelter", script=["drop"])
    assert client.children()["Collection"]


def test_deep_page_flake_fails_clearly(sandbox):
    client = make_client(sandbox, max_attempts=2)
    gallery = next(client.iter_galleries())
    sandbox.configure(photoshelter_fail_beyond_page=1)
    with pytest.raises(ServiceUnavailable) as caught:
        list(client.iter_gallery_pages(gallery["gallery_id"], per_page=2))
    assert caught.value.status == 500 and caught.value.path.endswith("/images")


def test_timestamps_are_utc():
    from resources.photoshelter import parse_time

    assert parse_time("2026-11-21 08:12:45 GMT") == datetime(2026, 11, 21, 8, 12, 45, tzinfo=UTC)
