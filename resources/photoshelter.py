"""PhotoShelter PSAPI v3 client and Dagster resource (../shared/contracts/photoshelter.md §7).

The listing is walked gallery by gallery (never through deep global searches), each page carrying
the image, its IPTC, its rendition link and its custom metadata in one call via `extend`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import dagster as dg
import httpx
from pydantic import BaseModel, Field, PrivateAttr

from resources.http import (
    AuthenticationFailed,
    HttpService,
    Pacer,
    RequestRejected,
    RetryPolicy,
    ServiceError,
)

PER_PAGE = 500  # the project's choice; the service's maximum is unknown (contract §4)
KEYWORD_MAX = 64
# Custom-metadata field names are a project convention (inferred), so they live in one table.
DEFAULT_FIELD_MAP = {
    "SKU": "sku",
    "Style Code": "style_code",
    "Product Family": "product_family",
    "Approval Status": "approval_status",
    "Usage: E-commerce": "usage_ecommerce",
    "Usage: Social": "usage_social",
    "Usage: Print": "usage_print",
    "Usage: Marketplaces": "usage_marketplaces",
    "Licensed Market": "licensed_market",
    "License Expiration Date": "license_expiration_date",
}
# RPC-style routes the contract marks inferred: kept together so they are corrected in one place.
ROUTES = {
    "authenticate": "/psapi/v3/mem/authenticate",
    "org_authenticate": "/psapi/v3/mem/organization/{org_id}/authenticate",
    "children": "/psapi/v3/mem/collection/{collection_id}/children",
    "gallery_images": "/psapi/v3/mem/gallery/{gallery_id}/images",
    "image": "/psapi/v3/mem/image/{image_id}",
    "custom": "/psapi/v3/mem/image/{image_id}/custom",
    "iptc": "/psapi/v3/mem/image/{image_id}/iptc",
    "iptc_update": "/psapi/v3/mem/image/{image_id}/iptc/update",
    "link": "/psapi/v3/mem/image/{image_id}/link",
    "search": "/psapi/v3/mem/image/search",
}
LISTING_EXTEND = json.dumps({
    "Image": {"fields": "image_id,file_name,file_size,width,height,updated_at,uploaded_at,model_released,"
                        "property_released", "params": {}},
    "Iptc": {"fields": "keyword,caption,credit,title", "params": {}},
    "ImageLink": {"fields": "link,base", "params": {"image_size": "2000x2000", "image_mode": "fit",
                                                    "f_https_link": "t"}},
    "CustomMetadata": {"fields": "field_id,field_name,tag", "params": {}},
}, separators=(",", ":"))


def parse_bool(value: Any) -> bool | None:
    return {"t": True, "f": False}.get(value) if isinstance(value, str) else value


def parse_int(value: Any) -> int | None:
    return None if value in (None, "") else int(value)


def parse_time(value: str | None) -> datetime | None:
    """`YYYY-MM-DD HH:MM:SS GMT`, always UTC."""
    if not value:
        return None
    return datetime.strptime(value, "%Y-%m-%d %H:%M:%S GMT").replace(tzinfo=UTC)


def split_keywords(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def merge_keywords(current: list[str], additions: list[str]) -> list[str]:
    """Keep the creatives' keywords, append new ones: trimmed, no commas, deduped ignoring case."""
    merged, seen = [], set()
    for keyword in [*current, *(a.replace(",", " ").strip() for a in additions)]:
        if keyword and len(keyword) <= KEYWORD_MAX and keyword.casefold() not in seen:
            seen.add(keyword.casefold())
            merged.append(keyword)
    return merged


def _section(parent: dict, name: str, where: str | None = None) -> dict:
    """A nested object of the listing; absent reads as empty, anything but an object is refused by name."""
    value = parent.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{where or name}: expected an object, got {type(value).__name__}")
    return value


def _entries(value: Any) -> list[dict]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(entry, dict) for entry in value):
        raise ValueError(f"CustomMetadata: expected a list of objects, got {type(value).__name__}")
    return value


class PhotoShelterImage(BaseModel):
    """One image with its custom metadata, flattened to the project's field names."""

    image_id: str
    gallery_id: str | None = None
    file_name: str | None = None
    file_size: int | None = None
    width: int | None = None
    height: int | None = None
    updated_at: datetime | None = None
    uploaded_at: datetime | None = None
    model_released: bool | None = None
    property_released: bool | None = None
    keywords: list[str] = []
    caption: str | None = None
    title: str | None = None
    link: str | None = None
    sku: str | None = None
    style_code: str | None = None
    product_family: str | None = None
    approval_status: str | None = None
    usage_ecommerce: str | None = None
    usage_social: str | None = None
    usage_print: str | None = None
    usage_marketplaces: str | None = None
    licensed_market: str | None = None
    license_expiration_date: date | None = None

    @classmethod
    def from_listing(cls, item: dict, gallery_id: str, field_map: dict[str, str] = DEFAULT_FIELD_MAP):
        """Every value that cannot be read raises a ValueError naming its field (`Image.width: ...`), so the
        quarantined record says where it went wrong."""
        image = _section(item, "Image")
        iptc = _section(image, "Iptc", "Image.Iptc")
        link = _section(item, "ImageLink").get("link")
        custom = {}
        for entry in _entries(item.get("CustomMetadata")):
            if entry.get("field_name") in field_map:
                custom[field_map[entry["field_name"]]] = entry.get("tag")

        def read(parse, name: str, section: dict = image, where: str = "Image"):
            try:
                return parse(section.get(name))
            except (TypeError, ValueError, AttributeError) as exc:
                raise ValueError(f"{where}.{name}: {exc}") from None

        return cls(
            image_id=item["image_id"], gallery_id=image.get("gallery_id") or gallery_id,
            file_name=image.get("file_name"), file_size=read(parse_int, "file_size"),
            width=read(parse_int, "width"), height=read(parse_int, "height"),
            updated_at=read(parse_time, "updated_at"), uploaded_at=read(parse_time, "uploaded_at"),
            model_released=parse_bool(image.get("model_released")),
            property_released=parse_bool(image.get("property_released")),
            keywords=read(split_keywords, "keyword", iptc, "Image.Iptc"), caption=iptc.get("caption"),
            title=iptc.get("title"), link=link, **custom,
        )

    def usable_on(self, day: date) -> bool:
        """Usable only if approved and its license has not expired (contract §7)."""
        return self.approval_status == "Approved" and (
            self.license_expiration_date is None or self.license_expiration_date >= day)


@dataclass
class GalleryPage:
    gallery_id: str
    page: int
    items: list[dict]
    has_next: bool


class PhotoShelterClient:
    def __init__(self, api_url: str, api_key: str, email: str, password: str, org_id: str, *,
                 max_requests_per_second: float | None = 5.0, timeout_s: float = 30.0, max_attempts: int = 8,
                 session_idle_ttl_s: float = 1800.0, transport: httpx.BaseTransport | None = None,
                 sleep=time.sleep, clock=time.monotonic):
        self._email, self._password, self.org_id = email, password, org_id
        self.idle_ttl_s = session_idle_ttl_s
        self._clock = clock
        self.http = HttpService(
            "photoshelter", api_url, timeout=httpx.Timeout(timeout_s, connect=min(10.0, timeout_s)),
            retry=RetryPolicy(max_attempts=max_attempts, base_delay_s=1.0, max_delay_s=60.0),
            pacer=Pacer(max_requests_per_second, sleep=sleep), transport=transport, sleep=sleep,
            headers={"X-PS-Api-Key": api_key, "Accept": "application/json"},
        )
        self._token: str | None = None
        self._last_used = 0.0
        self._lock = threading.Lock()
        self.logins = 0

    def close(self) -> None:
        self.http.close()

    # ---- auth: user, then organization; a lost session loses the org binding too ----
    def _login(self, stale: str | None) -> None:
        with self._lock:
            if self._token is not None and self._token != stale:
                return  # another thread already logged in again
            reply = self.http.request("POST", ROUTES["authenticate"], idempotent=True,
                                      data={"email": self._email, "password": self._password, "mode": "token"})
            body = self._ok(reply.body, "POST", ROUTES["authenticate"], reply.request_id)
            orgs = [org.get("id") for org in body.get("org") or []]
            if self.org_id not in orgs:
                raise AuthenticationFailed("photoshelter", "POST", ROUTES["authenticate"], reply.status,
                                           reply.request_id, f"user is not a member of organization {self.org_id}")
            self._token = body["token"]
            self._org_login()
            self.logins += 1

    def _org_login(self) -> None:
        path = ROUTES["org_authenticate"].format(org_id=self.org_id)
        reply = self.http.request("POST", path, headers={"X-PS-Auth-Token": self._token})
        self._ok(reply.body, "POST", path, reply.request_id)
        self._last_used = self._clock()

    def _session_headers(self) -> dict[str, str]:
        # Log in again before the idle TTL ends rather than waiting for a 401.
        if self._token is None or self._clock() - self._last_used > self.idle_ttl_s - 60:
            self._login(stale=self._token)
        return {"X-PS-Auth-Token": self._token}

    def _call(self, method: str, path: str, **kwargs) -> dict:
        # The session a 401 refused is the one last sent (a retry may carry a newer one than the call began
        # with); keyed on an older one, the re-login would be skipped and the refused token sent again.
        sent: list[str | None] = [None]

        def auth() -> dict[str, str]:
            headers = self._session_headers()
            sent[0] = headers["X-PS-Auth-Token"]
            return headers

        try:
            reply = self.http.request(method, path, auth=auth, on_unauthorized=lambda: self._login(stale=sent[0]),
                                      **kwargs)
        except RequestRejected as exc:
            if exc.status != 403 or "OrganizationAuthRequired" not in exc.detail:
                raise
            self._org_login()  # the session lost only its org binding: redo step 2, once
            reply = self.http.request(method, path, auth=self._session_headers, **kwargs)
        self._last_used = self._clock()
        return self._ok(reply.body, method, path, reply.request_id)

    @staticmethod
    def _ok(body: Any, method: str, path: str, request_id: str | None) -> dict:
        """A 2xx is only a success when `status == "ok"`."""
        if not isinstance(body, dict) or body.get("status") != "ok":
            detail = f"{body.get('code')}: {body.get('message')}" if isinstance(body, dict) else "no envelope"
            raise ServiceError("photoshelter", method, path, 200, request_id, f"error envelope ({detail})")
        return body.get("data") or {}

    # ---- listing ----
    def children(self, collection_id: str = "root") -> dict[str, list[dict]]:
        params = {"extend": json.dumps({"Collection": {}, "Gallery": {}})}
        data = self._call("GET", ROUTES["children"].format(collection_id=collection_id), params=params)
        children = data.get("Children") or {}
        return {"Collection": children.get("Collection") or [], "Gallery": children.get("Gallery") or []}

    def iter_galleries(self, collection_id: str = "root") -> Iterator[dict]:
        """Every gallery under a collection, depth first, in the service's display order."""
        pending = [collection_id]
        while pending:
            children = self.children(pending.pop(0))
            yield from children["Gallery"]
            pending[:0] = [c["collection_id"] for c in children["Collection"]]

    def iter_gallery_pages(self, gallery_id: str, *, start_page: int = 1, per_page: int = PER_PAGE) -> Iterator[GalleryPage]:
        """Raw pages of a gallery's images; stops when `Paging` has no `next` (the last page)."""
        page = start_page
        while True:
            params = {"fields": "image_id,f_visible", "page": page, "per_page": per_page, "extend": LISTING_EXTEND}
            data = self._call("GET", ROUTES["gallery_images"].format(gallery_id=gallery_id), params=params)
            has_next = bool((data.get("Paging") or {}).get("next"))
            yield GalleryPage(gallery_id, page, data.get("GalleryImage") or [], has_next)
            if not has_next:
                return
            page += 1

    def iter_images(self, updated_after: datetime | None = None, *, skip_galleries: set[str] | None = None,
                    field_map: dict[str, str] = DEFAULT_FIELD_MAP) -> Iterator[tuple[str, list[PhotoShelterImage]]]:
        """(gallery id, images updated after the watermark) per page, walking every gallery.

        There is no "updated since" filter, and gallery `modified_at` moves only with membership, so
        every gallery is read; `skip_galleries` lets a resumed run pass the ones it already finished.
        """
        for gallery in self.iter_galleries():
            gallery_id = gallery["gallery_id"]
            if skip_galleries and gallery_id in skip_galleries:
                continue
            for page in self.iter_gallery_pages(gallery_id):
                images = [PhotoShelterImage.from_listing(item, gallery_id, field_map) for item in page.items]
                if updated_after is not None:
                    images = [i for i in images if i.updated_at is None or i.updated_at > updated_after]
                yield gallery_id, images

    # ---- one image ----
    def get_image(self, image_id: str) -> dict:
        return self._call("GET", ROUTES["image"].format(image_id=image_id))["Image"]

    def custom_metadata(self, image_id: str) -> dict[str, str | None]:
        fields = self._call("GET", ROUTES["custom"].format(image_id=image_id)).get("CustomMetadata") or []
        return {f["field_name"]: f.get("tag") for f in fields}

    def iptc(self, image_id: str) -> dict:
        return self._call("GET", ROUTES["iptc"].format(image_id=image_id))["Iptc"]

    def update_iptc(self, image_id: str, **fields: str) -> dict:
        """Replaces the fields sent; safe to retry because the update replaces."""
        return self._call("POST", ROUTES["iptc_update"].format(image_id=image_id), data=fields)["Iptc"]

    def add_keywords(self, image_id: str, keywords: list[str]) -> bool:
        """Merge product keywords into the image's; write only if the list changes. True if written."""
        current = split_keywords(self.iptc(image_id).get("keyword"))
        merged = merge_keywords(current, keywords)
        if merged == current:
            return False
        self.update_iptc(image_id, keyword=",".join(merged))
        return True

    def rendition_link(self, image_id: str, size: str = "2000x2000") -> str:
        params = {"image_size": size, "image_mode": "fit", "f_https_link": "t"}
        return self._call("GET", ROUTES["link"].format(image_id=image_id), params=params)["ImageLink"]["link"]

    def search(self, terms: list[str], *, page: int = 1, per_page: int = 100) -> list[dict]:
        params = {"terms": json.dumps(terms), "page": page, "per_page": per_page,
                  "extend": json.dumps({"Image": {}, "ImageLink": {}})}
        return self._call("GET", ROUTES["search"], params=params).get("Results") or []


class PhotoShelterResource(dg.ConfigurableResource):
    """PhotoShelter DAM (approved images, usage rights). Unset env vars mean the embedded sandbox."""

    api_url: str
    api_key: str
    email: str
    password: str
    org_id: str
    max_requests_per_second: float = Field(8.0, description="Client-side pace (the service allows 10/s).")
    timeout_s: float = 30.0
    max_attempts: int = 8
    _client: PhotoShelterClient | None = PrivateAttr(None)

    def get_client(self) -> PhotoShelterClient:
        if self._client is None:
            self._client = PhotoShelterClient(self.api_url, self.api_key, self.email, self.password, self.org_id,
                                              max_requests_per_second=self.max_requests_per_second,
                                              timeout_s=self.timeout_s, max_attempts=self.max_attempts)
        return self._client

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._client is not None:
            self._client.close()
