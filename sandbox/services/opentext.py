"""OpenText Notifications emulation (opentext.md): the OCP tenant token and Messaging REST `mra/v1`.

The token host checks Basic client auth against the exact sandbox credentials and the tenant in the
path; `/mra/v1` takes the Bearer token, rate limits per client id, and creates one job per accepted
submit with no dedupe at all, so a client that resubmits blindly leaves two jobs in the write log.
Gateway errors use Apigee's `fault` body, the service's own errors `{"error","message"}` (§6).
Jobs, validation and the status lifecycle live in `opentext_jobs`.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import time
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.ratelimit import FixedWindows, TokenBucket
from sandbox.services import ServiceDef
from sandbox.services.opentext_jobs import Invalid, JobStore, Submission, stamp, validate_email, validate_sms

TENANT_ID, CLIENT_ID, CLIENT_SECRET = "sandbox-tenant", "sandbox-ot-client", "sandbox-ot-secret"
ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
CHANNEL_PATHS = {"email": "/mra/v1/outbound/emails", "sms": "/mra/v1/outbound/sms"}


# ---------- bodies ----------
def fault(status: int, faultstring: str, errorcode: str, headers: dict | None = None) -> JSONResponse:
    """The Apigee gateway's error body (auth, rate limits, 5xx)."""
    return JSONResponse({"fault": {"faultstring": faultstring, "detail": {"errorcode": errorcode}}},
                        status_code=status, headers=headers)


def service_error(status: int, error: str, message: str) -> JSONResponse:
    return JSONResponse({"error": error, "message": message}, status_code=status)


def token_error(status: int, error: str, description: str) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=status)


def spike_arrest(allowed: str) -> JSONResponse:
    return fault(429, f"Spike arrest violation. Allowed rate : {allowed}",
                 "policies.ratelimit.SpikeArrestViolation", {"Retry-After": "1"})


GATEWAY_ERRORS = {  # injected statuses (§6); 500 and 502 follow the documented 503/504 pattern
    500: ("Internal Server Error", "messaging.adaptors.http.flow.InternalServerError"),
    502: ("Bad Gateway", "messaging.adaptors.http.flow.BadGateway"),
    503: ("The Service is temporarily unavailable", "messaging.adaptors.http.flow.ServiceUnavailable"),
    504: ("Gateway Timeout", "messaging.adaptors.http.flow.GatewayTimeout"),
}


def error_renderer(status: int) -> tuple[dict[str, str], bytes]:
    if status == 429:
        body = {"fault": {"faultstring": "Spike arrest violation. Allowed rate : 10ps",
                          "detail": {"errorcode": "policies.ratelimit.SpikeArrestViolation"}}}
        return {"Retry-After": "1"}, json.dumps(body).encode()
    if status == 200:  # the "status_error" fault: a 200 without the promised job_id
        return {}, b"{}"
    faultstring, errorcode = GATEWAY_ERRORS.get(status, GATEWAY_ERRORS[500])
    return {}, json.dumps({"fault": {"faultstring": faultstring, "detail": {"errorcode": errorcode}}}).encode()


# ---------- tokens and limits ----------
class OpenTextAuth:
    """Issued tokens (token -> client id, expiry) and the two limiters."""

    def __init__(self, state):
        self.state = state
        self.tokens: dict[str, tuple[str, float]] = {}
        self._limiters: dict[tuple, TokenBucket | FixedWindows] = {}

    def _limiter(self, key: tuple, factory):
        # Keyed by the configured rate, so `POST /_sandbox/config` takes effect at once.
        if key not in self._limiters:
            self._limiters[key] = factory()
        return self._limiters[key]

    @property
    def token_limit(self) -> FixedWindows:
        per_min = self.state.options.opentext_token_rate_per_min
        return self._limiter(("token", per_min), lambda: FixedWindows([(per_min, 60.0)]))

    @property
    def messaging_limit(self) -> TokenBucket:
        rate = self.state.options.opentext_rate_per_s
        return self._limiter(("mra", rate), lambda: TokenBucket(rate))

    def issue(self, client_id: str, tenant: str) -> tuple[str, int]:
        ttl = self.state.options.opentext_token_ttl_s
        header = _segment({"kid": "sandbox", "alg": "RS256"})
        claims = _segment({"tid": tenant, "cid": client_id, "jti": secrets.token_hex(8)})
        token = f"{header}.{claims}.{base64.urlsafe_b64encode(secrets.token_bytes(24)).rstrip(b'=').decode()}"
        self.tokens[token] = (client_id, time.time() + ttl)
        return token, ttl

    def check(self, request: Request) -> tuple[str | None, Response | None]:
        """The client id behind a valid Bearer token, or the gateway's 401 (§3 messaging 401s)."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:  # Basic included: the sandbox has no MyPortal account
            return None, fault(401, "Invalid access token", "oauth.v2.InvalidAccessToken")
        issued = self.tokens.get(token)
        if issued is None:
            return None, fault(401, "Invalid Access Token", "keymanagement.service.invalid_access_token")
        if time.time() >= issued[1]:
            return None, fault(401, "Access Token expired", "keymanagement.service.access_token_expired")
        return issued[0], None


def _segment(obj: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj, separators=(",", ":")).encode()).rstrip(b"=").decode()


def _auth(state) -> OpenTextAuth:
    # Looked up per request, never captured: a reset drops per-service state.
    return state.per_service("opentext", lambda: OpenTextAuth(state))


def _jobs(state) -> JobStore:
    return state.per_service("opentext-jobs", JobStore)


def expire_tokens(state) -> None:
    auth = _auth(state)
    auth.tokens = {token: (client, 0.0) for token, (client, _) in auth.tokens.items()}


def _basic_credentials(header: str) -> tuple[str | None, str | None]:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None, None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None, None
    client_id, sep, secret = decoded.partition(":")
    return (client_id, secret) if sep else (client_id or None, None)


def _grant_type(raw: bytes, content_type: str) -> str | None:
    """The form body; a JSON object is read too, since OpenText's own collection mislabels the form."""
    text = raw.decode("utf-8", "replace")
    if content_type.startswith("application/json") and text.lstrip().startswith("{"):
        try:
            body = json.loads(text)
        except json.JSONDecodeError:
            body = None
        if isinstance(body, dict):
            return body.get("grant_type")
    values = parse_qs(text, keep_blank_values=True).get("grant_type")
    return values[-1] if values else None


# ---------- routes ----------
def auth_routes(state) -> list[Route]:
    async def token(request: Request) -> Response:
        tenant = request.path_params["tenant"]
        client_id, secret = _basic_credentials(request.headers.get("authorization", ""))
        auth = _auth(state)
        if not auth.token_limit.check(client_id or "-").allowed:
            return spike_arrest(f"{state.options.opentext_token_rate_per_min}pm")
        if client_id != CLIENT_ID:  # the gateway's API-key check comes first
            return fault(401, "Invalid ApiKey", "oauth.v2.InvalidApiKey")
        if secret != CLIENT_SECRET or tenant != TENANT_ID:
            return token_error(401, "invalid_client", "Bad client credentials")
        if _grant_type(await request.body(), request.headers.get("content-type", "")) != "client_credentials":
            return token_error(400, "unsupported_grant_type", "Unsupported grant type")
        access_token, ttl = auth.issue(client_id, tenant)
        return JSONResponse({"access_token": access_token, "token_type": "Bearer", "expires_in": ttl},
                            headers={"Cache-Control": "no-store"})

    return [Route("/tenants/{tenant}/oauth2/token", token, methods=["POST"]),
            Route("/{rest:path}", not_found, methods=ALL_METHODS)]


async def not_found(request: Request) -> Response:
    return service_error(404, "not_found", f"No resource for {request.method} {request.url.path}")


def messaging_endpoint(state, handler):
    """Bearer token, then the client's token bucket, then the handler (400s render as the service's)."""

    async def endpoint(request: Request) -> Response:
        auth = _auth(state)
        client_id, failure = auth.check(request)
        if failure:
            return failure
        if not auth.messaging_limit.check(client_id).allowed:
            return spike_arrest(f"{state.options.opentext_rate_per_s:g}ps")
        try:
            return await handler(request)
        except Invalid as exc:
            return service_error(400, "invalid_request", str(exc))

    return endpoint


def _write_entry(job_id: str, submission: Submission, submit_id: str | None, submitted_at: str) -> dict:
    entry = {"job_id": job_id, "channel": submission.channel, "submit_id": submit_id,
             "customer_reference": submission.customer_reference, "destinations": submission.destinations}
    if submission.subject is not None:
        entry["subject"] = submission.subject
    return {**entry, "text": submission.text, "submitted_at": submitted_at}


def messaging_routes(state) -> list[Route]:
    def submit(validate):
        async def handler(request: Request) -> Response:
            try:
                body = json.loads(await request.body())
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise Invalid("request body is not valid JSON") from None
            submission = validate(body)
            now = state.now()
            job = _jobs(state).create(submission.channel, now, submission.destinations,
                                      submission.customer_reference, submission.billing_code)
            # Recorded before answering: under a commit-then-drop fault the job exists though the reply is lost.
            state.record_write("opentext", "POST", CHANNEL_PATHS[submission.channel], 200,
                               _write_entry(job.job_id, submission, request.headers.get("x-mra-submitid"),
                                            stamp(now)))
            return JSONResponse({"job_id": job.job_id})

        return handler

    def status(channel: str):
        async def handler(request: Request) -> Response:
            job_id = request.query_params.get("job_id")
            job = _jobs(state).find(channel, job_id)
            if job is None:
                return service_error(404, "job_not_found", f"Job {job_id} not found")
            return JSONResponse(job.status(state.now(), state.options.opentext_delivery_delay_s))

        return handler

    wrap = lambda handler: messaging_endpoint(state, handler)  # noqa: E731
    routes = [Route(CHANNEL_PATHS["email"], wrap(submit(validate_email)), methods=["POST"]),
              Route(CHANNEL_PATHS["sms"], wrap(submit(validate_sms)), methods=["POST"])]
    for channel, path in CHANNEL_PATHS.items():  # the doc's `/status` and the mirror's `/status/`
        routes += [Route(f"{path}/status", wrap(status(channel)), methods=["GET"]),
                   Route(f"{path}/status/", wrap(status(channel)), methods=["GET"])]
    return [*routes, Route("/{rest:path}", not_found, methods=ALL_METHODS)]


AUTH_SERVICE = ServiceDef(prefix="opentext-auth", routes=auth_routes, error_renderer=error_renderer,
                          expire_tokens=expire_tokens)
SERVICE = ServiceDef(prefix="opentext", routes=messaging_routes, error_renderer=error_renderer,
                     expire_tokens=expire_tokens, redirect_trailing_slash=False)
