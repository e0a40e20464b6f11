"""Plytix ingest over loopback HTTP: the project's extraction path against a bare httpx loop.

The project's path is what `plytix_product_changes` does: `PlytixClient.iter_modified` (count
probes, keyset windows under the sort cap, retries, pacing), `plytix_rows` (pydantic validation,
quarantine checks) and `stage_pages` into a staging file. The limit replays the very search requests
the project sent (recorded at the transport) with a bare `httpx.Client` that only parses the JSON.
"""

from __future__ import annotations

import tempfile
import time
from datetime import UTC, date, datetime

import httpx

from assets.extraction import EPOCH, PLYTIX_FIELDS, plytix_rows, stage_pages
from assets.warehouse import StagingArea
from resources.plytix import PlytixClient

KEY, PASSWORD = "sandbox-plytix-key", "sandbox-plytix-password"
WINDOW_END = datetime(2026, 11, 22, 12, tzinfo=UTC)  # the world's anchor (bench.world_tables.WORLD_NOW)
FIRST_DAY = date(2026, 8, 1)


class RecordingTransport(httpx.HTTPTransport):
    """Keeps every search body sent and counts responses by status."""

    def __init__(self):
        super().__init__()
        self.searches: list[bytes] = []
        self.statuses: dict[int, int] = {}

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/products/search"):
            self.searches.append(request.content)
        response = super().handle_request(request)
        self.statuses[response.status_code] = self.statuses.get(response.status_code, 0) + 1
        return response


def project_extraction(url: str, rate_per_s: float | None) -> dict:
    """Read every product the way the extraction asset does, into a throwaway staging file."""
    transport = RecordingTransport()
    client = PlytixClient(f"{url}/plytix-auth", f"{url}/plytix", KEY, PASSWORD,
                          max_requests_per_second=rate_per_s or 0, transport=transport)
    failures, products = 0, 0
    with tempfile.TemporaryDirectory() as folder:
        area = StagingArea(f"{folder}/warehouse.duckdb", "bench")
        area.create("plytix_product_changes")
        area.create("plytix_quarantine")
        wall, cpu = time.perf_counter(), time.process_time()
        def pages():
            nonlocal products
            now = datetime.now(UTC)
            for page in client.iter_modified(EPOCH, WINDOW_END, PLYTIX_FIELDS):
                good, bad = plytix_rows(page, FIRST_DAY, now)
                products += len(good)
                yield None, good, bad  # as `plytix_product_changes` yields them to `stream_changes`

        try:
            stage_pages(area, "plytix_product_changes", "plytix_quarantine", pages())
        except Exception:  # a run the retries could not save
            failures += 1
        seconds, cpu_s = time.perf_counter() - wall, time.process_time() - cpu
        stored = area.count("plytix_product_changes")
        area.discard()
    client.close()
    requests = sum(transport.statuses.values())
    return {"products": products, "stored": stored, "seconds": round(seconds, 3), "requests": requests,
            "products_per_s": round(products / seconds, 1), "requests_per_s": round(requests / seconds, 2),
            "cpu_us_per_product": round(cpu_s / max(products, 1) * 1e6, 1),
            "responses_429": transport.statuses.get(429, 0), "failures": failures,
            "non_2xx": sum(n for status, n in transport.statuses.items() if status >= 300),
            "_searches": transport.searches}


def bare_loop(url: str, searches: list[bytes]) -> dict:
    """The same search requests, sent back to back; nothing done with the pages but parsing them."""
    token = httpx.post(f"{url}/plytix-auth/auth/api/get-token",
                       json={"api_key": KEY, "api_password": PASSWORD}).json()["data"][0]["access_token"]
    seen: set[str] = set()
    with httpx.Client(base_url=f"{url}/plytix", timeout=60,
                      headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"}) as client:
        wall, cpu = time.perf_counter(), time.process_time()
        for body in searches:
            data = client.post("/api/v1/products/search", content=body).json()["data"]
            seen.update(item["id"] for item in data)  # keyset pages overlap at their cursor instant
        seconds, cpu_s = time.perf_counter() - wall, time.process_time() - cpu
    products = len(seen)
    return {"products": products, "seconds": round(seconds, 3), "requests": len(searches),
            "products_per_s": round(products / seconds, 1),
            "cpu_us_per_product": round(cpu_s / max(products, 1) * 1e6, 1)}


def set_plytix_rate(url: str, per_10s: int) -> None:
    httpx.post(f"{url}/_sandbox/config", json={"plytix_rate_per_10s": per_10s}, timeout=30).raise_for_status()
