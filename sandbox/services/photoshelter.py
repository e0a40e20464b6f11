"""PhotoShelter PSAPI v3 emulation (photoshelter.md): sessions, the gallery walk, custom metadata, IPTC.

Shapes the contract marks inferred (error envelope, custom-metadata field names, the IPTC update
route) are implemented as written there; records are rendered from the world's `images` table page
by page with LIMIT/OFFSET, so three million images never sit in Python at once.
"""

from __future__ import annotations

import json
import secrets
import time
from datetime import datetime
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.ratelimit import FixedWindows, TokenBucket
from sandbox.services import ServiceDef

API_KEY, EMAIL, PASSWORD = "sandbox-ps-key", "dam@sandbox.example", "sandbox-ps-password"
ORG_ID, ORG_NAME = "O0000SANDBOX", "Sandbox Brand"
USER_ID = "U00000IaRrKjMObI"
DEFAULT_PER_PAGE = 100
KEYWORD_MAX = 64
IPTC_FIELDS = ("keyword", "caption", "credit", "title", "headline", "byline", "copyright", "city", "state", "country",
               "country_code", "instructions", "source", "job_identifier")
STORED_IPTC = ("keyword", "caption", "credit", "title")  # the world stores these; the rest read as ""
# (field id, field name, images column) in creation order, which is permanent (contract §4.4).
CUSTOM_FIELDS = (
    ("MF00000000000001", "SKU", "sku"),
    ("MF00000000000002", "Style Code", "style_code"),
    ("MF00000000000003", "Product Family", "product_family"),
    ("MF00000000000004", "Approval Status", "approval"),
    ("MF00000000000005", "Usage: E-commerce", "usage_ecommerce"),
    ("MF00000000000006", "Usage: Social", "usage_social"),
    ("MF00000000000007", "Usage: Print", "usage_print"),
    ("MF00000000000008", "Usage: Marketplaces", "usage_marketplaces"),
    ("MF00000000000009", "Licensed Market", "licensed_market"),
    ("MF00000000000010", "License Expiration Date", "license_expiration"),
)
IMAGE_COLUMNS = ("id, gallery_id, file_name, file_size, width, height, uploaded_at, updated_at, model_released, "
                 "property_released, keyword, caption, credit, title, sku, style_code, product_family, approval, "
                 "usage_ecommerce, usage_social, usage_print, usage_marketplaces, licensed_market, license_expiration")


def ok(data: dict, status: int = 200) -> JSONResponse:
    return JSONResponse({"status": "ok", "data": data}, status_code=status)


def fail(status: int, code: str, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"status": "error", "message": message, "code": code}, status_code=status, headers=headers)


def error_renderer(status: int) -> tuple[dict[str, str], bytes]:
    if status == 429:
        return {"Retry-After": "2"}, b'{"status":"error","message":"Rate limit exceeded","code":"RateLimitExceeded"}'
    if status == 200:  # the "status_error" fault: a 200 carrying an error envelope
        return {}, b'{"status":"error","message":"Internal error","code":"InternalError"}'
    if status == 503:
        return {}, b'{"status":"error","message":"Service temporarily unavailable","code":"ServiceUnavailable"}'
    return {}, json.dumps({"status": "error", "message": "Internal server error", "code": "InternalError"}).encode()


def gmt(value: datetime | None) -> str | None:
    return None if value is None else value.strftime("%Y-%m-%d %H:%M:%S GMT")


def tf(value: bool | None) -> str:
    return "t" if value else "f"


class Sessions:
    """Token sessions with an idle and a maximum lifetime; the org binding lives on the session."""

    def __init__(self, state):
        self.state = state
        self.sessions: dict[str, dict] = {}
        self._limiters: dict[tuple, object] = {}

    def limiter(self, kind: str):
        o = self.state.options
        key = (kind, o.photoshelter_rate_per_s if kind == "calls" else o.photoshelter_auth_rate_per_min)
        if key not in self._limiters:
            self._limiters[key] = TokenBucket(key[1]) if kind == "calls" else FixedWindows([(key[1], 60.0)])
        return self._limiters[key]

    def open(self) -> str:
        token = secrets.token_hex(16)
        now = time.monotonic()
        self.sessions[token] = {"created": now, "used": now, "org": None}
        return token

    def get(self, token: str | None) -> dict | None:
        session = self.sessions.get(token or "")
        if session is None:
            return None
        o, now = self.state.options, time.monotonic()
        if now - session["used"] > o.photoshelter_session_idle_ttl_s or \
                now - session["created"] > o.photoshelter_session_max_ttl_s:
            del self.sessions[token]  # expiry drops the org binding with the session
            return None
        return session


def _sessions(state) -> Sessions:
    return state.per_service("photoshelter", lambda: Sessions(state))


def expire_tokens(state) -> None:
    _sessions(state).sessions.clear()


async def _params(request: Request) -> dict[str, str]:
    """Form fields (the documented way) or a JSON body (some clients send one)."""
    raw = await request.body()
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            return {}
        return {k: str(v) for k, v in body.items()} if isinstance(body, dict) else {}
    return {k: v[-1] for k, v in parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True).items()}


def _extend(request: Request) -> dict:
    try:
        value = json.loads(request.query_params.get("extend") or "{}")
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def routes(state) -> list[Route]:
    sessions = _sessions(state)

    def endpoint(handler, *, member=True, org=True, auth_step=False):
        """API key, rate limits, then (for member calls) the session and its org binding."""

        async def wrapped(request: Request) -> Response:
            if request.headers.get("x-ps-api-key") != API_KEY:
                return fail(401, "InvalidApiKey", "Invalid API key")
            verdict = sessions.limiter("auth" if auth_step else "calls").check(API_KEY)
            if not verdict.allowed:
                return fail(429, "RateLimitExceeded", "Rate limit exceeded", {"Retry-After": "2"})
            if not member:
                return await handler(request, None)
            session = sessions.get(request.headers.get("x-ps-auth-token"))
            if session is None:
                return fail(401, "AuthenticationRequired", "Authentication required")
            if org and session["org"] is None:
                return fail(403, "OrganizationAuthRequired", "Organization authentication required")
            session["used"] = time.monotonic()
            return await handler(request, session)

        return wrapped

    async def authenticate(request: Request, _) -> Response:
        params = await _params(request)
        for name in ("email", "password"):
            if not params.get(name):
                return fail(400, "MissingParameter", f"Missing required parameter: {name}")
        if params["email"] != EMAIL or params["password"] != PASSWORD:
            return fail(401, "AuthenticationFailed", "Invalid email or password")
        return ok({"token": sessions.open(), "org": [{"id": ORG_ID, "name": ORG_NAME}]})

    async def org_authenticate(request: Request, session: dict) -> Response:
        if request.path_params["org_id"] != ORG_ID:
            return fail(403, "Forbidden", f"Not a member of organization {request.path_params['org_id']}")
        session["org"] = ORG_ID
        return ok({})

    async def logout(request: Request, session: dict) -> Response:
        sessions.sessions.pop(request.headers.get("x-ps-auth-token", ""), None)
        return ok({})

    async def children(request: Request, _) -> Response:
        parent = request.path_params["collection_id"]
        if parent != "root" and not state.con.execute("SELECT 1 FROM collections WHERE id = ?", [parent]).fetchone():
            return fail(404, "NotFound", "Collection not found")
        collections = state.con.execute("SELECT id, name, seq, created_at, modified_at FROM collections "
                                        "WHERE parent_id = ? ORDER BY seq", [parent]).fetchall()
        galleries = state.con.execute("SELECT id, name, seq, created_at, modified_at FROM galleries "
                                      "WHERE collection_id = ? ORDER BY seq", [parent]).fetchall()
        data: dict = {}
        if collections:  # an empty kind is omitted (inferred)
            data["Collection"] = [_container("collection_id", row) for row in collections]
        if galleries:
            data["Gallery"] = [_container("gallery_id", row) for row in galleries]
        return ok({"Children": data})

    async def gallery(request: Request, _) -> Response:
        row = state.con.execute("SELECT id, name, seq, created_at, modified_at FROM galleries WHERE id = ?",
                                [request.path_params["gallery_id"]]).fetchone()
        return ok({"Gallery": _container("gallery_id", row)}) if row else fail(404, "NotFound", "Gallery not found")

    async def gallery_images(request: Request, _) -> Response:
        gallery_id = request.path_params["gallery_id"]
        if not state.con.execute("SELECT 1 FROM galleries WHERE id = ?", [gallery_id]).fetchone():
            return fail(404, "NotFound", "Gallery not found")
        page, per_page = _paging(request, state.options.photoshelter_max_per_page)
        if 0 < state.options.photoshelter_fail_beyond_page < page:  # the real service's deep-paging flake
            return fail(500, "InternalError", "Internal server error")
        total = state.con.execute("SELECT count(*) FROM images WHERE gallery_id = ?", [gallery_id]).fetchone()[0]
        cursor = state.con.execute(f"SELECT {IMAGE_COLUMNS} FROM images WHERE gallery_id = ? ORDER BY seq "  # noqa: S608
                                   "LIMIT ? OFFSET ?", [gallery_id, per_page, (page - 1) * per_page])
        extend = _extend(request)
        base = str(request.base_url).rstrip("/")
        items = [_gallery_item(_row(cursor, row), extend, base) for row in cursor.fetchall()]
        return ok({"GalleryImage": items, "Paging": _paging_block(page, per_page, total)})

    def image_or_404(image_id: str) -> dict | None:
        cursor = state.con.execute(f"SELECT {IMAGE_COLUMNS} FROM images WHERE id = ?", [image_id])  # noqa: S608
        row = cursor.fetchone()
        return _row(cursor, row) if row else None

    async def image(request: Request, _) -> Response:
        record = image_or_404(request.path_params["image_id"])
        if record is None:
            return fail(404, "NotFound", "Image not found")
        body = {"Image": _image_full(record)}
        extend = _extend(request)
        if "Iptc" in extend:
            body["Image"]["Iptc"] = _iptc(record)
        if "ImageLink" in extend:
            body["ImageLink"] = _link(record["id"], str(request.base_url).rstrip("/"))
        if "CustomMetadata" in extend:
            body["CustomMetadata"] = _custom(record)
        return ok(body)

    async def custom(request: Request, _) -> Response:
        record = image_or_404(request.path_params["image_id"])
        return ok({"CustomMetadata": _custom(record)}) if record else fail(404, "NotFound", "Image not found")

    async def iptc(request: Request, _) -> Response:
        record = image_or_404(request.path_params["image_id"])
        return ok({"Iptc": _iptc(record)}) if record else fail(404, "NotFound", "Image not found")

    async def iptc_update(request: Request, _) -> Response:
        image_id = request.path_params["image_id"]
        path = f"/psapi/v3/mem/image/{image_id}/iptc/update"
        if request.method != "POST":
            return fail(405, "MethodNotAllowed", "Method not allowed")
        record = image_or_404(image_id)
        if record is None:
            return fail(404, "NotFound", "Image not found")
        params = await _params(request)
        unknown = sorted(set(params) - set(IPTC_FIELDS))
        if unknown:
            state.record_write("photoshelter", "POST", path, 400, params)
            return fail(400, "InvalidParameter", f"Unknown parameter: {unknown[0]}")
        if any(len(k.strip()) > KEYWORD_MAX for k in params.get("keyword", "").split(",")):
            state.record_write("photoshelter", "POST", path, 400, params)
            return fail(400, "InvalidParameter", "Keyword too long")
        changes = {k: v for k, v in params.items() if k in STORED_IPTC and (record.get(k) or "") != v}
        extra = _extra_iptc(state, image_id)
        extra_changes = {k: v for k, v in params.items() if k not in STORED_IPTC and extra.get(k, "") != v}
        if changes or extra_changes:  # `updated_at` moves only on a real change (inferred)
            sets = ", ".join(f"{k} = ?" for k in changes) + (", " if changes else "") + "updated_at = ?"
            state.con.execute(f"UPDATE images SET {sets} WHERE id = ?",  # noqa: S608 (names from IPTC_FIELDS)
                              [*changes.values(), state.now().replace(microsecond=0), image_id])
            extra.update(extra_changes)
        state.record_write("photoshelter", "POST", path, 200, params)
        return ok({"Iptc": _iptc(image_or_404(image_id), extra)})

    async def link(request: Request, _) -> Response:
        record = image_or_404(request.path_params["image_id"])
        if record is None:
            return fail(404, "NotFound", "Image not found")
        return ok({"ImageLink": _link(record["id"], str(request.base_url).rstrip("/"), auth=True)})

    async def search(request: Request, _) -> Response:
        try:
            terms = json.loads(request.query_params.get("terms") or "[]")
        except json.JSONDecodeError:
            return fail(400, "InvalidParameter", "Invalid parameter: terms")
        terms = [str(t).lower() for t in (terms if isinstance(terms, list) else [terms]) if str(t).strip()]
        page, per_page = _paging(request, state.options.photoshelter_max_per_page)
        # Covers file name, caption, title and keywords; never custom metadata (inferred).
        where = " AND ".join(["contains(lower(concat_ws(' ', file_name, caption, title, keyword)), ?)"] * len(terms))
        where = where or "TRUE"
        total = state.con.execute(f"SELECT count(*) FROM images WHERE {where}", terms).fetchone()[0]  # noqa: S608
        cursor = state.con.execute(f"SELECT {IMAGE_COLUMNS} FROM images WHERE {where} ORDER BY seq "  # noqa: S608
                                   "LIMIT ? OFFSET ?", [*terms, per_page, (page - 1) * per_page])
        base = str(request.base_url).rstrip("/")
        results = [{"image_id": r["id"], "Image": _image_full(r), "ImageLink": _link(r["id"], base)}
                   for r in (_row(cursor, row) for row in cursor.fetchall())]
        return ok({"Results": results, "Paging": _paging_block(page, per_page, total)})

    async def rendition(request: Request) -> Response:
        return Response(b"\xff\xd8\xff\xe0sandbox-rendition\xff\xd9", media_type="image/jpeg")

    async def not_found(request: Request, _) -> Response:
        return fail(404, "NotFound", "Not found")

    member = "/psapi/v3/mem"
    return [
        Route(f"{member}/authenticate", endpoint(authenticate, member=False, auth_step=True), methods=["POST"]),
        Route(f"{member}/authenticate/logout", endpoint(logout, org=False), methods=["GET"]),
        Route(f"{member}/organization/{{org_id}}/authenticate", endpoint(org_authenticate, org=False,
                                                                          auth_step=True), methods=["GET", "POST"]),
        Route(f"{member}/collection/{{collection_id}}/children", endpoint(children)),
        Route(f"{member}/gallery/{{gallery_id}}", endpoint(gallery)),
        Route(f"{member}/gallery/{{gallery_id}}/images", endpoint(gallery_images)),
        Route(f"{member}/image/search", endpoint(search)),
        Route(f"{member}/image/{{image_id}}", endpoint(image)),
        Route(f"{member}/image/{{image_id}}/custom", endpoint(custom)),
        Route(f"{member}/image/{{image_id}}/iptc", endpoint(iptc)),
        Route(f"{member}/image/{{image_id}}/iptc/update", endpoint(iptc_update), methods=["GET", "POST"]),
        Route(f"{member}/image/{{image_id}}/link", endpoint(link)),
        Route("/img-get2/{image_id}/{spec}", rendition),
        Route("/{rest:path}", endpoint(not_found, member=False), methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
    ]


def _row(cursor, row) -> dict:
    return dict(zip([d[0] for d in cursor.description], row, strict=True))


def _container(id_key: str, row) -> dict:
    ident, name, seq, created, modified = row
    return {id_key: ident, "name": name, "description": "", "f_list": "f", "mode": "private",
            "effective_mode": "private", "display_order": str(seq), "access_inherit": "t",
            "created_at": gmt(created), "modified_at": gmt(modified)}


def _paging(request: Request, max_per_page: int) -> tuple[int, int]:
    try:
        page = max(1, int(request.query_params.get("page", 1)))
        per_page = max(1, int(request.query_params.get("per_page", DEFAULT_PER_PAGE)))
    except ValueError:
        page, per_page = 1, DEFAULT_PER_PAGE
    return page, min(per_page, max_per_page)  # clamped, not refused (inferred)


def _paging_block(page: int, per_page: int, total: int) -> dict:
    pages = max(1, -(-total // per_page))
    block = {"page": str(page), "per_page": str(per_page), "total": str(total), "pages": str(pages)}
    if page > 1:
        block["prev"] = str(page - 1)
    if page < pages:  # the last page has no `next` (code)
        block["next"] = str(page + 1)
    return block


def _image_basic(r: dict) -> dict:
    return {"image_id": r["id"], "gallery_id": r["gallery_id"], "file_name": r["file_name"],
            "file_size": str(r["file_size"]), "width": str(r["width"]), "height": str(r["height"]),
            "updated_at": gmt(r["updated_at"]), "uploaded_at": gmt(r["uploaded_at"]),
            "model_released": tf(r["model_released"]), "property_released": tf(r["property_released"])}


def _image_full(r: dict) -> dict:
    return {**_image_basic(r), "owner_id": USER_ID, "organization_id": ORG_ID, "creator_id": USER_ID,
            "photographer_id": USER_ID, "screen_height": "1200", "screen_width": "960", "screen_height_max": "1600",
            "screen_width_max": "1280", "thumb_height": "160", "thumb_width": "128", "focal_point_x": "50",
            "focal_point_y": "50", "stat_show": "t", "f_searchable": "t", "rating": "0", "flagged": "f"}


def _iptc(r: dict, extra: dict | None = None) -> dict:
    iptc = {name: "" for name in IPTC_FIELDS}
    iptc.update({name: r.get(name) or "" for name in STORED_IPTC})
    iptc["copyright"] = ORG_NAME
    iptc.update(extra or {})
    return iptc


def _extra_iptc(state, image_id: str) -> dict:
    """IPTC fields the world table does not store, kept per image once written."""
    return state.per_service("photoshelter-iptc", dict).setdefault(image_id, {})


def _custom(r: dict) -> list[dict]:
    return [{"field_id": fid, "field_name": name, "tag": None if r.get(col) in (None, "") else str(r[col])}
            for fid, name, col in CUSTOM_FIELDS]


def _link(image_id: str, base: str, auth: bool = False) -> dict:
    root = f"{base}/photoshelter/img-get2/{image_id}/"
    link = {"link": f"{root}fit=2000x2000", "base": root}
    if auth:
        link["auth_link"] = f"{root}fit=2000x2000?auth={secrets.token_hex(8)}"
    return link


def _gallery_item(r: dict, extend: dict, base: str) -> dict:
    item: dict = {"image_id": r["id"], "f_visible": "t"}
    if "Image" in extend:
        item["Image"] = _image_basic(r)
        if "Iptc" in extend:
            item["Image"]["Iptc"] = _iptc(r)
    if "ImageLink" in extend:
        item["ImageLink"] = _link(r["id"], base)
    if "CustomMetadata" in extend:
        item["CustomMetadata"] = _custom(r)
    return item


SERVICE = ServiceDef(prefix="photoshelter", routes=routes, error_renderer=error_renderer,
                     expire_tokens=expire_tokens)
