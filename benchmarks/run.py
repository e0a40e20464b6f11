"""`make bench`: sandbox throughput and the cost of building the catalog, measured side by side.

Figures are printed and written to bench-results/latest.json. Machines are shared and noisy, so
compare ratios from one run (e.g. sorted keyset pages vs unsorted pages), not absolute seconds
across runs. Nothing here is asserted: tests never time anything.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import start_sandbox  # noqa: E402  (one way to start a sandbox, shared with the tests)

KEY, PASSWORD = "sandbox-plytix-key", "sandbox-plytix-password"


def plytix_pages(url: str, pages: int, order: str | None) -> dict:
    """Read `pages` pages of 100 products with every field the extraction asks for."""
    from assets.extraction import PLYTIX_FIELDS

    with httpx.Client(base_url=f"{url}/plytix", timeout=60) as client:
        token = httpx.post(f"{url}/plytix-auth/auth/api/get-token",
                           json={"api_key": KEY, "api_password": PASSWORD}).json()["data"][0]["access_token"]
        client.headers["Authorization"] = f"Bearer {token}"
        start, products = time.perf_counter(), 0
        for page in range(1, pages + 1):
            # Sorted reads use a one-day window, as the client's keyset reads do (under the sort cap).
            filters = [[{"field": "modified", "operator": "gte", "value": "2026-11-20"},
                        {"field": "modified", "operator": "lt", "value": "2026-11-21"}]] if order else []
            body = {"filters": filters, "attributes": PLYTIX_FIELDS,
                    "pagination": {"page": page if not order else 1, "page_size": 100, "order": order}}
            products += len(client.post("/api/v1/products/search", json=body).json()["data"])
        seconds = time.perf_counter() - start
    return {"pages": pages, "products": products, "seconds": round(seconds, 3),
            "pages_per_s": round(pages / seconds, 1), "products_per_s": round(products / seconds, 1)}


def build_catalog(url: str, workdir: Path) -> dict:
    """Materialise the six catalog assets in a child process; its peak RSS is the figure."""
    script = f"""
import dagster as dg, time, json
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG as E, ASSET_PARTITION_RANGE_START_TAG as S
from orchestration.definitions import catalog_assets
from tests.assets.test_catalog_assets import resources_for, EXTRACTION, DERIVED
resources = resources_for({url!r}, {str(workdir / 'warehouse.duckdb')!r})
times = {{}}
with dg.DagsterInstance.ephemeral() as instance:
    t = time.perf_counter()
    assert dg.materialize(catalog_assets, selection=EXTRACTION, resources=resources, instance=instance,
                          tags={{S: "2026-08-01", E: "2026-11-22"}}).success
    times["extraction_s"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    assert dg.materialize(catalog_assets, selection=DERIVED, resources=resources, instance=instance,
                          partition_key="2026-11-22").success
    times["snapshot_join_report_s"] = round(time.perf_counter() - t, 1)
print(json.dumps(times))
"""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "DAGSTER_HOME": ""})
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    figures["peak_rss_mib"] = round(max(peak_kib, before) / 1024, 1)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--pages", type=int, default=200)
    args = parser.parse_args()
    results: dict = {"products": args.products}
    started = time.perf_counter()
    proc, url = start_sandbox(products=args.products)
    results["sandbox_start_s"] = round(time.perf_counter() - started, 1)
    try:
        unsorted = plytix_pages(url, args.pages, None)
        sorted_ = plytix_pages(url, args.pages, "modified")
        results["plytix_unsorted_pages"] = unsorted
        results["plytix_sorted_window_pages"] = sorted_
        results["sorted_vs_unsorted_page_time_ratio"] = round(sorted_["seconds"] / unsorted["seconds"], 2)
        print(json.dumps(results, indent=2), flush=True)
        workdir = ROOT / "bench-results" / "work"
        workdir.mkdir(parents=True, exist_ok=True)
        for stale in workdir.glob("warehouse.duckdb*"):
            stale.unlink()
        results["build_catalog"] = build_catalog(url, workdir)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    out = ROOT / "bench-results" / "latest.json"
    out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
