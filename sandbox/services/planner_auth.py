"""Microsoft identity platform emulation (contracts/planner.md §3): the client-credentials token
endpoint, its flat AAD error bodies, and the bearer check Graph applies to every call.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.services.planner_common import (
    APP_ROLES,
    CLIENT_ID,
    CLIENT_SECRET,
    GRAPH_SCOPE,
    TENANT_ID,
    GraphError,
)

_SIGNING_KEY = b"sandbox-msauth-signing-key"
# Graph's own app id: the audience named in WWW-Authenticate challenges.
_GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
_CHALLENGE = (f'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", '
              f'client_id="{_GRAPH_APP_ID}"')


class MsAuth:
    """Issued tokens: token -> (app id, exp in epoch seconds). There are no refresh tokens."""

    def __init__(self, state):
        self.state = state
        self.tokens: dict[str, tuple[str, float]] = {}

    def issue(self, app_id: str) -> tuple[str, int]:
        ttl = self.state.options.msauth_token_ttl_s
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256"}
        claims = {"aud": "https://graph.microsoft.com", "iss": f"https://sts.windows.net/{TENANT_ID}/", "iat": now,
                  "nbf": now, "exp": now + ttl, "tid": TENANT_ID, "appid": app_id, "roles": APP_ROLES,
                  "uti": uuid.uuid4().hex}
        segments = [_b64(header), _b64(claims)]
        signature = hmac.new(_SIGNING_KEY, ".".join(segments).encode(), hashlib.sha256).digest()
        token = ".".join([*segments, base64.urlsafe_b64encode(signature).rstrip(b"=").decode()])
        self.tokens[token] = (app_id, now + ttl)
        return token, ttl

    def caller(self, request: Request) -> str:
        """The calling app's id, or the Graph 401 for a missing, unknown or expired token."""
        scheme, _, token = request.headers.get("authorization", "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise _unauthorized("Access token is empty.")
        issued = self.tokens.get(token)
        if issued is None:
            raise _unauthorized("CompactToken parsing failed with error code: 80049217")
        if time.time() >= issued[1]:
            raise _unauthorized("Lifetime validation failed, the token is expired.")
        return issued[0]


def _unauthorized(message: str) -> GraphError:
    return GraphError(401, message, code="InvalidAuthenticationToken", headers={"WWW-Authenticate": _CHALLENGE})


def _b64(obj: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj, separators=(",", ":")).encode()).rstrip(b"=").decode()


def ms_auth(state) -> MsAuth:
    # Looked up per request, never captured: a reset or world rebuild drops per-service state.
    return state.per_service("msauth", lambda: MsAuth(state))


def expire_tokens(state) -> None:
    auth = ms_auth(state)
    auth.tokens = {token: (app, 0.0) for token, (app, _) in auth.tokens.items()}


def aad_error(state, status: int, error: str, code: int, text: str) -> Response:
    """The flat AAD body (§3): the description carries trace, correlation id and timestamp lines."""
    trace_id, correlation_id = str(uuid.uuid4()), str(uuid.uuid4())
    timestamp = state.now().strftime("%Y-%m-%d %H:%M:%SZ")
    description = (f"AADSTS{code}: {text}\r\nTrace ID: {trace_id}\r\nCorrelation ID: {correlation_id}\r\n"
                   f"Timestamp: {timestamp}")
    body = {"error": error, "error_description": description, "error_codes": [code], "timestamp": timestamp,
            "trace_id": trace_id, "correlation_id": correlation_id,
            "error_uri": f"https://login.microsoftonline.com/error?code={code}"}
    return JSONResponse(body, status_code=status, headers={"x-ms-request-id": trace_id})


def auth_error_renderer(status: int) -> tuple[dict[str, str], bytes]:
    """Injected faults on the token host, in its flat shape (inferred)."""
    trace_id = str(uuid.uuid4())
    body = {"error": "temporarily_unavailable", "error_description": f"AADSTS50196: injected {status}",
            "error_codes": [50196], "trace_id": trace_id, "correlation_id": trace_id}
    return {"x-ms-request-id": trace_id}, json.dumps(body).encode()


def token_routes(state) -> list[Route]:
    async def token(request: Request) -> Response:
        tenant = request.path_params["tenant"]
        if tenant != TENANT_ID:
            return aad_error(state, 400, "invalid_request", 90002, f"Tenant '{tenant}' not found.")
        try:
            form = {k: v[0] for k, v in parse_qs((await request.body()).decode(), keep_blank_values=True).items()}
        except UnicodeDecodeError:
            form = {}
        for name in ("grant_type", "client_id"):
            if not form.get(name):
                return aad_error(state, 400, "invalid_request", 900144,
                                 f"The request body must contain the following parameter: '{name}'.")
        if form["grant_type"] != "client_credentials":
            return aad_error(state, 400, "unsupported_grant_type", 70003,
                             f"The app requested an unsupported grant type '{form['grant_type']}'.")
        client_id = form["client_id"]
        if client_id != CLIENT_ID:
            return aad_error(state, 400, "unauthorized_client", 700016,
                             f"Application with identifier '{client_id}' was not found in the directory '{TENANT_ID}'.")
        scope = form.get("scope", "")
        if not scope:
            return aad_error(state, 400, "invalid_request", 900144,
                             "The request body must contain the following parameter: 'scope'.")
        if not scope.endswith("/.default"):
            return aad_error(state, 400, "invalid_scope", 1002012,
                             f"The provided value for scope {scope} is not valid. Client credential flows must have a "
                             "scope value with /.default suffixed to the resource identifier (application ID URI).")
        if scope != GRAPH_SCOPE:  # inferred: another resource is unknown in the sandbox tenant
            resource = scope.removesuffix("/.default")
            return aad_error(state, 400, "invalid_resource", 500011,
                             f"The resource principal named {resource} was not found in the tenant named {TENANT_ID}.")
        if not form.get("client_secret"):
            return aad_error(state, 401, "invalid_client", 7000216,
                             "'client_assertion', 'client_secret' or 'request' is required for the "
                             "'client_credentials' grant type.")
        if not hmac.compare_digest(form["client_secret"].encode(), CLIENT_SECRET.encode()):
            return aad_error(state, 401, "invalid_client", 7000215,
                             "Invalid client secret provided. Ensure the secret being sent in the request is the client "
                             f"secret value, not the client secret ID, for a secret added to app '{client_id}'.")
        access_token, ttl = ms_auth(state).issue(client_id)
        return JSONResponse({"token_type": "Bearer", "expires_in": ttl, "ext_expires_in": ttl,
                             "access_token": access_token}, headers={"x-ms-request-id": str(uuid.uuid4())})

    return [Route("/{tenant}/oauth2/v2.0/token", token, methods=["POST"])]
