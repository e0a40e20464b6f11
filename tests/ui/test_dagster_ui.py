"""The Dagster UI as a person uses it, and the GraphQL API as a script uses it, against `dagster dev`.

One `dagster dev` for the module (it takes a while to start): the project's workspace, a fresh
instance configured as the demo's, a small sandbox world (as of 2026-11-22T12:00Z) and a warehouse
in tmp. The extraction assets are materialised once through the GraphQL client, as an operator
would before asking for the derived assets; then
- a person, in Debian's Chromium, filters the asset graph to the three catalog assets, sees their
  checks, materialises the latest partition, watches the run succeed and reads the quality
  report's metadata (screenshots in test-artifacts/ui/);
- a script launches a 7-day backfill of the same assets through the GraphQL API and waits for it:
  one run for the whole range (the assets' single-run backfill policy), seven partitions in the
  warehouse.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from playwright.sync_api import Page, expect, sync_playwright

from orchestration.settings import SERVICE_ENV_PREFIXES
from tests.conftest import start_sandbox, stop_sandbox
from tests.ui.dagster_dev import (
    LOCATION,
    REPOSITORY,
    ROOT,
    launch_backfill,
    materialized_partitions,
    partition_keys,
    query_warehouse,
    start_dagster_dev,
    stop_dagster_dev,
    wait_for_backfill,
    wait_for_run,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900),
              pytest.mark.filterwarnings("ignore:Using variable_values:DeprecationWarning")]  # inside the client

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium phones home at start, which a closed network refuses.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = ROOT / "test-artifacts" / "ui"
EXTRACTION = ["plytix_product_changes", "photoshelter_image_changes", "plytix_categories", "plytix_deleted_products"]
CATALOG = ["catalog_snapshot", "product_images", "catalog_quality_report"]
CHECKS = {"catalog_snapshot": ["sku_unique", "matches_source_total"],
          "product_images": ["join_does_not_fan_out"],
          "catalog_quality_report": ["not_empty_when_snapshot_is_not"]}
DATE_COLUMN = {"catalog_snapshot": "snapshot_date", "product_images": "snapshot_date",
               "catalog_quality_report": "report_date"}
UI_TIMEOUT_MS = 60_000
RUN_TIMEOUT_MS = 300_000


@pytest.fixture(scope="module")
def catalog_ui(tmp_path_factory) -> Iterator[SimpleNamespace]:
    """`dagster dev` over a sandbox, the extraction materialised for every partition."""
    tmp = tmp_path_factory.mktemp("dagster-ui")
    sandbox, sandbox_url = start_sandbox(products=120)
    # Nine daily partitions ending today: the first one reaches back to the epoch, so every later
    # day's snapshot holds the whole (small) catalog whatever today's date is.
    start = datetime.now(UTC).date() - timedelta(days=8)
    env = {name: value for name, value in os.environ.items() if not name.startswith(SERVICE_ENV_PREFIXES)}
    env.update(SANDBOX_URL=sandbox_url, CATALOG_OPS_WAREHOUSE_PATH=str(tmp / "warehouse.duckdb"),
               CATALOG_OPS_PARTITIONS_START=start.isoformat())
    dev = None
    try:
        dev = start_dagster_dev(tmp / "dagster_home", env)
        client = dev.client()
        # A fresh instance greets its first local visitor with a newsletter prompt a second after the page
        # loads, which would swallow typing; record it as seen, as the prompt's "Skip" button does.
        client._execute("mutation { setNuxSeen }")
        keys = partition_keys(client, "catalog_snapshot")
        # In-process: one process for the four extraction steps instead of one each.
        run_id = client.submit_job_execution(
            "__ASSET_JOB", repository_location_name=LOCATION, repository_name=REPOSITORY,
            asset_selection=EXTRACTION, run_config={"execution": {"config": {"in_process": {}}}},
            tags={ASSET_PARTITION_RANGE_START_TAG: keys[0], ASSET_PARTITION_RANGE_END_TAG: keys[-1]})
        assert wait_for_run(client, run_id) == "SUCCESS", dev.log_tail()
        yield SimpleNamespace(dev=dev, client=client, keys=keys, warehouse=tmp / "warehouse.duckdb")
    finally:
        if dev is not None:
            stop_dagster_dev(dev)
        stop_sandbox(sandbox)


@pytest.fixture
def page(tmp_path, request) -> Iterator[Page]:
    """Debian's Chromium with a fresh profile; the page's last state is saved as a screenshot."""
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: `make test` installs Debian's chromium package"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1920, "height": 1080})
        context.set_default_timeout(UI_TIMEOUT_MS)
        expect.set_options(timeout=UI_TIMEOUT_MS)
        page = context.pages[0] if context.pages else context.new_page()
        try:
            yield page
        finally:
            page.screenshot(path=ARTIFACTS / f"{request.node.name}-last.png")
            context.close()


def shot(page: Page, name: str) -> None:
    page.screenshot(path=ARTIFACTS / f"{name}.png")


def test_materialise_latest_partition_from_the_ui(catalog_ui, page: Page):
    latest = catalog_ui.keys[-1]
    ui = catalog_ui.dev.url

    # The asset graph, filtered to the three catalog assets, their groups opened.
    page.goto(f"{ui}/asset-groups")
    page.get_by_role("textbox", name="Search and filter assets").focus()
    page.keyboard.type(" or ".join(f'key:"{asset}"' for asset in CATALOG))
    page.keyboard.press("Enter")
    groups = page.get_by_role("img", name="unfold_more")
    expect(groups).to_have_count(3)  # catalog, images, quality: nothing else matches the filter
    for still_closed in (2, 1, 0):  # one at a time: the graph lays itself out again after each
        groups.first.click()
        expect(groups).to_have_count(still_closed)
    for asset, checks in CHECKS.items():  # a node per asset, with its number of checks
        node = page.locator("div").filter(has=page.get_by_text(asset, exact=True)).filter(has_text="Asset checks").last
        expect(node).to_contain_text(re.compile(rf"Asset checks\s*\d+ / {len(checks)}"))
    shot(page, "01-asset-graph")

    # Materialise the latest partition of all three.
    page.get_by_role("button", name="Materialize all").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Launch runs to materialize 3 assets")
    dialog.get_by_role("button", name="Latest", exact=True).click()
    expect(dialog.get_by_role("textbox").first).to_have_value(latest)
    shot(page, "02-launch-latest-partition")
    dialog.get_by_role("button", name="Launch 1 run").click()

    # The run page, until the run has finished.
    expect(page.get_by_text(re.compile(r"^Launched run [0-9a-f]{8}"))).to_be_visible()
    page.get_by_role("link", name="View", exact=True).click()  # the toast's link to the run
    page.wait_for_url(re.compile(r"/runs/[0-9a-f-]{36}"))
    run_id = page.url.split("/runs/")[1].split("?")[0].strip("/")
    header = page.locator("div").filter(has_text=re.compile(rf"^Runs\s*/\s*{run_id[:8]}")).last
    expect(header).to_contain_text(re.compile("Success|Failure|Canceled"), timeout=RUN_TIMEOUT_MS)
    shot(page, "03-run")
    expect(header).to_contain_text("Success")
    expect(header).to_contain_text(f"partition: {latest}")
    assert catalog_ui.client.get_run_status(run_id).value == "SUCCESS"  # the UI said it; the run record agrees

    # Each asset's checks, evaluated by that run.
    for asset, checks in CHECKS.items():
        page.goto(f"{ui}/assets/{asset}?view=checks")
        expect(page.get_by_text(f"Checks ({len(checks)})")).to_be_visible()
        for check in checks:  # evaluated, whatever the outcome (a WARN check may fail on planted defects)
            item = page.locator("div").filter(has=page.get_by_text(check, exact=True)).filter(
                has_text=re.compile("Succeeded|Failed")).last
            expect(item).to_be_visible()
        shot(page, f"04-checks-{asset}")

    # The quality report's page: its latest materialisation and its metadata, as the warehouse has it.
    page.goto(f"{ui}/assets/catalog_quality_report")
    status = page.locator("div").filter(has=page.get_by_text("Latest materialization", exact=True)).filter(
        has_text="Row count").last
    expect(status).to_contain_text(latest)
    [(rows,)] = query_warehouse(catalog_ui.warehouse,
                                "SELECT count(*) FROM catalog_quality_report WHERE report_date = ?", [latest])
    [(products,)] = query_warehouse(catalog_ui.warehouse,
                                    "SELECT count(*) FROM catalog_snapshot WHERE snapshot_date = ?", [latest])
    assert rows > 0 and products > 0
    expect(status).to_contain_text(re.compile(rf"Row count\s*{rows:,}"))
    metadata = page.get_by_role("row")
    completeness = metadata.filter(has=page.get_by_role("cell", name="completeness_pct", exact=True))
    completeness.scroll_into_view_if_needed()
    pct = completeness.get_by_role("cell").last.inner_text().strip()
    assert 0 < float(pct) <= 100
    summary = metadata.filter(has=page.get_by_role("cell", name="summary", exact=True))
    # The UI shows a whole float without its ".0" (90.0 -> "90"), so compare the numbers, not the text.
    expect(summary).to_contain_text(f"% of {products:,} products pass every error-level rule on {latest}")
    shown = re.search(r"([\d.]+)% of", summary.inner_text())
    assert shown and float(shown.group(1)) == float(pct)
    expect(summary).to_contain_text("Top failing rules")
    [(new_rows,)] = query_warehouse(catalog_ui.warehouse, "SELECT count(*) FROM catalog_quality_report "
                                    "WHERE report_date = ? AND state = 'new'", [latest])
    new = metadata.filter(has=page.get_by_role("cell", name="new_findings", exact=True))
    expect(new.get_by_role("cell").last).to_have_text(str(new_rows))
    shot(page, "05-quality-report-metadata")


def test_seven_day_backfill_through_graphql(catalog_ui):
    client, keys = catalog_ui.client, catalog_ui.keys
    days = keys[-8:-1]  # the seven finished days before today (the UI test owns today's partition)

    backfill_id = launch_backfill(client, CATALOG, days)
    backfill = wait_for_backfill(client, backfill_id)

    assert backfill["status"] == "COMPLETED_SUCCESS", (backfill, catalog_ui.dev.log_tail())
    assert backfill["numPartitions"] == 7
    # One run for the whole range and all three assets: the single-run backfill policy at work.
    [run] = backfill["runs"]
    tags = {tag["key"]: tag["value"] for tag in run["tags"]}
    assert run["status"] == "SUCCESS"
    assert (tags[ASSET_PARTITION_RANGE_START_TAG], tags[ASSET_PARTITION_RANGE_END_TAG]) == (days[0], days[-1])
    # Dagster records the seven partitions of each asset as materialised...
    for asset, done in materialized_partitions(client, CATALOG, keys).items():
        assert set(days) <= done, asset
    # ...and the warehouse holds them, one day each.
    for table, column in DATE_COLUMN.items():
        counts = dict(query_warehouse(
            catalog_ui.warehouse,
            f"SELECT CAST({column} AS VARCHAR), count(*) FROM {table} "  # noqa: S608 (constants)
            f"WHERE {column} BETWEEN CAST(? AS DATE) AND CAST(? AS DATE) GROUP BY 1", [days[0], days[-1]]))
        assert sorted(counts) == days, table
        assert all(n > 0 for n in counts.values()), (table, counts)
