"""The OpenText client against the running sandbox, over real loopback HTTP: submit outcomes, the
token rules and status polling (opentext.md §7 "What a client must do")."""

from __future__ import annotations

import hashlib
import logging
import time
import uuid

import pytest

from orchestration.settings import env_value
from resources.http import AuthenticationFailed, NotFound, ServiceError, ServiceUnavailable
from resources.opentext import (
    DeliveryState,
    OpenTextClient,
    OpenTextResource,
    Recipient,
    SubmitOutcome,
    TokenCache,
    backoff_s,
    classify_submit_error,
    gsm7_length,
    interpret_status,
    reference_for,
)
from tests.conftest import free_port

SECRET = "sandbox-ot-secret"
ANNA = Recipient("u-anna", "anna.meyer@brand.example")
ANNA_SMS = Recipient("u-anna", "0014155550123")


class RecordingSleep:
    def __init__(self):
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture(autouse=True)
def generous_limits(sandbox):
    sandbox.configure(opentext_rate_per_s=100000, opentext_token_rate_per_min=100000)


def make_client(sandbox, *, secret=SECRET, tenant="sandbox-tenant", api_url=None, cache=None, **kwargs) -> OpenTextClient:
    return OpenTextClient(f"{sandbox.url}/opentext-auth", api_url or f"{sandbox.url}/opentext", tenant,
                          "sandbox-ot-client", secret, token_cache=cache or TokenCache(), sleep=RecordingSleep(),
                          **kwargs)


def new_reference() -> str:
    return reference_for(f"test:{uuid.uuid4()}")


def jobs_for(sandbox, reference: str) -> list[dict]:
    return [w["body"] for w in sandbox.writes("opentext") if w["body"]["customer_reference"] == reference]


# ---------- pure helpers ----------
def test_reference_is_co_and_twenty_hex_of_the_key_digest():
    key = "missing_required:6740a1f20000000000000001:2026-11-22"
    assert reference_for(key) == "co-" + hashlib.sha256(key.encode()).hexdigest()[:20]
    assert reference_for(key) == reference_for(key) != reference_for(key + "x")


def test_gsm7_length_counts_extension_characters_twice():
    assert gsm7_length("Catalog Ops: 3 products") == 23
    assert gsm7_length("price [€]") == 6 + 2 + 2 + 2
    assert gsm7_length("rocket 🚀") is None  # needs UCS-2


def test_backoff_honours_retry_after_else_jitters_within_a_minute():
    assert backoff_s(1, retry_after=1.5) == 1.5
    waits = [backoff_s(attempt) for attempt in range(1, 9) for _ in range(20)]
    assert all(1.0 <= w <= 60.0 for w in waits) and max(waits) > 30


@pytest.mark.parametrize(("service", "status", "cls", "outcome"), [
    ("opentext", 401, AuthenticationFailed, SubmitOutcome.NOT_ACCEPTED),  # still 401 after the refresh
    ("opentext", 500, ServiceUnavailable, SubmitOutcome.UNKNOWN),
    ("opentext", 502, ServiceUnavailable, SubmitOutcome.UNKNOWN),
    ("opentext", 504, ServiceUnavailable, SubmitOutcome.UNKNOWN),
    ("opentext", None, ServiceUnavailable, SubmitOutcome.UNKNOWN),  # read timeout, dropped after sending
    ("opentext", 400, ServiceError, SubmitOutcome.REJECTED),
    ("opentext", 403, ServiceError, SubmitOutcome.REJECTED),
    ("opentext", 404, NotFound, SubmitOutcome.REJECTED),
    ("opentext", 413, ServiceError, SubmitOutcome.REJECTED),
    ("opentext", 415, ServiceError, SubmitOutcome.REJECTED),
    ("opentext-auth", 503, ServiceUnavailable, SubmitOutcome.NOT_ACCEPTED),  # no token: nothing was sent
])
def test_submit_outcome_table(service, status, cls, outcome):
    assert classify_submit_error(cls(service, "POST", "/mra/v1/outbound/sms", status, None, "x")) is outcome


def test_a_rejected_token_request_is_raised_not_classified():
    with pytest.raises(AuthenticationFailed):
        classify_submit_error(AuthenticationFailed("opentext-auth", "POST", "/tenants/t/oauth2/token", 401, None, "x"))


def test_interpret_status_of_the_contract_example():
    body = {"job_id": "xsi-10000043", "job_state": ["Complete", "Posted"],
            "deliveries": [{"ref_base64": "dS1hbm5h", "sms": "0014155550123",
                            "delivery_attempts": [{"state": "Pending", "gamma_code": 0},
                                                  {"state": "Sent", "gamma_code": 0}]}]}
    assert interpret_status(body).state is DeliveryState.DELIVERED
    assert interpret_status({**body, "job_state": ["Submitted"]}).state is DeliveryState.PENDING
    never_tried = {**body, "deliveries": [{"ref_base64": "dS1hbm5h", "sms": "1", "delivery_attempts": []}]}
    [failure] = interpret_status(never_tried).failures
    assert (failure.recipient_id, failure.state, failure.gamma_code) == ("u-anna", None, None)


# ---------- submits against the sandbox ----------
def test_email_is_accepted_with_the_reference_in_both_places(sandbox):
    client = make_client(sandbox)
    reference = new_reference()
    text = "3 Outerwear products are missing required attributes.\nDétails: http://127.0.0.1:3000/runs\n"
    result = client.submit_email(reference, [ANNA, Recipient("u-ben", "ben@brand.example")], "3 products", text)
    assert result.outcome is SubmitOutcome.ACCEPTED and result.accepted
    [job] = jobs_for(sandbox, reference)
    assert job["job_id"] == result.job_id and job["channel"] == "email"
    assert job["submit_id"] == reference == job["customer_reference"]
    assert job["destinations"] == [{"ref": "u-anna", "email": "anna.meyer@brand.example"},
                                   {"ref": "u-ben", "email": "ben@brand.example"}]
    assert job["text"] == text and job["subject"] == "3 products"


def test_job_status_goes_from_pending_to_delivered(sandbox):
    sandbox.configure(opentext_delivery_delay_s=3600)
    client = make_client(sandbox)
    result = client.submit_sms(new_reference(), [ANNA_SMS], "Catalog Ops: 3 products need attributes.")
    assert client.job_status("sms", result.job_id).state is DeliveryState.PENDING
    sandbox.configure(opentext_delivery_delay_s=0)
    status = client.job_status("sms", result.job_id, reference=result.reference)
    assert status.state is DeliveryState.DELIVERED and status.failures == []


def test_undeliverable_recipient_fails_the_job_with_its_gamma_code(sandbox):
    sandbox.configure(opentext_delivery_delay_s=0)
    client = make_client(sandbox)
    bounce = Recipient("u-gone", "gone@bounce.example")
    result = client.submit_email(new_reference(), [ANNA, bounce], "Subject", "Body")
    status = client.job_status("email", result.job_id)
    assert status.state is DeliveryState.FAILED
    assert [(f.recipient_id, f.address, f.state, f.gamma_code) for f in status.failures] == [
        ("u-gone", "gone@bounce.example", "Error", 5000)]
    with pytest.raises(NotFound):
        client.job_status("sms", result.job_id)  # a job of the other channel


@pytest.mark.parametrize("fault", [
    {"script": ["drop"]},
    {"script": ["commit_timeout"], "timeout_s": 2},
    {"script": ["malformed"]},  # the job is created, the 200 arrives cut short
], ids=["drop", "commit-timeout", "malformed-200"])
def test_commit_then_lost_answer_is_unknown_and_never_resubmitted(sandbox, fault):
    sandbox.fault("opentext", path_contains="/outbound/", **fault)
    client = make_client(sandbox, timeout_s=0.5)
    reference = new_reference()
    result = client.submit_sms(reference, [ANNA_SMS], "Catalog Ops: check your products.")
    assert result.outcome is SubmitOutcome.UNKNOWN and result.job_id is None and not result.safe_to_resubmit
    assert len(jobs_for(sandbox, reference)) == 1  # the job exists, and the client sent it once
    assert client.submits.requests_sent == 1


def test_200_without_a_job_id_is_unknown(sandbox):
    sandbox.fault("opentext", path_contains="/outbound/", script=["status_error"])
    result = make_client(sandbox).submit_sms(new_reference(), [ANNA_SMS], "Catalog Ops: hello.")
    assert result.outcome is SubmitOutcome.UNKNOWN and result.status == 200


@pytest.mark.parametrize("status", [500, 502, 504])
def test_server_errors_after_sending_are_unknown_and_not_retried(sandbox, status):
    sandbox.fault("opentext", path_contains="/outbound/", error_rate=1, error_statuses=[status])
    client = make_client(sandbox)
    result = client.submit_email(new_reference(), [ANNA], "Subject", "Body")
    assert (result.outcome, result.status) == (SubmitOutcome.UNKNOWN, status)
    assert client.submits.requests_sent == 1


def test_503_is_safe_to_resubmit_and_the_resubmit_makes_one_job(sandbox):
    sandbox.fault("opentext", path_contains="/outbound/", script=["503"])
    client = make_client(sandbox)
    reference = new_reference()
    first = client.submit_email(reference, [ANNA], "Subject", "Body")
    assert (first.outcome, first.status) == (SubmitOutcome.NOT_ACCEPTED, 503) and first.safe_to_resubmit
    assert jobs_for(sandbox, reference) == []
    second = client.submit_email(reference, [ANNA], "Subject", "Body")  # what the outbox does after backoff
    assert second.accepted
    assert [job["job_id"] for job in jobs_for(sandbox, reference)] == [second.job_id]


def test_429_is_safe_to_resubmit_after_retry_after(sandbox):
    sandbox.fault("opentext", path_contains="/outbound/", script=["429"])
    result = make_client(sandbox).submit_sms(new_reference(), [ANNA_SMS], "Catalog Ops: hello.")
    assert (result.outcome, result.status, result.retry_after_s) == (SubmitOutcome.NOT_ACCEPTED, 429, 1.0)


def test_connection_refused_is_safe_to_resubmit(sandbox):
    client = make_client(sandbox, api_url=f"http://127.0.0.1:{free_port()}/opentext")
    result = client.submit_sms(new_reference(), [ANNA_SMS], "Catalog Ops: hello.")
    assert result.outcome is SubmitOutcome.NOT_ACCEPTED and result.status is None


def test_validation_error_is_rejected_for_good(sandbox):
    client = make_client(sandbox)
    result = client.submit_sms(new_reference(), [Recipient("u-x", "+14155550123")], "Catalog Ops: hello.")
    assert (result.outcome, result.status) == (SubmitOutcome.REJECTED, 400)
    assert "invalid number" in result.detail


def test_content_limits_are_enforced_before_sending(sandbox):
    client = make_client(sandbox)
    with pytest.raises(ValueError, match="GSM-7"):
        client.submit_sms(new_reference(), [ANNA_SMS], "x" * 161)
    with pytest.raises(ValueError, match="recipients"):
        client.submit_email(new_reference(), [ANNA] * 101, "Subject", "Body")
    with pytest.raises(ValueError, match="subject"):
        client.submit_email(new_reference(), [ANNA], "s" * 201, "Body")
    assert client.submits.requests_sent == 0


# ---------- token ----------
@pytest.mark.parametrize(("secret", "tenant"), [("very-distinctive-secret-1234", "sandbox-tenant"),
                                                 (SECRET, "someone-elses-tenant")], ids=["wrong-secret", "wrong-tenant"])
def test_token_rejection_is_fatal_and_not_retried(sandbox, secret, tenant):
    client = make_client(sandbox, secret=secret, tenant=tenant)
    with pytest.raises(AuthenticationFailed) as caught:
        client.submit_email(new_reference(), [ANNA], "Subject", "Body")
    error = caught.value
    assert (error.service, error.status) == ("opentext-auth", 401) and "invalid_client" in str(error)
    assert secret not in str(error) and secret not in repr(error.__dict__)
    assert client.auth.requests_sent == 1 and client.submits.requests_sent == 0


def test_expired_token_is_refreshed_once_and_the_submit_sent_once_more(sandbox, caplog):
    caplog.set_level(logging.DEBUG)
    client = make_client(sandbox)
    assert client.submit_sms(new_reference(), [ANNA_SMS], "Catalog Ops: one.").accepted
    stale = client._token.token
    sandbox.admin.post("/_sandbox/tokens/expire", json={"service": "opentext"}).raise_for_status()
    reference = new_reference()
    result = client.submit_sms(reference, [ANNA_SMS], "Catalog Ops: two.")
    assert result.accepted and client.token_fetches == 2
    assert client.submits.requests_sent == 3  # one, then two's 401 and its single retry
    assert len(jobs_for(sandbox, reference)) == 1  # the refused attempt created nothing
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert stale not in logged and client._token.token not in logged and SECRET not in logged


def test_token_is_refreshed_when_under_a_minute_remains(sandbox):
    sandbox.configure(opentext_token_ttl_s=400)
    offset = [0.0]
    client = make_client(sandbox, clock=lambda: time.time() + offset[0])
    assert client.submit_sms(new_reference(), [ANNA_SMS], "Catalog Ops: a.").accepted
    offset[0] = 400 - 60 + 1  # under 60 s left: refreshed before the call, without a 401
    assert client.submit_sms(new_reference(), [ANNA_SMS], "Catalog Ops: b.").accepted
    assert client.token_fetches == 2 and client.submits.requests_sent == 2


def test_token_is_cached_per_tenant_across_clients(sandbox):
    cache = TokenCache()
    first, second = make_client(sandbox, cache=cache), make_client(sandbox, cache=cache)
    for client in (first, second, first):
        assert client.submit_sms(new_reference(), [ANNA_SMS], "Catalog Ops: shared.").accepted
    assert first.token_fetches == second.token_fetches == 1
    other_tenant = make_client(sandbox, cache=cache, tenant="someone-elses-tenant")
    with pytest.raises(AuthenticationFailed):
        other_tenant.submit_sms(new_reference(), [ANNA_SMS], "Catalog Ops: no.")


def test_resource_builds_a_client_from_the_sandbox_defaults(sandbox_env):
    resource = OpenTextResource(auth_url=env_value("OPENTEXT_AUTH_URL"), api_url=env_value("OPENTEXT_API_URL"),
                                tenant_id=env_value("OPENTEXT_TENANT_ID"), client_id=env_value("OPENTEXT_CLIENT_ID"),
                                client_secret=env_value("OPENTEXT_CLIENT_SECRET"))
    reference = new_reference()
    result = resource.get_client().submit_email(reference, [ANNA], "Subject", "Body")
    assert result.accepted and [job["job_id"] for job in jobs_for(sandbox_env, reference)] == [result.job_id]
