"""PhotoShelter PSAPI v3 emulation (photoshelter.md): sessions, the gallery walk, custom metadata, IPTC.

Shapes the contract marks inferred (error envelope, custom-metadata field names, the IPTC update
route) are implemented as written there and rendered in `photoshelter_render`. Records come from
the world's `images` table page by page with LIMIT/OFFSET, so three million images never sit in
Python at once.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox.ratelimit import FixedWindows, TokenBucket
from sandbox.services import ServiceDef
from sandbox.services.photoshelter_render import (
    EXTRA_IPTC,
    EXTRA_IPTC_TABLE,
    IMAGE_FROM,
    IMAGE_SELECT,
    IPTC_FIELDS,
    KEYWORD_MAX,
    ORG_ID,
    ORG_NAME,
    STORED_IPTC,
    BadParameter,
    container,
    custom_record,
    error_renderer,
    extended_image,
    fail,
    gallery_item,
    iptc_record,
    link_record,
    ok,
    paging_block,
    parse_extend,
    parse_json_param,
    parse_paging,
    search_item,
    select,
    split_keywords,
)

API_KEY, EMAIL, PASSWORD = "sandbox-ps-key", "dam@sandbox.example", "sandbox-ps-password"
MEMBER = "/psapi/v3/mem"
ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00sandbox-rendition\xff\xd9"


class Sessions:
    """Token sessions with an idle and a maximum lifetime; the org binding lives on the session,
    so it is lost with it (the client must redo both steps)."""

    def __init__(self, state):
        self.state = state
        self.sessions: dict[str, dict] = {}
        self._limiters: dict[tuple, TokenBucket | FixedWindows] = {}

    def limiter(self, auth_step: bool) -> TokenBucket | FixedWindows:
        # Keyed by the configured rate, so `POST /_sandbox/config` takes effect at once.
        o = self.state.options
        key = ("auth", o.photoshelter_auth_rate_per_min) if auth_step else ("calls", o.photoshelter_rate_per_s)
        if key not in self._limiters:
            self._limiters[key] = FixedWindows([(key[1], 60.0)]) if auth_step else TokenBucket(key[1])
        return self._limiters[key]

    def open(self) -> str:
        for token in [t for t, s in self.sessions.items() if self._expired(s, time.monotonic())]:
            del self.sessions[token]  # logins are rate limited, so this sweep stays cheap
        token = secrets.token_hex(16)
        now = time.monotonic()
        self.sessions[token] = {"created": now, "used": now, "org": None}
        return token

    def get(self, token: str | None) -> dict | None:
        session = self.sessions.get(token or "")
        if session is not None and self._expired(session, time.monotonic()):
            del self.sessions[token]
            return None
        return session

    def _expired(self, session: dict, now: float) -> bool:
        o = self.state.options
        return (now - session["used"] >= o.photoshelter_session_idle_ttl_s
                or now - session["created"] >= o.photoshelter_session_max_ttl_s)


def _sessions(state) -> Sessions:
    # Looked up per request, never captured: a reset or world rebuild drops per-service state.
    return state.per_service("photoshelter", lambda: Sessions(state))


def expire_tokens(state) -> None:
    _sessions(state).sessions.clear()


def _extra_iptc_table(state) -> None:
    """IPTC fields the world does not store live in their own table, created once per world."""
    def create() -> bool:
        state.con.execute(EXTRA_IPTC_TABLE)
        return True

    state.per_service("photoshelter-iptc-table", create)


async def _form(request: Request) -> dict[str, str]:
    """Form fields (the documented way) or a JSON body (some clients send one)."""
    raw = await request.body()
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            raise BadParameter("Invalid JSON body") from None
        if not isinstance(body, dict):
            raise BadParameter("Invalid JSON body")
        return {k: v if isinstance(v, str) else json.dumps(v) for k, v in body.items()}
    return {k: v[-1] for k, v in parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True).items()}


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def endpoint(state, handler, methods=("GET",), *, member=True, org=True, auth_step=False):
    """API key, rate limit, method, then (member calls) the session and its org binding."""

    async def wrapped(request: Request) -> Response:
        if request.headers.get("x-ps-api-key") != API_KEY:
            return fail(401, "InvalidApiKey", "Invalid API key")
        sessions = _sessions(state)
        if not sessions.limiter(auth_step).check(API_KEY).allowed:  # a refused request does not count
            return fail(429, "RateLimitExceeded", "Rate limit exceeded", {"Retry-After": "2"})
        if request.method not in methods:
            return fail(405, "MethodNotAllowed", "Method not allowed")
        session = None
        if member:
            session = sessions.get(request.headers.get("x-ps-auth-token"))
            if session is None:
                return fail(401, "AuthenticationRequired", "Authentication required")
            if org and session["org"] is None:
                return fail(403, "OrganizationAuthRequired", "Organization authentication required")
        try:
            response = await handler(request, session)
        except BadParameter as exc:
            response = fail(400, "InvalidParameter", str(exc))
        if session is not None and response.status_code < 400:
            session["used"] = time.monotonic()  # each successful call resets the idle clock
        return response

    return wrapped


def routes(state) -> list[Route]:
    def con():
        return state.con  # never captured: the world's connection is replaced on reset

    def fetch_images(where: str, args: list, tail: str = "") -> list[dict]:
        _extra_iptc_table(state)
        cursor = con().execute(f"SELECT {IMAGE_SELECT} FROM {IMAGE_FROM} WHERE {where} {tail}", args)  # noqa: S608
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def one_image(image_id: str) -> dict | None:
        rows = fetch_images("i.id = ?", [image_id])
        return rows[0] if rows else None

    # ---- auth ----
    async def authenticate(request: Request, _) -> Response:
        params = await _form(request)
        for name in ("email", "password"):
            if not params.get(name):
                return fail(400, "MissingParameter", f"Missing required parameter: {name}")
        if params["email"] != EMAIL or params["password"] != PASSWORD:
            return fail(401, "AuthenticationFailed", "Invalid email or password")
        return ok({"token": _sessions(state).open(), "org": [{"id": ORG_ID, "name": ORG_NAME}]})

    async def org_authenticate(request: Request, session: dict) -> Response:
        org_id = request.path_params["org_id"]
        if org_id != ORG_ID:
            return fail(403, "Forbidden", f"Not a member of organization {org_id}")
        session["org"] = ORG_ID  # one org at a time
        return ok({})

    async def logout(request: Request, _) -> Response:
        _sessions(state).sessions.pop(request.headers.get("x-ps-auth-token", ""), None)
        return ok({})

    # ---- collections and galleries ----
    async def children(request: Request, _) -> Response:
        parent = request.path_params["collection_id"]
        if parent != "root" and not con().execute("SELECT 1 FROM collections WHERE id = ?", [parent]).fetchone():
            return fail(404, "NotFound", "Collection not found")
        extend = parse_extend(request.query_params.get("extend"))
        data: dict = {}
        for kind, table, key, column in (("Collection", "collections", "collection_id", "parent_id"),
                                         ("Gallery", "galleries", "gallery_id", "collection_id")):
            rows = con().execute(f"SELECT id, name, seq, created_at, modified_at FROM {table} "  # noqa: S608
                                 f"WHERE {column} = ? ORDER BY seq", [parent]).fetchall()
            if rows:  # an empty kind is omitted (inferred)
                fields = extend.get(kind, {}).get("fields")
                data[kind] = [select(container(key, row), fields) for row in rows]
        return ok({"Children": data})

    async def gallery(request: Request, _) -> Response:
        row = con().execute("SELECT id, name, seq, created_at, modified_at FROM galleries WHERE id = ?",
                            [request.path_params["gallery_id"]]).fetchone()
        if row is None:
            return fail(404, "NotFound", "Gallery not found")
        return ok({"Gallery": select(container("gallery_id", row), request.query_params.get("fields"))})

    async def gallery_images(request: Request, _) -> Response:
        gallery_id = request.path_params["gallery_id"]
        if not con().execute("SELECT 1 FROM galleries WHERE id = ?", [gallery_id]).fetchone():
            return fail(404, "NotFound", "Gallery not found")
        query = request.query_params
        page, per_page = parse_paging(query, state.options.photoshelter_max_per_page)
        extend = parse_extend(query.get("extend"))
        if 0 < state.options.photoshelter_fail_beyond_page < page:  # the real service's deep-paging flake
            return fail(500, "InternalError", "Internal server error")
        total = con().execute("SELECT count(*) FROM images WHERE gallery_id = ?", [gallery_id]).fetchone()[0]
        rows = fetch_images("i.gallery_id = ?", [gallery_id, per_page, (page - 1) * per_page],
                            "ORDER BY i.seq LIMIT ? OFFSET ?")
        base = _base_url(request)
        return ok({"GalleryImage": [gallery_item(r, extend, base, query.get("fields")) for r in rows],
                   "Paging": paging_block(page, per_page, total)})

    # ---- one image ----
    async def image(request: Request, _) -> Response:
        record = one_image(request.path_params["image_id"])
        if record is None:
            return fail(404, "NotFound", "Image not found")
        extend = parse_extend(request.query_params.get("extend"))
        return ok({"Image": extended_image(record, extend, _base_url(request), request.query_params.get("fields"))})

    async def custom(request: Request, _) -> Response:
        record = one_image(request.path_params["image_id"])
        return ok({"CustomMetadata": custom_record(record)}) if record else fail(404, "NotFound", "Image not found")

    async def iptc(request: Request, _) -> Response:
        record = one_image(request.path_params["image_id"])
        return ok({"Iptc": iptc_record(record)}) if record else fail(404, "NotFound", "Image not found")

    async def iptc_update(request: Request, _) -> Response:
        image_id = request.path_params["image_id"]
        path = f"{MEMBER}/image/{image_id}/iptc/update"
        params = await _form(request)
        status, reply = apply_iptc_update(image_id, params)
        state.record_write("photoshelter", "POST", path, status, params)  # every write, refused ones too
        return reply

    def apply_iptc_update(image_id: str, params: dict[str, str]) -> tuple[int, Response]:
        record = one_image(image_id)
        if record is None:
            return 404, fail(404, "NotFound", "Image not found")
        unknown = [name for name in params if name not in IPTC_FIELDS]
        if unknown:
            return 400, fail(400, "InvalidParameter", f"Unknown parameter: {unknown[0]}")
        keywords = split_keywords(params.get("keyword"))
        if any(len(k) > KEYWORD_MAX for k in keywords):
            return 400, fail(400, "InvalidParameter", "Keyword too long")
        current = iptc_record(record)
        changes = {k: v for k, v in params.items() if k != "keyword" and current[k] != v}
        # `keyword` replaces the whole set; the same set in another order or spacing is no change.
        if "keyword" in params and set(keywords) != set(split_keywords(current["keyword"])):
            changes["keyword"] = ",".join(keywords)
        if changes:  # `updated_at` moves only on a real change (inferred)
            write_iptc(image_id, changes)
        return 200, ok({"Iptc": iptc_record(one_image(image_id))})

    def write_iptc(image_id: str, changes: dict[str, str]) -> None:
        stored = {k: v for k, v in changes.items() if k in STORED_IPTC}
        sets = "".join(f"{k} = ?, " for k in stored)  # names come from STORED_IPTC, never the request
        con().execute(f"UPDATE images SET {sets}updated_at = ? WHERE id = ?",  # noqa: S608
                      [*stored.values(), state.now().replace(microsecond=0), image_id])
        extra = {k: v for k, v in changes.items() if k in EXTRA_IPTC}
        if extra:
            row = con().execute(f"SELECT {', '.join(EXTRA_IPTC)} FROM photoshelter_iptc WHERE image_id = ?",  # noqa: S608
                                [image_id]).fetchone()
            merged = {**dict(zip(EXTRA_IPTC, row or [None] * len(EXTRA_IPTC), strict=True)), **extra}
            con().execute(f"INSERT OR REPLACE INTO photoshelter_iptc VALUES (?{', ?' * len(EXTRA_IPTC)})",  # noqa: S608
                          [image_id, *(merged[f] for f in EXTRA_IPTC)])

    async def link(request: Request, _) -> Response:
        record = one_image(request.path_params["image_id"])
        if record is None:
            return fail(404, "NotFound", "Image not found")
        return ok({"ImageLink": link_record(record["id"], _base_url(request), dict(request.query_params))})

    async def search(request: Request, _) -> Response:
        terms = parse_json_param(request.query_params.get("terms"), "terms", [])
        if not isinstance(terms, list):
            terms = [terms]
        terms = [str(t).strip().lower() for t in terms if str(t).strip()]
        page, per_page = parse_paging(request.query_params, state.options.photoshelter_max_per_page)
        # File name, caption, title, keywords, city, state, country; never custom metadata (inferred).
        # Every term must match on word boundaries; `contains` first, as it is far cheaper than a regex.
        text = "lower(concat_ws(' ', i.file_name, i.caption, i.title, i.keyword, x.city, x.state, x.country))"
        clause = f"(contains({text}, ?) AND regexp_matches({text}, ?))"
        where = " AND ".join([clause] * len(terms)) or "TRUE"
        args = [a for t in terms for a in (t, rf"(^|[^a-z0-9]){re.escape(t)}($|[^a-z0-9])")]
        _extra_iptc_table(state)
        total = con().execute(f"SELECT count(*) FROM {IMAGE_FROM} WHERE {where}", args).fetchone()[0]  # noqa: S608
        rows = fetch_images(where, [*args, per_page, (page - 1) * per_page], "ORDER BY i.seq LIMIT ? OFFSET ?")
        extend = parse_extend(request.query_params.get("extend"))
        base = _base_url(request)
        return ok({"Results": [search_item(r, extend, base) for r in rows],
                   "Paging": paging_block(page, per_page, total)})

    # ---- the rendition host (m.psecn.photoshelter.com in reality: no API key, like a CDN) ----
    async def rendition(request: Request) -> Response:
        if not con().execute("SELECT 1 FROM images WHERE id = ?", [request.path_params["image_id"]]).fetchone():
            return fail(404, "NotFound", "Image not found")
        return Response(JPEG, media_type="image/jpeg")

    async def not_found(request: Request, _) -> Response:
        return fail(404, "NotFound", "Not found")

    def r(path: str, handler, methods=("GET",), **flags) -> Route:
        # Every route takes every method, so a wrong one gets the v3 405 body, not Starlette's text.
        return Route(path, endpoint(state, handler, methods, **flags), methods=ALL_METHODS)

    return [
        r(f"{MEMBER}/authenticate", authenticate, ("POST",), member=False, auth_step=True),
        r(f"{MEMBER}/authenticate/logout", logout, ("GET", "POST"), org=False),
        r(f"{MEMBER}/organization/{{org_id}}/authenticate", org_authenticate, ("GET", "POST"), org=False,
          auth_step=True),
        r(f"{MEMBER}/collection/{{collection_id}}/children", children),
        r(f"{MEMBER}/gallery/{{gallery_id}}", gallery),
        r(f"{MEMBER}/gallery/{{gallery_id}}/images", gallery_images),
        r(f"{MEMBER}/image/search", search),
        r(f"{MEMBER}/image/{{image_id}}", image),
        r(f"{MEMBER}/image/{{image_id}}/custom", custom),
        r(f"{MEMBER}/image/{{image_id}}/iptc", iptc),
        r(f"{MEMBER}/image/{{image_id}}/iptc/update", iptc_update, ("POST",)),
        r(f"{MEMBER}/image/{{image_id}}/link", link),
        Route("/img-get2/{image_id}/{spec}", rendition, methods=["GET", "HEAD"]),
        r("/{rest:path}", not_found, tuple(ALL_METHODS), member=False),
    ]


SERVICE = ServiceDef(prefix="photoshelter", routes=routes, error_renderer=error_renderer,
                     expire_tokens=expire_tokens)
