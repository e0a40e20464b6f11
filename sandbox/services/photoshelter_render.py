"""PhotoShelter PSAPI v3 record shapes (photoshelter.md §4): rows of the world rendered as the API sends them.

Kept apart from the routes so every shape the contract marks inferred (field names, where an
`extend` lands, paging keys) sits in one place and can be corrected there.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime

from starlette.responses import JSONResponse

ORG_ID, ORG_NAME = "O0000SANDBOX", "Sandbox Brand"
USER_ID = "U00000IaRrKjMObI"
DEFAULT_PER_PAGE = 100
KEYWORD_MAX = 64
IPTC_FIELDS = ("keyword", "caption", "credit", "title", "headline", "byline", "copyright", "city", "state", "country",
               "country_code", "instructions", "source", "job_identifier")
STORED_IPTC = ("keyword", "caption", "credit", "title")  # columns of the world's `images` table
EXTRA_IPTC = tuple(f for f in IPTC_FIELDS if f not in STORED_IPTC)  # kept in `photoshelter_iptc` once written
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
# The images columns every rendering needs, plus the IPTC fields the world does not store.
IMAGE_SELECT = ("i.id, i.gallery_id, i.file_name, i.file_size, i.width, i.height, i.uploaded_at, i.updated_at, "
                "i.model_released, i.property_released, i.keyword, i.caption, i.credit, i.title, i.sku, "
                "i.style_code, i.product_family, i.approval, i.usage_ecommerce, i.usage_social, i.usage_print, "
                "i.usage_marketplaces, i.licensed_market, i.license_expiration, "
                + ", ".join(f"x.{f} AS x_{f}" for f in EXTRA_IPTC))
IMAGE_FROM = "images i LEFT JOIN photoshelter_iptc x ON x.image_id = i.id"
EXTRA_IPTC_TABLE = ("CREATE TABLE IF NOT EXISTS photoshelter_iptc (image_id VARCHAR PRIMARY KEY, "
                    + ", ".join(f"{f} VARCHAR" for f in EXTRA_IPTC) + ")")
# Ids that stay in a record whatever `fields` asks for: the listing example (§4.2) shows
# `gallery_id` although its `fields` omit it.
ALWAYS_KEPT = ("image_id", "gallery_id", "collection_id")
_SIZE, _MODES = re.compile(r"^\d{1,5}x\d{1,5}$"), {"fit", "fill", "crop", "original"}


class BadParameter(ValueError):
    """A query parameter the service cannot parse: rendered as 400 InvalidParameter."""


# ---------- envelopes ----------
def ok(data: dict) -> JSONResponse:
    return JSONResponse({"status": "ok", "data": data})


def fail(status: int, code: str, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"status": "error", "message": message, "code": code}, status_code=status, headers=headers)


ERRORS = {  # status -> (code, message) for injected faults (contract §5, §6)
    200: ("InternalError", "Internal error"),  # the "status_error" fault: a 200 carrying an error envelope
    429: ("RateLimitExceeded", "Rate limit exceeded"),
    500: ("InternalError", "Internal server error"),
    502: ("BadGateway", "Bad gateway"),
    503: ("ServiceUnavailable", "Service temporarily unavailable"),
    504: ("GatewayTimeout", "Gateway timeout"),
}


def error_renderer(status: int) -> tuple[dict[str, str], bytes]:
    code, message = ERRORS.get(status, ("InternalError", "Internal server error"))
    headers = {"Retry-After": "2"} if status == 429 else {}
    return headers, json.dumps({"status": "error", "message": message, "code": code}).encode()


# ---------- scalars ----------
def gmt(value: datetime | None) -> str | None:
    return None if value is None else value.strftime("%Y-%m-%d %H:%M:%S GMT")


def tf(value: bool | None) -> str:
    return "t" if value else "f"


def split_keywords(value: str | None) -> list[str]:
    """`keyword` is a comma-joined set: trimmed, no empties, deduped ignoring case (first spelling wins)."""
    seen: set[str] = set()
    out = []
    for part in (value or "").split(","):
        part = part.strip()
        if part and part.casefold() not in seen:
            seen.add(part.casefold())
            out.append(part)
    return out


# ---------- request parameters ----------
def parse_json_param(raw: str | None, name: str, default):
    if not raw:
        return default
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        raise BadParameter(f"Invalid parameter: {name}") from None


def parse_extend(raw: str | None) -> dict[str, dict]:
    """`extend={"<Type>":{"fields":"...","params":{...}}}`; a type given as `{}` means all fields."""
    value = parse_json_param(raw, "extend", {})
    if not isinstance(value, dict):
        raise BadParameter("Invalid parameter: extend")
    return {k: v if isinstance(v, dict) else {} for k, v in value.items()}


def parse_paging(query, max_per_page: int) -> tuple[int, int]:
    try:
        page = int(query.get("page") or 1)
        per_page = int(query.get("per_page") or DEFAULT_PER_PAGE)
    except ValueError:
        raise BadParameter("Invalid parameter: page") from None
    return max(1, page), min(max(1, per_page), max_per_page)  # clamped, not refused (inferred)


def select(record: dict, fields: str | None) -> dict:
    """Apply `fields=a,b`: unknown names are ignored, so a list of only unknown names means all."""
    wanted = {f.strip() for f in (fields or "").split(",") if f.strip()} & set(record)
    if not wanted:
        return record
    return {k: v for k, v in record.items() if k in wanted or k in ALWAYS_KEPT}


def paging_block(page: int, per_page: int, total: int) -> dict:
    pages = max(1, -(-total // per_page))
    block = {"page": str(page), "per_page": str(per_page), "total": str(total), "pages": str(pages)}
    if page > 1:
        block["prev"] = str(min(page - 1, pages))
    if page < pages:  # the last page has no `next` (code): the only key clients test
        block["next"] = str(page + 1)
    return block


# ---------- records ----------
def container(id_key: str, row) -> dict:
    """A collection or gallery (§4.1); the world stores only the columns that vary."""
    ident, name, seq, created, modified = row
    return {id_key: ident, "name": name, "description": "", "f_list": "f", "mode": "private",
            "effective_mode": "private", "display_order": str(seq), "access_inherit": "t",
            "created_at": gmt(created), "modified_at": gmt(modified)}


def image_record(r: dict) -> dict:
    """The §4.3 field set (plus `gallery_id`, which the §4.2 listing shows); constant fields are illustrative."""
    return {"image_id": r["id"], "gallery_id": r["gallery_id"], "owner_id": USER_ID, "organization_id": ORG_ID,
            "creator_id": USER_ID, "photographer_id": USER_ID, "file_name": r["file_name"],
            "file_size": str(r["file_size"]), "height": str(r["height"]), "width": str(r["width"]),
            "screen_height": "1200", "screen_width": "960", "screen_height_max": "1600", "screen_width_max": "1280",
            "thumb_height": "160", "thumb_width": "128", "focal_point_x": "50", "focal_point_y": "50",
            "stat_show": "t", "f_searchable": "t", "model_released": tf(r["model_released"]),
            "property_released": tf(r["property_released"]), "rating": "0", "flagged": "f",
            "updated_at": gmt(r["updated_at"]), "uploaded_at": gmt(r["uploaded_at"])}


def iptc_record(r: dict) -> dict:
    """Every IPTC field, "" when unset; copyright defaults to the organization until written."""
    iptc = {name: r.get(name) or "" for name in STORED_IPTC}
    for name in EXTRA_IPTC:
        iptc[name] = r.get(f"x_{name}") or ""
    if r.get("x_copyright") is None:
        iptc["copyright"] = ORG_NAME
    return {name: iptc[name] for name in IPTC_FIELDS}


def custom_record(r: dict) -> list[dict]:
    """All 10 fields in creation order, `tag` null when unset: at most one tag per field (§4.4)."""
    return [{"field_id": fid, "field_name": name, "tag": None if r.get(col) in (None, "") else str(r[col])}
            for fid, name, col in CUSTOM_FIELDS]


def link_record(image_id: str, base_url: str, params: dict | None = None) -> dict:
    """Rendition links under the sandbox's own prefix (the real host is m.psecn.photoshelter.com)."""
    params = params or {}
    size = str(params.get("image_size") or "2000x2000")
    mode = str(params.get("image_mode") or "fit")
    size = size if _SIZE.match(size) else "2000x2000"
    mode = mode if mode in _MODES else "fit"
    root = f"{base_url.rstrip('/')}/photoshelter/img-get2/{image_id}/"
    link = f"{root}{mode}={size}"
    # Deterministic, so one seed's responses are byte-identical from run to run.
    signature = hashlib.sha256(f"sandbox-ps-auth:{image_id}:{mode}:{size}".encode()).hexdigest()[:24]
    return {"link": link, "auth_link": f"{link}?auth={signature}", "base": root}


def extended_image(r: dict, extend: dict[str, dict], base_url: str, fields: str | None = None) -> dict:
    """One image as the single-image call sends it: extensions land on the Image record itself."""
    record = select(image_record(r), fields)
    _attach(record, r, extend, base_url)
    return record


def gallery_item(r: dict, extend: dict[str, dict], base_url: str, fields: str | None) -> dict:
    """One `GalleryImage` (§4.2)."""
    return _list_item(select({"image_id": r["id"], "f_visible": "t"}, fields), r, extend, base_url)


def search_item(r: dict, extend: dict[str, dict], base_url: str) -> dict:
    """One search `Results` item, shaped like a listing item (inferred)."""
    return _list_item({"image_id": r["id"]}, r, extend, base_url)


def _list_item(item: dict, r: dict, extend: dict[str, dict], base_url: str) -> dict:
    """`Image` only if extended, with `Iptc` under it; `ImageLink` and `CustomMetadata` land on the item."""
    if "Image" in extend:
        item["Image"] = select(image_record(r), extend["Image"].get("fields"))
        if "Iptc" in extend:
            item["Image"]["Iptc"] = select(iptc_record(r), extend["Iptc"].get("fields"))
    _attach(item, r, {k: v for k, v in extend.items() if k != "Iptc"}, base_url)
    return item


def _attach(target: dict, r: dict, extend: dict[str, dict], base_url: str) -> None:
    if "Iptc" in extend:
        target["Iptc"] = select(iptc_record(r), extend["Iptc"].get("fields"))
    if "ImageLink" in extend:
        spec = extend["ImageLink"]
        params = spec.get("params") if isinstance(spec.get("params"), dict) else {}
        target["ImageLink"] = select(link_record(r["id"], base_url, params), spec.get("fields"))
    if "CustomMetadata" in extend:
        fields = extend["CustomMetadata"].get("fields")
        target["CustomMetadata"] = [select(f, fields) for f in custom_record(r)]
