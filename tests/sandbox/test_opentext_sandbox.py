"""The sandbox's OpenText against ../shared/contracts/opentext.md: statuses, headers and bodies, raw HTTP."""

from __future__ import annotations

import base64
import re
import uuid

import httpx
import pytest

TENANT, CLIENT, SECRET = "sandbox-tenant", "sandbox-ot-client", "sandbox-ot-secret"
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def basic(client: str = CLIENT, secret: str = SECRET) -> str:
    return "Basic " + base64.b64encode(f"{client}:{secret}".encode()).decode()


def token_url(sandbox, tenant: str = TENANT) -> str:
    return f"{sandbox.url}/opentext-auth/tenants/{tenant}/oauth2/token"


def get_token(sandbox) -> str:
    reply = httpx.post(token_url(sandbox), headers={"Authorization": basic(), **FORM},
                       content="grant_type=client_credentials")
    assert reply.status_code == 200, reply.text
    return reply.json()["access_token"]


def fault_body(faultstring: str, errorcode: str) -> dict:
    return {"fault": {"faultstring": faultstring, "detail": {"errorcode": errorcode}}}


@pytest.fixture(autouse=True)
def generous_limits(sandbox):
    sandbox.configure(opentext_rate_per_s=100000, opentext_token_rate_per_min=100000)


@pytest.fixture
def mra(sandbox):
    with httpx.Client(base_url=f"{sandbox.url}/opentext/mra/v1",
                      headers={"Authorization": f"Bearer {get_token(sandbox)}"}) as client:
        yield client


def email(reference: str, *addresses: str, text: str = "Three products need attributes.\nDétails: http://x/runs") -> dict:
    return {"destinations": [{"ref": f"u-{i}", "email": a} for i, a in enumerate(addresses or ["anna@brand.example"])],
            "options": {"customer_reference": reference,
                        "email_options": {"subject": "3 products are missing attributes", "from_display_name": "Ops"}},
            "reports": {"delivery_report": {"type": "none"}},
            "body": [{"name": "message.txt", "type": "text", "charset": "UTF-8",
                      "data": base64.b64encode(text.encode()).decode()}]}


def sms(reference: str, *numbers: str) -> dict:
    return {"destinations": [{"ref": f"u-{i}", "sms": n} for i, n in enumerate(numbers or ["0014155550123"])],
            "sms_text": "Catalog Ops: 3 products are missing attributes.", "options": {"customer_reference": reference}}


def writes_for(sandbox, reference: str) -> list[dict]:
    return [w for w in sandbox.writes("opentext") if w["body"]["customer_reference"] == reference]


def fresh_reference() -> str:
    return "co-" + uuid.uuid4().hex[:20]


# ---------- token ----------
def test_token_is_issued_for_basic_client_auth_with_the_configured_lifetime(sandbox):
    sandbox.configure(opentext_token_ttl_s=123)
    reply = httpx.post(token_url(sandbox), headers={"Authorization": basic(), **FORM}, content="grant_type=client_credentials")
    assert reply.status_code == 200
    body = reply.json()
    assert set(body) == {"access_token", "token_type", "expires_in"}
    assert body["token_type"] == "Bearer" and body["expires_in"] == 123
    # OpenText's own collection labels the form body as JSON: accepted too.
    slip = httpx.post(token_url(sandbox), headers={"Authorization": basic(), "Content-Type": "application/json"},
                      content="grant_type=client_credentials")
    assert slip.status_code == 200 and slip.json()["access_token"] != body["access_token"]


@pytest.mark.parametrize(("tenant", "authorization", "form", "status", "body"), [
    (TENANT, basic(secret="wrong"), "grant_type=client_credentials", 401,
     {"error": "invalid_client", "error_description": "Bad client credentials"}),
    ("other-tenant", basic(), "grant_type=client_credentials", 401,
     {"error": "invalid_client", "error_description": "Bad client credentials"}),
    (TENANT, basic(client="someone-else"), "grant_type=client_credentials", 401,
     fault_body("Invalid ApiKey", "oauth.v2.InvalidApiKey")),
    (TENANT, None, f"grant_type=client_credentials&client_id={CLIENT}&client_secret={SECRET}", 401,
     fault_body("Invalid ApiKey", "oauth.v2.InvalidApiKey")),  # credentials only count in the Basic header
    (TENANT, basic(), "", 400, {"error": "unsupported_grant_type", "error_description": "Unsupported grant type"}),
    (TENANT, basic(), "grant_type=password", 400,
     {"error": "unsupported_grant_type", "error_description": "Unsupported grant type"}),
], ids=["wrong-secret", "foreign-tenant", "unknown-client", "body-credentials", "no-grant", "other-grant"])
def test_token_errors(sandbox, tenant, authorization, form, status, body):
    headers = {**FORM, **({"Authorization": authorization} if authorization else {})}
    reply = httpx.post(token_url(sandbox, tenant), headers=headers, content=form)
    assert reply.status_code == status and reply.json() == body


def test_token_endpoint_limit_per_minute(sandbox):
    sandbox.configure(opentext_token_rate_per_min=3)
    client = f"burst-{uuid.uuid4().hex[:6]}"  # counted per client id, known or not
    replies = [httpx.post(token_url(sandbox), headers={"Authorization": basic(client=client), **FORM},
                          content="grant_type=client_credentials") for _ in range(4)]
    assert [r.status_code for r in replies] == [401, 401, 401, 429]
    assert replies[3].headers["Retry-After"] == "1"
    assert replies[3].json() == fault_body("Spike arrest violation. Allowed rate : 3pm",
                                           "policies.ratelimit.SpikeArrestViolation")


# ---------- bearer ----------
def test_messaging_requires_a_valid_bearer_token(sandbox):
    status_url = f"{sandbox.url}/opentext/mra/v1/outbound/sms/status"
    missing = fault_body("Invalid access token", "oauth.v2.InvalidAccessToken")
    for headers in ({}, {"Authorization": basic()}, {"Authorization": "Bearer"}):  # Basic counts as missing
        reply = httpx.get(status_url, params={"job_id": "xsi-10000001"}, headers=headers)
        assert reply.status_code == 401 and reply.json() == missing
    unknown = httpx.get(status_url, params={"job_id": "xsi-10000001"}, headers={"Authorization": "Bearer nope"})
    assert unknown.status_code == 401
    assert unknown.json() == fault_body("Invalid Access Token", "keymanagement.service.invalid_access_token")
    token = get_token(sandbox)
    sandbox.admin.post("/_sandbox/tokens/expire", json={"service": "opentext"}).raise_for_status()
    expired = httpx.post(f"{sandbox.url}/opentext/mra/v1/outbound/sms", json=sms(fresh_reference()),
                         headers={"Authorization": f"Bearer {token}"})
    assert expired.status_code == 401
    assert expired.json() == fault_body("Access Token expired", "keymanagement.service.access_token_expired")


# ---------- submits ----------
def test_submits_answer_200_with_rising_job_ids_and_no_dedupe(sandbox, mra):
    reference = fresh_reference()
    first = mra.post("/outbound/emails", json=email(reference), headers={"X-MRA-SubmitId": reference})
    second = mra.post("/outbound/emails", json=email(reference), headers={"X-MRA-SubmitId": reference})
    third = mra.post("/outbound/sms", json=sms(reference), headers={"X-MRA-SubmitId": reference})
    assert [r.status_code for r in (first, second, third)] == [200, 200, 200]
    ids = [r.json()["job_id"] for r in (first, second, third)]
    assert all(re.fullmatch(r"xsi-\d{8}", job_id) for job_id in ids)
    numbers = [int(job_id.removeprefix("xsi-")) for job_id in ids]
    assert numbers == sorted(numbers) and len(set(numbers)) == 3
    assert set(first.json()) == {"job_id"}
    logged = writes_for(sandbox, reference)
    assert [w["body"]["job_id"] for w in logged] == ids  # the same reference twice is two jobs, both logged
    email_write, sms_write = logged[0], logged[2]
    assert email_write["path"] == "/mra/v1/outbound/emails" and email_write["status"] == 200
    assert email_write["body"]["channel"] == "email" and email_write["body"]["submit_id"] == reference
    assert email_write["body"]["destinations"] == [{"ref": "u-0", "email": "anna@brand.example"}]
    assert email_write["body"]["text"] == "Three products need attributes.\nDétails: http://x/runs"
    assert email_write["body"]["subject"] == "3 products are missing attributes"
    assert STAMP.match(email_write["body"]["submitted_at"])
    assert sms_write["path"] == "/mra/v1/outbound/sms" and sms_write["body"]["channel"] == "sms"
    assert sms_write["body"]["text"] == "Catalog Ops: 3 products are missing attributes."
    assert sms_write["body"]["destinations"] == [{"ref": "u-0", "sms": "0014155550123"}]


def _without(body: dict, *path: str) -> dict:
    copy = {**body, "options": {**body["options"], "email_options": {**body["options"]["email_options"]}}}
    target = copy
    for key in path[:-1]:
        target = target[key]
    target.pop(path[-1])
    return copy


EMAIL = email("co-validation")


@pytest.mark.parametrize(("body", "message"), [
    ({**EMAIL, "destinations": []}, "destinations: at least one destination is required"),
    (_without(EMAIL, "destinations"), "destinations: at least one destination is required"),
    ({**EMAIL, "destinations": [{"ref": "u", "email": "not-an-address"}]},
     "destinations[0].email: invalid address 'not-an-address'"),
    (_without(EMAIL, "options", "email_options", "subject"), "options.email_options.subject: required"),
    ({**EMAIL, "body": []}, "body: at least one document is required"),
    ({**EMAIL, "body": [{"name": "m.txt", "type": "text", "data": "not base64!"}]}, "body[0].data: not valid base64"),
    ({**EMAIL, "destinations": [{"email": f"p{i}@brand.example"} for i in range(1001)]},
     "destinations: at most 1000 destinations per job, got 1001"),
], ids=["empty-destinations", "no-destinations", "bad-address", "no-subject", "no-body", "not-base64", "too-many"])
def test_email_validation(sandbox, mra, body, message):
    before = len(sandbox.writes("opentext"))
    reply = mra.post("/outbound/emails", json=body)
    assert reply.status_code == 400
    assert reply.json() == {"error": "invalid_request", "message": message}
    assert len(sandbox.writes("opentext")) == before  # only accepted submissions are writes


@pytest.mark.parametrize(("body", "message"), [
    ({**sms("co-v"), "destinations": []}, "destinations: at least one destination is required"),
    (sms("co-v", "+14155550123"), "destinations[0].sms: invalid number '+14155550123'"),
    (sms("co-v", "1234567"), "destinations[0].sms: invalid number '1234567'"),
    ({**sms("co-v"), "sms_text": ""}, "sms_text: required"),
], ids=["no-destinations", "plus-sign", "too-short", "empty-text"])
def test_sms_validation(sandbox, mra, body, message):
    reply = mra.post("/outbound/sms", json=body)
    assert reply.status_code == 400
    assert reply.json() == {"error": "invalid_request", "message": message}


def test_other_channels_are_not_emulated(mra):
    for path in ("/outbound/faxes", "/outbound/whatsapp", "/utils/parser"):
        assert mra.post(path, json={}).status_code == 404


# ---------- status ----------
def test_email_job_goes_from_submitted_to_delivered(sandbox, mra):
    sandbox.configure(opentext_delivery_delay_s=3600)
    reference = fresh_reference()
    job_id = mra.post("/outbound/emails", json=email(reference)).json()["job_id"]
    pending = mra.get("/outbound/emails/status", params={"job_id": job_id})
    assert pending.status_code == 200
    body = pending.json()
    assert body["job_id"] == job_id and body["job_state"] == ["Submitted"]
    assert base64.b64decode(body["customer_reference_base64"]).decode() == reference
    assert "billing_code_base64" not in body and STAMP.match(body["entry_time"])
    assert body["deliveries"] == [{"ref_base64": base64.b64encode(b"u-0").decode(), "email": "anna@brand.example",
                                   "delivery_attempts": [],
                                   "events": {"email_delivery_events": {"dsn": None, "html_open": [], "opt_out": None,
                                                                        "pull": []}}}]
    sandbox.configure(opentext_delivery_delay_s=0)
    final = mra.get("/outbound/emails/status", params={"job_id": job_id}).json()
    assert final["job_state"] == ["Complete", "Posted"]
    assert final["html_open_tracking"] == {"total_open_count": 0, "distinct_open_count": 0}
    assert final["attachments"] == []
    [attempt] = final["deliveries"][0]["delivery_attempts"]
    assert attempt["state"] == "Sent" and attempt["gamma_code"] == 0 and STAMP.match(attempt["first_attempt"])
    # The mirror's trailing-slash path serves the same status (no 301).
    slash = mra.get("/outbound/emails/status/", params={"job_id": job_id})
    assert slash.status_code == 200 and slash.json() == final
    assert len(writes_for(sandbox, reference)) == 1  # status reads are not writes


def test_undeliverable_addresses_end_in_error(sandbox, mra):
    sandbox.configure(opentext_delivery_delay_s=0)
    sms_job = mra.post("/outbound/sms", json=sms(fresh_reference(), "0014155550123", "0014155550000")).json()["job_id"]
    body = mra.get("/outbound/sms/status/", params={"job_id": sms_job}).json()
    assert body["job_state"] == ["Complete", "Posted"]
    good, dead = body["deliveries"]
    assert good["delivery_attempts"][0]["state"] == "Sent"
    assert [e["status"] for e in good["events"]["sms_delivery_events"]] == ["Confirmed"]
    assert STAMP.match(good["events"]["sms_delivery_events"][0]["event_time"])
    assert dead["sms"] == "0014155550000"
    assert [(a["state"], a["gamma_code"]) for a in dead["delivery_attempts"]] == [("Error", 5000)]
    assert dead["events"] == {"sms_delivery_events": []}
    email_job = mra.post("/outbound/emails", json=email(fresh_reference(), "Nobody@Bounce.Example")).json()["job_id"]
    [delivery] = mra.get("/outbound/emails/status", params={"job_id": email_job}).json()["deliveries"]
    assert [(a["state"], a["gamma_code"]) for a in delivery["delivery_attempts"]] == [("Error", 5000)]


def test_status_errors(mra):
    sms_job = mra.post("/outbound/sms", json=sms(fresh_reference())).json()["job_id"]
    for channel, job_id in (("emails", "xsi-99999999"), ("emails", sms_job)):  # unknown, or the other channel
        reply = mra.get(f"/outbound/{channel}/status", params={"job_id": job_id})
        assert reply.status_code == 404
        assert reply.json() == {"error": "job_not_found", "message": f"Job {job_id} not found"}
    for params in ({}, {"job_id": "not a job"}):
        reply = mra.get("/outbound/sms/status", params=params)
        assert reply.status_code == 400 and reply.json()["error"] == "invalid_request"


# ---------- limits and faults ----------
def test_messaging_rate_limit_is_a_spike_arrest(sandbox, mra):
    sandbox.configure(opentext_rate_per_s=0.01)  # a bucket of one that refills in 100 s
    first = mra.get("/outbound/sms/status", params={"job_id": "xsi-99999999"})
    second = mra.get("/outbound/sms/status", params={"job_id": "xsi-99999999"})
    assert first.status_code == 404 and second.status_code == 429
    assert second.headers["Retry-After"] == "1"
    assert second.json() == fault_body("Spike arrest violation. Allowed rate : 0.01ps",
                                       "policies.ratelimit.SpikeArrestViolation")


def test_injected_errors_use_the_gateway_body(sandbox, mra):
    sandbox.fault("opentext", script=["503", "429"])
    reference = fresh_reference()
    replies = [mra.post("/outbound/sms", json=sms(reference)) for _ in range(2)]
    sandbox.fault("opentext", error_rate=1, error_statuses=[504])  # 504 is not a script outcome
    replies.append(mra.post("/outbound/sms", json=sms(reference)))
    assert [r.status_code for r in replies] == [503, 429, 504]
    assert replies[0].json() == fault_body("The Service is temporarily unavailable",
                                           "messaging.adaptors.http.flow.ServiceUnavailable")
    assert replies[1].headers["Retry-After"] == "1"
    assert replies[1].json()["fault"]["detail"]["errorcode"] == "policies.ratelimit.SpikeArrestViolation"
    assert replies[2].json() == fault_body("Gateway Timeout", "messaging.adaptors.http.flow.GatewayTimeout")
    assert writes_for(sandbox, reference) == []  # refused at the gateway: no job


def test_commit_then_drop_creates_the_job_though_the_answer_is_lost(sandbox, mra):
    sandbox.fault("opentext", path_contains="/outbound/sms", script=["drop", "commit_timeout"], timeout_s=3)
    dropped, late = fresh_reference(), fresh_reference()
    with pytest.raises(httpx.RemoteProtocolError):
        mra.post("/outbound/sms", json=sms(dropped))
    with pytest.raises(httpx.ReadTimeout):
        mra.post("/outbound/sms", json=sms(late), timeout=httpx.Timeout(0.5, connect=5))
    [write] = writes_for(sandbox, dropped)
    assert mra.get("/outbound/sms/status", params={"job_id": write["body"]["job_id"]}).status_code == 200
    assert len(writes_for(sandbox, late)) == 1
