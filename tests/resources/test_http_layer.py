"""The shared HTTP layer on httpx's MockTransport: the outside edge faked, the layer itself real."""

from __future__ import annotations

import logging

import httpx
import pytest

from resources.http import HttpService, RequestRejected, RetryPolicy, retry_after_s


def service(handler, **kwargs) -> HttpService:
    return HttpService("svc", "https://example.test", transport=httpx.MockTransport(handler),
                       sleep=lambda s: None, retry=RetryPolicy(max_attempts=3), **kwargs)


def test_deprecation_notice_is_logged_once(caplog):
    http = service(lambda r: httpx.Response(200, json={}, headers={"X-Plytix-Deprecation": "v1 ends 2027-06"}))
    with caplog.at_level(logging.WARNING, logger="catalog_ops.http"):
        http.request("GET", "/a")
        http.request("GET", "/b")
    notices = [r.getMessage() for r in caplog.records if "deprecation" in r.getMessage()]
    assert notices == ["svc GET /a: deprecation notice x-plytix-deprecation: v1 ends 2027-06"]


def test_a_4xx_is_not_retried_and_names_the_call():
    calls = []

    def handler(request):
        calls.append(request)
        return httpx.Response(422, text='{"error":"bad"}', headers={"request-id": "abc"})

    with pytest.raises(RequestRejected) as caught:
        service(handler).request("POST", "/things", json={"password": "hunter2"})
    assert len(calls) == 1 and caught.value.request_id == "abc"
    assert str(caught.value).startswith("svc POST /things failed: HTTP 422, request id abc")
    assert "hunter2" not in str(caught.value)  # the request body is never quoted


def test_retry_after_as_http_date_and_seconds():
    assert retry_after_s(httpx.Headers({"Retry-After": "7"})) == 7.0
    assert retry_after_s(httpx.Headers({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})) == 0.0  # in the past
    assert retry_after_s(httpx.Headers({"Retry-After": "soon"})) is None


def test_client_request_id_is_sent_and_reported_when_the_service_has_none():
    seen = []

    def handler(request):
        seen.append(request.headers["X-Request-Id"])
        return httpx.Response(404, text="nope")

    with pytest.raises(Exception) as caught:
        service(handler).request("GET", "/missing")
    assert caught.value.request_id == f"client:{seen[0]}" and len(seen[0]) == 32
