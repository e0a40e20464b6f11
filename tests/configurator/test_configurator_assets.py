"""The configurator assets against a sandbox of their own, through a real Dagster instance: the
findings kind by kind against the ground truth the generator planted (after a join with the catalog
assets), digests and the outbox, escalation levels by age, the write-back recorded by the sandbox,
incremental reads of changes made through the sandbox-only calls, and nothing sent twice."""

from __future__ import annotations

import os
from collections import Counter
from datetime import date, timedelta

import dagster as dg
import duckdb
import httpx
import pytest
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from assets.configurator_notifications import configurator_assets
from assets.rules import load_rules
from orchestration.definitions import catalog_assets
from resources.opentext import OpenTextResource
from resources.threekit import ThreekitResource, parse_time
from sensors.threekit_sensors import threekit_changes_sensor
from tests.assets.test_catalog_assets import DERIVED, EXTRACTION, FIRST, resources_for
from tests.conftest import start_sandbox, stop_sandbox

DAY = "2026-11-21"  # the world is "as of" DAY noon
ORG = "00000000-0000-4000-8000-000000000001"
EXTRACT = ["threekit_configurations", "threekit_orders", "threekit_asset_changes", "threekit_catalog"]
# The generator's ground-truth kinds, each the `threekit_` prefix of a finding kind.
TRUTH_KINDS = ["missing_price", "broken_sku_ref", "broken_image_ref", "config_missing_price", "config_needs_review",
               "config_invalid_option", "unpublished_model_change"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    saved = os.environ.get("CATALOG_OPS_ACTIONS_MAX_AGE_DAYS")
    os.environ["CATALOG_OPS_ACTIONS_MAX_AGE_DAYS"] = "100000"  # the fixed world's days are "recent"
    proc, url = start_sandbox(products=800, extra=[f"world_now={DAY}T12:00:00Z", "threekit_rate_limit_rps=100000"])
    warehouse = str(tmp_path_factory.mktemp("warehouse") / "warehouse.duckdb")
    instance = dg.DagsterInstance.local_temp(str(tmp_path_factory.mktemp("dagster_home")))
    resources = {
        **resources_for(url, warehouse),
        "opentext": OpenTextResource(auth_url=f"{url}/opentext-auth", api_url=f"{url}/opentext",
                                     tenant_id="sandbox-tenant", client_id="sandbox-ot-client",
                                     client_secret="sandbox-ot-secret"),
        "threekit": ThreekitResource(api_url=f"{url}/threekit", org_id=ORG, token="sandbox-threekit-token",
                                     max_requests_per_second=0),
    }
    run = lambda selection, **kw: dg.materialize([*catalog_assets, *configurator_assets],  # noqa: E731
                                                 selection=selection, resources=resources, instance=instance, **kw)
    admin = httpx.Client(base_url=url, timeout=30)
    tk = httpx.Client(base_url=f"{url}/threekit", params={"orgId": ORG}, timeout=30,
                      headers={"Authorization": "Bearer sandbox-threekit-token"})
    try:
        # The catalog assets the rules join: the Plytix snapshot and the PhotoShelter images of DAY.
        assert run(EXTRACTION, tags={ASSET_PARTITION_RANGE_START_TAG: FIRST,
                                     ASSET_PARTITION_RANGE_END_TAG: DAY}).success
        assert run(DERIVED, partition_key=DAY).success
        extraction = run(EXTRACT, partition_key=DAY)
        assert extraction.success
        truth = admin.get("/_sandbox/ground-truth").json()["ids"]
        notified = run(["configurator_notifications"], partition_key=DAY)
        assert notified.success
    except BaseException:
        stop_sandbox(proc)
        restore_env(saved)
        raise
    yield {"url": url, "warehouse": warehouse, "resources": resources, "run": run, "admin": admin, "truth": truth,
           "tk": tk, "extraction": extraction, "notified": notified, "instance": instance}
    admin.close()
    tk.close()
    instance.dispose()
    stop_sandbox(proc)
    restore_env(saved)


def restore_env(saved: str | None) -> None:
    if saved is None:
        os.environ.pop("CATALOG_OPS_ACTIONS_MAX_AGE_DAYS", None)
    else:
        os.environ["CATALOG_OPS_ACTIONS_MAX_AGE_DAYS"] = saved


def query(world, sql: str, params=None):
    with duckdb.connect(world["warehouse"], read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def writes(world, service: str) -> list[dict]:
    return world["admin"].get("/_sandbox/writes", params={"service": service}).json()["writes"]


def metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    event = result.asset_materializations_for_node(asset)[-1]
    return {k: v.value for k, v in event.metadata.items()}


def findings(world, kind: str, day: str = DAY) -> set[str]:
    return {r[0] for r in query(world, "SELECT record_id FROM configurator_findings WHERE report_date = ? AND kind = ?",
                                [day, kind])}


def api(world, path: str, **params) -> dict:
    return world["tk"].get(path, params=params).json()


@pytest.mark.parametrize("kind", TRUTH_KINDS)
def test_findings_are_exactly_the_planted_defects(world, kind):
    planted = set(world["truth"][f"threekit_{kind}"])
    assert planted, f"the seeded world plants {kind}"
    assert findings(world, kind) == planted


def test_every_new_item_is_carried_by_one_message_per_recipient_and_sent(world):
    rules = load_rules()
    c = rules.configurator
    items = query(world, "SELECT kind, recipient, record_id, message_key FROM configurator_items "
                         "WHERE kind <> 'order_note'")
    routes = {"missing_price": c.catalog.data_steward, "broken_sku_ref": c.catalog.data_steward,
              "config_needs_review": c.review.approvers, "config_invalid_option": c.review.approvers,
              "unpublished_model_change": c.publishing.unpublished_changes_to, "published": c.publishing.notify,
              "order_milestone": c.orders.notify, "localisation_needed": c.localisation.needed_to}
    for kind, recipients in routes.items():
        told = {(r, rec) for k, r, rec, _ in items if k == kind}
        assert told == {(person, rec) for person in recipients for rec in findings(world, kind)}, kind
    # Per recipient and kind: up to `digest_above` messages of one item each, else one digest of them all.
    per_group = Counter((k, r) for k, r, _, _ in items)
    messages = {(k, r): {m for kk, rr, _, m in items if (kk, rr) == (k, r)} for k, r in per_group}
    for group, n in per_group.items():
        assert len(messages[group]) == (n if n <= rules.notifications.digest_above else 1), group
    outbox = {r[0]: r[1] for r in query(world, "SELECT dedupe_key, status FROM notification_outbox")}
    assert {f"{m}|email" for ms in messages.values() for m in ms} <= set(outbox)
    assert set(outbox.values()) <= {"accepted", "delivered"}
    sent = [w for w in writes(world, "opentext") if w["status"] < 300]
    assert len(sent) == len(outbox)


def test_escalations_go_up_one_level_per_age_threshold_and_only_while_open(world):
    levels = load_rules().configurator.review.escalation
    problems = {cid for kind in ("config_needs_review", "config_invalid_option", "config_missing_price")
                for cid in world["truth"][f"threekit_{kind}"]}
    orders = [o for page in range(1, 3) for o in api(world, "/api/orders", perPage=100, page=page)["orders"]]
    taken = {line["configurationId"] for o in orders if o["status"] in ("In Progress", "Complete", "Cancelled")
             for line in o["cart"]}
    ages = {c["id"]: (date.fromisoformat(DAY) - parse_time(c["createdAt"]).date()).days
            for page in range(1, 5) for c in api(world, "/api/configurations", perPage=100, page=page)["configurations"]}
    expected = {(person, cid, n) for cid in problems - taken for n, level in enumerate(levels, start=1)
                if ages[cid] >= level.after_days for person in level.to}
    escalated = {(r, rec, level) for r, rec, level in query(
        world, "SELECT recipient, record_id, level FROM configurator_items WHERE kind = 'config_escalation'")}
    assert expected and escalated == expected
    assert any(n == 2 for _, _, n in expected) and any(n == 1 for _, _, n in expected)


def test_design_review_outcome_is_written_back_once_keeping_the_order_metadata(world):
    puts = [w for w in writes(world, "threekit") if w["method"] == "PUT"]
    outcomes = query(world, "SELECT record_id, line FROM configurator_items WHERE kind = 'order_note'")
    assert outcomes and len(puts) == len(outcomes)
    assert Counter(w["path"] for w in puts) == Counter(f"/api/orders/{oid}" for oid, _ in outcomes)
    for (order_id, note), put in zip(sorted(outcomes), sorted(puts, key=lambda w: w["path"]), strict=True):
        assert set(put["body"]) == {"metadata"}  # no status, never the cart
        order = api(world, f"/api/orders/{order_id}")
        assert order["metadata"]["statusNote"] == put["body"]["metadata"]["statusNote"] == note
        assert order["metadata"]["shopifyOrderId"] == order["platform"]["id"]  # merged in, not replaced away
    validated = [n for _, n in outcomes if n.startswith("Design validated")]
    pending = [n for _, n in outcomes if n.startswith("Design review pending")]
    assert validated and pending
    clean = {r[0] for r in query(world, "SELECT record_id FROM configurator_items WHERE kind = 'order_milestone' "
                                        "AND line LIKE '%Design validated%'")}
    assert clean == {oid for oid, n in outcomes if n.startswith("Design validated")}


def test_a_rerun_plans_sends_and_writes_nothing(world):
    before = len(writes(world, "opentext")), len(writes(world, "threekit"))
    again = world["run"](["configurator_notifications"], partition_key=DAY)
    meta = metadata(again, "configurator_notifications")
    assert (meta["planned_new"], meta["items_new"], meta["order_notes_written"]) == (0, 0, 0)
    assert (len(writes(world, "opentext")), len(writes(world, "threekit"))) == before
    catalog = world["run"](["threekit_catalog"])
    assert metadata(catalog, "threekit_catalog")["variants_reread_for_items"] == 0  # nothing changed


def test_the_item_checks_join_the_catalog_assets(world):
    # Without DAY's snapshot the references cannot be checked: the next day has none materialised.
    next_day = (date.fromisoformat(DAY) + timedelta(days=1)).isoformat()
    config = {"ops": {"configurator_notifications": {"config": {"dry_run": True}}}}
    before = len(writes(world, "opentext")), len(writes(world, "threekit"))
    result = world["run"](["configurator_notifications"], partition_key=next_day, run_config=config)
    assert result.success
    assert (len(writes(world, "opentext")), len(writes(world, "threekit"))) == before  # a dry run writes nothing
    meta = metadata(result, "configurator_notifications")
    assert "findings/broken_sku_ref" not in meta
    assert meta["findings/missing_price"] == len(world["truth"]["threekit_missing_price"])  # Threekit alone
    assert meta["findings/broken_image_ref"] == len(world["truth"]["threekit_broken_image_ref"])  # images as of D
    # With it, each broken reference is one the catalog assets do not hold.
    for item_id in findings(world, "broken_sku_ref"):
        pid, sku = query(world, "SELECT plytix_product_id, sku FROM threekit_items WHERE id = ?", [item_id])[0]
        assert not query(world, "SELECT 1 FROM catalog_snapshot WHERE snapshot_date = ? AND (product_id = ? "
                                "OR sku_key = upper(?))", [DAY, pid, sku])
    for item_id in findings(world, "broken_image_ref"):
        image = query(world, "SELECT image_id FROM threekit_items WHERE id = ?", [item_id])[0][0]
        assert not query(world, "SELECT 1 FROM photoshelter_image_changes WHERE image_id = ?", [image])


def test_unavailable_variants_are_the_inactive_ones_plytix_sells(world):
    flagged = findings(world, "variant_unavailable")
    inactive = set()
    for item_id in flagged | {r[0] for r in query(world, "SELECT id FROM threekit_items")}:
        rows = api(world, f"/api/catalog/items/{item_id}/variants", status='["deactivated","invalid"]')["variants"]
        if rows:
            inactive.add(item_id)
    assert flagged and flagged <= inactive
    sized = {r[0] for r in query(world, "SELECT i.id FROM threekit_items i JOIN catalog_snapshot s ON "
                                        "s.snapshot_date = ? AND s.parent_id = i.plytix_product_id", [DAY])}
    assert flagged == inactive & sized


def test_incremental_reads_pick_up_changes_made_in_threekit(world):
    admin, run = world["admin"], world["run"]
    item = query(world, "SELECT id FROM threekit_items WHERE id NOT IN (SELECT record_id FROM configurator_findings "
                        "WHERE kind IN ('missing_price', 'broken_sku_ref')) ORDER BY id LIMIT 1")[0][0]
    model = query(world, "SELECT proxy_id FROM threekit_items WHERE id = ?", [item])[0][0]
    saved = admin.post("/_sandbox/threekit/configurations", json={
        "productId": item, "variant": {"Size": "M"},
        "metadata": {"price": "9999.00", "currency": "USD", "pricebookId": "7e6d0000-0000-4000-8000-000000000001"}})
    saved.raise_for_status()
    config = saved.json()
    order = admin.post("/_sandbox/threekit/orders", json={"cart": [config["id"]], "name": "Sandbox order"}).json()
    admin.post(f"/_sandbox/threekit/assets/{model}/touch").raise_for_status()
    day = parse_time(config["createdAt"]).date().isoformat()
    before = len(writes(world, "threekit"))
    written_back = {w["path"] for w in writes(world, "threekit") if w["method"] == "PUT"}  # versions not read yet

    extraction = run(EXTRACT, partition_key=day)
    assert extraction.success
    for asset, new in (("threekit_configurations", 1), ("threekit_orders", 1 + len(written_back))):
        meta = metadata(extraction, asset)
        assert meta["new_versions"] == new and meta["api_requests"] == 1, (asset, meta)  # the first page only
    assert query(world, "SELECT partition_date FROM threekit_configurations WHERE id = ?",
                 [config["id"]]) == [(date.fromisoformat(day),)]
    assert query(world, "SELECT status FROM threekit_orders WHERE id = ?", [order["id"]]) == [("New",)]
    assert metadata(extraction, "threekit_asset_changes")["new_versions"] == 1
    assert metadata(extraction, "threekit_catalog")["variants_reread_for_items"] == 0

    notified = run(["configurator_notifications"], partition_key=day)
    assert notified.success
    told = {(k, r) for k, r in query(world, "SELECT kind, record_id FROM configurator_items WHERE first_day = ?",
                                     [day])}
    assert {("config_needs_review", config["id"]), ("order_milestone", order["id"]),
            ("unpublished_model_change", model), ("order_note", order["id"])} <= told
    puts = [w for w in writes(world, "threekit")[before:] if w["method"] == "PUT"]
    assert [w["path"] for w in puts] == [f"/api/orders/{order['id']}"]
    assert puts[0]["body"]["metadata"]["statusNote"].startswith("Design review pending: 1 configuration(s)")

    # The write-back is a change in Threekit too: read again, it is one new order version and no new news.
    again = run([*EXTRACT, "configurator_notifications"], partition_key=day)
    assert metadata(again, "threekit_orders")["new_versions"] == 1
    meta = metadata(again, "configurator_notifications")
    assert (meta["planned_new"], meta["order_notes_written"]) == (0, 0)
    assert len([w for w in writes(world, "threekit")[before:] if w["method"] == "PUT"]) == 1


def test_the_sensor_asks_for_one_run_per_change(world):
    resources = {"threekit": world["resources"]["threekit"]}
    with dg.build_sensor_context(instance=world["instance"], resources=resources) as context:
        first = threekit_changes_sensor(context)
        assert isinstance(first, dg.RunRequest)
        cursor = context.cursor
    with dg.build_sensor_context(instance=world["instance"], resources=resources, cursor=cursor) as context:
        assert isinstance(threekit_changes_sensor(context), dg.SkipReason)  # nothing new: nothing asked
    item = query(world, "SELECT id FROM threekit_items ORDER BY id LIMIT 1")[0][0]
    world["admin"].post("/_sandbox/threekit/configurations", json={"productId": item}).raise_for_status()
    with dg.build_sensor_context(instance=world["instance"], resources=resources, cursor=cursor) as context:
        second = threekit_changes_sensor(context)
    assert isinstance(second, dg.RunRequest) and second.run_key != first.run_key
    assert second.tags["catalog-ops/threekit-changed"] == "configurations"
