"""OpenText Notifications client and Dagster resource (../shared/contracts/opentext.md §7 "What a client must do").

OpenText has no idempotency key and no lookup by reference, so a submit is sent exactly once per
call and its result says what the caller may do next: `ACCEPTED` (persist the job id at once),
`NOT_ACCEPTED` (nothing was created: safe to resubmit after `backoff_s`), `UNKNOWN` (a job may exist:
never resubmit automatically) or `REJECTED` (permanent). The outbox (issue 5) builds on this.
Logs and results carry references, job ids and statuses only, never tokens or message text.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import dagster as dg
import httpx
from pydantic import PrivateAttr

from resources.http import (
    HttpService,
    MalformedResponse,
    NotSent,
    RetryPolicy,
    ServiceError,
    UnexpectedRedirect,
    retry_after_s,
)

MAX_SUBJECT_CHARS = 200
MAX_SMS_GSM7_CHARS = 160  # one segment
MAX_DESTINATIONS = 100
MAX_SUBMIT_ATTEMPTS = 8  # resubmits of a NOT_ACCEPTED notification, then give up (§7 backoff)
REFRESH_MARGIN_S = 60.0

# GSM 03.38: the basic set costs one character, the extension set two (escape + character).
GSM7_BASIC = set("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                 "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
GSM7_EXTENSION = set("^{}\\[~]|€\f")

_SAFE_STATUSES = {401, 429, 503}  # the gateway refused it: nothing was created
_UNKNOWN_STATUSES = {500, 502, 504}  # it may have been created


def reference_for(dedupe_key: str) -> str:
    """The outbox reference sent as `options.customer_reference` and `X-MRA-SubmitId`."""
    return "co-" + hashlib.sha256(dedupe_key.encode("utf-8")).hexdigest()[:20]


def gsm7_length(text: str) -> int | None:
    """Characters `text` costs in GSM-7, or None if it needs UCS-2 (which cuts a segment to 70)."""
    total = 0
    for char in text:
        if char in GSM7_BASIC:
            total += 1
        elif char in GSM7_EXTENSION:
            total += 2
        else:
            return None
    return total


# ---------- results ----------
class SubmitOutcome(StrEnum):
    ACCEPTED = "accepted"  # 200 with a job id
    NOT_ACCEPTED = "not_accepted"  # refused before anything was created: safe to resubmit with backoff
    UNKNOWN = "unknown"  # a job may exist: never resubmit automatically, only by an operator
    REJECTED = "rejected"  # permanent (400, 403, 404, 413, 415...): failed, no retry


@dataclass(frozen=True)
class SubmitResult:
    outcome: SubmitOutcome
    reference: str
    channel: str
    job_id: str | None = None
    status: int | None = None  # HTTP status, None when no answer came back
    request_id: str | None = None
    retry_after_s: float | None = None
    detail: str = ""  # why, safe to log (statuses and the service's short error text, never secrets)

    @property
    def accepted(self) -> bool:
        return self.outcome is SubmitOutcome.ACCEPTED

    @property
    def safe_to_resubmit(self) -> bool:
        return self.outcome is SubmitOutcome.NOT_ACCEPTED


def backoff_s(attempt: int, retry_after: float | None = None, rng: random.Random | None = None) -> float:
    """Wait before resubmitting a NOT_ACCEPTED notification: Retry-After if given, else jitter from
    1 s growing to 60 s (§7 backoff). `attempt` counts from 1."""
    if retry_after is not None:
        return retry_after
    ceiling = min(60.0, max(1.0, 2.0 ** attempt))
    return (rng or random).uniform(1.0, ceiling)


@dataclass(frozen=True)
class Recipient:
    id: str  # sent as `destinations[].ref`, echoed back in the status as `ref_base64`
    address: str  # an email address, or an SMS number in digits with the `00` international prefix


class DeliveryState(StrEnum):
    DELIVERED = "delivered"
    FAILED = "failed"
    PENDING = "pending"


@dataclass(frozen=True)
class FailedDelivery:
    recipient_id: str | None
    address: str | None
    state: str | None  # the last attempt's state (`Error`, `Cancelled`...), None if never attempted
    gamma_code: int | None


@dataclass(frozen=True)
class JobStatus:
    job_id: str
    state: DeliveryState
    failures: list[FailedDelivery] = field(default_factory=list)
    raw: dict = field(default_factory=dict, repr=False)


def interpret_status(body: dict, job_id: str | None = None, path: str = "/mra/v1/outbound/*/status",
                     request_id: str | None = None) -> JobStatus:
    """§7 outbox step 3: final when `job_state` has `Complete`; delivered only if every delivery's
    last attempt is `Sent`, else failed with the recipients and their gamma codes. A body of another
    shape is a MalformedResponse naming the field (the caller then moves on to the next job)."""
    job_id = str(body.get("job_id") or job_id)

    def malformed(what: str) -> MalformedResponse:
        return MalformedResponse("opentext", "GET", path, 200, request_id, f"job {job_id}: {what}")

    states = body.get("job_state") or []
    if not isinstance(states, list):
        raise malformed(f"job_state is {type(states).__name__}, not a list")
    if "Complete" not in states:
        return JobStatus(job_id, DeliveryState.PENDING, raw=body)
    deliveries = body.get("deliveries") or []
    if not isinstance(deliveries, list) or not all(isinstance(d, dict) for d in deliveries):
        raise malformed("deliveries is not a list of objects")
    failures = []
    for delivery in deliveries:
        attempts = delivery.get("delivery_attempts") or []
        if not isinstance(attempts, list) or not all(isinstance(a, dict) for a in attempts):
            raise malformed("deliveries[].delivery_attempts is not a list of objects")
        last = attempts[-1] if attempts else {}
        if last.get("state") != "Sent":
            address = delivery.get("email") or delivery.get("sms")
            failures.append(FailedDelivery(_unbase64(delivery.get("ref_base64")), address, last.get("state"),
                                           last.get("gamma_code")))
    return JobStatus(job_id, DeliveryState.FAILED if failures else DeliveryState.DELIVERED, failures, body)


def _unbase64(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return base64.b64decode(value).decode("utf-8")
    except (binascii.Error, ValueError):  # ValueError: non-ASCII text; UnicodeDecodeError is one too
        return None


# ---------- tokens ----------
@dataclass
class _CachedToken:
    token: str | None = None
    refresh_at: float = 0.0
    fetches: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class TokenCache:
    """Tokens per tenant and client, shared by every client in the process, so a run's many clients
    fetch one token. The key holds a digest of the secret, never the secret itself."""

    def __init__(self):
        self._entries: dict[tuple[str, str, str, str], _CachedToken] = {}
        self._lock = threading.Lock()

    def entry(self, auth_url: str, tenant_id: str, client_id: str, client_secret: str) -> _CachedToken:
        key = (auth_url.rstrip("/"), tenant_id, client_id, hashlib.sha256(client_secret.encode()).hexdigest())
        with self._lock:
            return self._entries.setdefault(key, _CachedToken())


DEFAULT_TOKEN_CACHE = TokenCache()


# ---------- client ----------
class OpenTextClient:
    def __init__(self, auth_url: str, api_url: str, tenant_id: str, client_id: str, client_secret: str, *,
                 timeout_s: float = 30.0, connect_timeout_s: float = 10.0, max_attempts: int = 8,
                 token_cache: TokenCache | None = None, transport: httpx.BaseTransport | None = None,
                 sleep=time.sleep, clock: Callable[[], float] = time.time):
        self._tenant_id = tenant_id
        self._basic = "Basic " + base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()
        self._clock = clock
        self._token = (token_cache or DEFAULT_TOKEN_CACHE).entry(auth_url, tenant_id, client_id, client_secret)
        timeout = httpx.Timeout(timeout_s, connect=min(connect_timeout_s, timeout_s))
        common = {"timeout": timeout, "transport": transport, "sleep": sleep, "headers": {"Accept": "application/json"}}
        # Backoff between 1 s and 60 s with jitter (RetryPolicy draws from ceiling/2 to ceiling).
        retry = RetryPolicy(max_attempts=max_attempts, base_delay_s=2.0, max_delay_s=60.0)
        # A token call is safe to repeat (another token is harmless); 400/401 are never retried.
        self.auth = HttpService("opentext-auth", auth_url, retry=retry, **common)
        # Status GETs are idempotent: retried on 429, 5xx and timeouts.
        self.api = HttpService("opentext", api_url, retry=retry, **common)
        # Submits get exactly one send (plus the one retry after a refreshed token): every other
        # decision is the caller's, from the SubmitResult.
        self.submits = HttpService("opentext", api_url, retry=RetryPolicy(max_attempts=1), **common)

    def close(self) -> None:
        for service in (self.auth, self.api, self.submits):
            service.close()

    @property
    def token_fetches(self) -> int:
        return self._token.fetches

    # ---- auth ----
    def _bearer(self) -> str:
        entry = self._token
        if entry.token is None or self._clock() >= entry.refresh_at:
            self._refresh(stale=entry.token)
        return entry.token  # type: ignore[return-value]

    def _refresh(self, stale: str | None) -> None:
        """Single flight: a caller that finds the token already replaced uses the new one."""
        entry = self._token
        with entry.lock:
            if entry.token is not None and entry.token != stale and self._clock() < entry.refresh_at:
                return
            reply = self.auth.request("POST", f"/tenants/{self._tenant_id}/oauth2/token", idempotent=True,
                                      headers={"Authorization": self._basic},
                                      data={"grant_type": "client_credentials"})
            body = reply.body if isinstance(reply.body, dict) else {}
            token, lifetime = body.get("access_token"), body.get("expires_in", 3600)
            if not isinstance(token, str) or not token:
                raise MalformedResponse("opentext-auth", "POST", "/tenants/{tenant}/oauth2/token", reply.status,
                                        reply.request_id, "token response without access_token")
            lifetime = float(lifetime) if isinstance(lifetime, int | float) else 3600.0
            # Refresh when under 60 s remain; a short-lived token at 3/4 of its life instead.
            entry.token, entry.refresh_at = token, self._clock() + lifetime - min(REFRESH_MARGIN_S, lifetime / 4)
            entry.fetches += 1

    def _authorized(self, service: HttpService, method: str, path: str, **kwargs):
        """A messaging call with the Bearer token; on a 401 the token is refreshed once and the call
        sent once more (the gateway refused the first, so the retry cannot duplicate)."""
        sent: list[str] = []

        def auth() -> dict[str, str]:
            sent.append(self._bearer())
            return {"Authorization": f"Bearer {sent[-1]}"}

        return service.request(method, path, auth=auth, on_unauthorized=lambda: self._refresh(stale=sent[-1]),
                                **kwargs)

    # ---- submits ----
    def submit_email(self, reference: str, recipients: Sequence[Recipient], subject: str, text: str, *,
                     from_display_name: str = "Catalog Ops") -> SubmitResult:
        """One email job to `recipients`; `text` is plain UTF-8 (sent base64)."""
        _check_recipients(recipients)
        if not subject or len(subject) > MAX_SUBJECT_CHARS:
            raise ValueError(f"email subject must be 1 to {MAX_SUBJECT_CHARS} characters, got {len(subject)}")
        body = {
            "destinations": [{"ref": r.id, "email": r.address} for r in recipients],
            "options": {"customer_reference": reference,
                        "email_options": {"subject": subject, "from_display_name": from_display_name}},
            "reports": {"delivery_report": {"type": "none"}},
            "body": [{"name": "message.txt", "type": "text", "charset": "UTF-8",
                      "data": base64.b64encode(text.encode("utf-8")).decode("ascii")}],
        }
        return self._submit("email", "/mra/v1/outbound/emails", reference, body)

    def submit_sms(self, reference: str, recipients: Sequence[Recipient], text: str) -> SubmitResult:
        """One SMS job; `text` must fit one GSM-7 segment (160 characters, see `gsm7_length`)."""
        _check_recipients(recipients)
        length = gsm7_length(text)
        if not text or length is None or length > MAX_SMS_GSM7_CHARS:
            raise ValueError(f"SMS text must be 1 to {MAX_SMS_GSM7_CHARS} GSM-7 characters "
                             f"({'not GSM-7' if length is None else length})")
        body = {"destinations": [{"ref": r.id, "sms": r.address} for r in recipients], "sms_text": text,
                "options": {"customer_reference": reference}, "reports": {"delivery_report": {"type": "none"}}}
        return self._submit("sms", "/mra/v1/outbound/sms", reference, body)

    def _submit(self, channel: str, path: str, reference: str, body: dict) -> SubmitResult:
        result = lambda outcome, **kw: SubmitResult(outcome, reference, channel, **kw)  # noqa: E731
        try:
            reply = self._authorized(self.submits, "POST", path, idempotent=False, json=body,
                                     headers={"X-MRA-SubmitId": reference}, ok_statuses=(429, 503))
        except ServiceError as exc:
            return result(classify_submit_error(exc), status=exc.status, request_id=exc.request_id, detail=str(exc))
        if reply.status in (429, 503):
            return result(SubmitOutcome.NOT_ACCEPTED, status=reply.status, request_id=reply.request_id,
                          retry_after_s=retry_after_s(reply.headers), detail=f"HTTP {reply.status}")
        job_id = reply.body.get("job_id") if isinstance(reply.body, dict) else None
        if not isinstance(job_id, str) or not job_id.strip():
            return result(SubmitOutcome.UNKNOWN, status=reply.status, request_id=reply.request_id,
                          detail=f"HTTP {reply.status} without a job_id")
        return result(SubmitOutcome.ACCEPTED, job_id=job_id, status=reply.status, request_id=reply.request_id)

    # ---- status ----
    def job_status(self, channel: str, job_id: str, reference: str | None = None) -> JobStatus:
        """The job as it stands (retried on 429/5xx/timeouts); NotFound for an unknown job."""
        path = {"email": "/mra/v1/outbound/emails/status", "sms": "/mra/v1/outbound/sms/status"}[channel]
        headers = {"X-MRA-SubmitId": reference} if reference else None
        reply = self._authorized(self.api, "GET", path, params={"job_id": job_id}, headers=headers)
        if not isinstance(reply.body, dict):
            raise MalformedResponse("opentext", "GET", path, reply.status, reply.request_id, "status is not an object")
        return interpret_status(reply.body, job_id, path, reply.request_id)


def _check_recipients(recipients: Sequence[Recipient]) -> None:
    if not recipients or len(recipients) > MAX_DESTINATIONS:
        raise ValueError(f"a job takes 1 to {MAX_DESTINATIONS} recipients, got {len(recipients)}")


def classify_submit_error(exc: ServiceError) -> SubmitOutcome:
    """§7 "Submit outcomes". A token-host failure means nothing was sent; a rejected token request
    is a configuration error and is raised instead."""
    if exc.service == "opentext-auth":
        if exc.status is not None and 300 <= exc.status < 500 and exc.status != 429:
            raise exc  # 400/401 (or a wrong auth URL): configuration, never retried
        return SubmitOutcome.NOT_ACCEPTED
    if isinstance(exc, NotSent):
        return SubmitOutcome.NOT_ACCEPTED
    status = exc.status
    if status is None:  # read timeout or dropped connection after the request left
        return SubmitOutcome.UNKNOWN
    if isinstance(exc, MalformedResponse) and 200 <= status < 300:  # 200 without a parsable job_id
        return SubmitOutcome.UNKNOWN
    if status in _SAFE_STATUSES:
        return SubmitOutcome.NOT_ACCEPTED
    if status in _UNKNOWN_STATUSES or status >= 500:
        return SubmitOutcome.UNKNOWN
    if isinstance(exc, UnexpectedRedirect) or 300 <= status < 500:
        return SubmitOutcome.REJECTED
    return SubmitOutcome.UNKNOWN


class OpenTextResource(dg.ConfigurableResource):
    """OpenText Notifications (email and SMS). Unset env vars mean the embedded sandbox."""

    auth_url: str
    api_url: str
    tenant_id: str
    client_id: str
    client_secret: str
    timeout_s: float = 30.0
    _client: OpenTextClient | None = PrivateAttr(None)

    def get_client(self) -> OpenTextClient:
        if self._client is None:
            self._client = OpenTextClient(self.auth_url, self.api_url, self.tenant_id, self.client_id,
                                          self.client_secret, timeout_s=self.timeout_s)
        return self._client

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._client is not None:
            self._client.close()

