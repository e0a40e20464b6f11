"""What every part of the Graph Planner emulation shares (contracts/planner.md): the sandbox tenant,
ids, §4.8 etags, server times, caller identities and the §6 error bodies.

Every guess the contract marks *inferred* about these shapes lives here, so it is easy to correct.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import time
import uuid
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import Response

TENANT_ID, CLIENT_ID, CLIENT_SECRET = "sandbox-tenant", "sandbox-client", "sandbox-secret"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
APP_ROLES = ["Tasks.ReadWrite.All"]
PLAN_ID = "sandboxPlanAAAAAAAAAAAAAAAAA"

CONTENT_TYPE = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"
ID_RE = re.compile(r"^[A-Za-z0-9_-]{28}$")
GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

# §4.8: the version prefixes of the three resource kinds.
TASK, DETAILS, BUCKET = "1-Task  ", "1-TaskDetails ", "1-Bucket"

# Messages (§4.4; "seen" unless marked inferred).
NO_IF_MATCH = "The If-Match header must be specified for this kind of request."
STAR_IF_MATCH = "The given key was not present in the dictionary."
FOREIGN_ETAG = "The If-Match header contains an invalid value."
STALE_ETAG = "The etag in the If-Match header does not match the current version of the resource."  # inferred
NOT_FOUND = "The requested item is not found."
NO_QUALIFIED_NAME = "The request is invalid:\nValue cannot be null.\nParameter name: qualifiedName"
BAD_JSON = ("Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of "
            "valid JSON format.")  # inferred (the Graph gateway's text)


class GraphError(Exception):
    """Answered as a §6 Graph error body. Planner's `code` is often empty."""

    def __init__(self, status: int, message: str, code: str = "", headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}


def bad_request(message: str) -> GraphError:
    return GraphError(400, message)


def not_found() -> GraphError:
    return GraphError(404, NOT_FOUND)


# ---------- ids and times ----------
def new_id(seed: int, kind: str, number: int) -> str:
    """A 28-character service id, the same for the same world and creation number."""
    digest = hashlib.sha256(f"{seed}:{kind}:{number}".encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()[:28]


def check_id(value: str) -> str:
    """Malformed ids are a 400 (inferred text), unknown well-formed ones a 404."""
    if not ID_RE.match(value):
        raise bad_request(f"The request is invalid:\nThe id '{value}' is not in the correct format.")
    return value


def stamp7(moment: datetime) -> str:
    """Server-set times: UTC with 7 fractional digits (.NET ticks) and `Z`."""
    tick = time.perf_counter_ns() // 100 % 10
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}{tick}Z"


def parse_datetime(value: object) -> datetime | None:
    """A client-sent DateTimeOffset: ISO 8601 with `Z` or an offset. None if it is not one."""
    if not isinstance(value, str) or not re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d{1,7})?)?(Z|[+-]\d\d:\d\d)$",
                                                  value):
        return None
    trimmed = re.sub(r"(\.\d{6})\d", r"\1", value.replace("Z", "+00:00"))
    try:
        return datetime.fromisoformat(trimmed)
    except ValueError:
        return None


def app_identity(app_id: str) -> dict:
    return {"application": {"displayName": None, "id": app_id}}


def user_identity(user_id: str) -> dict:
    return {"user": {"displayName": None, "id": user_id}}


# ---------- etags (§4.8) ----------
def version(prefix: str, n: int) -> str:
    """prefix + 4·n in base 32 with digits `@`..`_`, left-padded with `@` to 16 characters."""
    value, digits = 4 * n, ""
    while value:
        digits = chr(64 + value % 32) + digits
        value //= 32
    return prefix + digits.rjust(16, "@")


def etag(prefix: str, n: int) -> str:
    return 'W/"' + base64.b64encode(f"'{version(prefix, n)}'".encode()).decode() + '"'


def require_if_match(request: Request) -> str:
    """The If-Match value of a PATCH or DELETE: none, or `*`, is a 400 (§4.4)."""
    value = (request.headers.get("if-match") or "").strip()
    if not value:
        raise bad_request(NO_IF_MATCH)
    if value == "*":
        raise bad_request(STAR_IF_MATCH)
    return value


def compare_etag(given: str, prefix: str, n: int) -> None:
    """The current etag passes; a stale one of this resource kind, or anything else, is a 412."""
    if given == etag(prefix, n):
        return
    decoded = _decode_etag(given)
    if decoded is not None and decoded.startswith(prefix) and len(decoded) == len(prefix) + 16:
        raise GraphError(412, STALE_ETAG)
    raise GraphError(412, FOREIGN_ETAG)


def _decode_etag(value: str) -> str | None:
    match = re.match(r'^W/"([A-Za-z0-9+/=]+)"$', value)
    if not match:
        return None
    try:
        text = base64.b64decode(match.group(1), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == "'" else None


# ---------- responses ----------
def request_ids(request: Request | None) -> tuple[str, str]:
    """(request-id, client-request-id): the client's id is echoed, else it is the request's own."""
    request_id = str(uuid.uuid4())
    client_id = request.headers.get("client-request-id") if request is not None else None
    return request_id, client_id or request_id


def graph_json(request: Request, body: dict, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    request_id, client_request_id = request_ids(request)
    return Response(json.dumps(body, separators=(",", ":")), status_code=status, media_type=CONTENT_TYPE,
                    headers={"request-id": request_id, "client-request-id": client_request_id, **(headers or {})})


def graph_empty(request: Request, status: int = 204) -> Response:
    request_id, client_request_id = request_ids(request)
    return Response(status_code=status, headers={"request-id": request_id, "client-request-id": client_request_id})


def error_body(code: str, message: str, request_id: str, client_request_id: str, extra: dict | None = None) -> dict:
    date = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    inner = {**(extra or {}), "date": date, "request-id": request_id, "client-request-id": client_request_id}
    return {"error": {"code": code, "message": message, "innerError": inner}}


def graph_error(request: Request | None, exc: GraphError) -> Response:
    request_id, client_request_id = request_ids(request)
    body = error_body(exc.code, exc.message, request_id, client_request_id)
    if exc.status == 429:  # §5: the throttling body carries its own innerError fields
        body = throttled_body(request_id)
    return Response(json.dumps(body, separators=(",", ":")), status_code=exc.status, media_type=CONTENT_TYPE,
                    headers={"request-id": request_id, "client-request-id": client_request_id, **exc.headers})


def throttled_body(request_id: str) -> dict:
    date = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return {"error": {"code": "TooManyRequests", "innerError": {"code": "429", "date": date, "message": "Please retry after",
                                                                "request-id": request_id, "status": "429"},
                      "message": "Please retry again later."}}


# Injected faults (sandbox/faults.py) in Graph's own shape (§6, inferred): 503 asks for 5 s, an injected
# 429 for a fractional wait as real throttling does.
INJECTED_RETRY_AFTER_S = "0.512"


def error_renderer(status: int) -> tuple[dict[str, str], bytes]:
    request_id = str(uuid.uuid4())
    headers = {"request-id": request_id, "client-request-id": request_id}
    if status == 429:
        return {**headers, "Retry-After": INJECTED_RETRY_AFTER_S}, json.dumps(throttled_body(request_id)).encode()
    if status == 503:
        body = error_body("serviceNotAvailable", "Service unavailable", request_id, request_id)
        return {**headers, "Retry-After": "5"}, json.dumps(body).encode()
    body = error_body("generalException", "General exception while processing", request_id, request_id)
    return headers, json.dumps(body).encode()
