"""The action assets against a sandbox of their own, checked by what the sandbox recorded: exact
notifications and tasks for the seeded world, nothing twice on a re-run, tasks closed when problems
are fixed, the way back from a completed task, and the image and keyword syncs."""

from __future__ import annotations

import json
import os
from collections import Counter

import dagster as dg
import duckdb
import httpx
import pytest
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from assets.outbox import recover_interrupted
from assets.rules import load_rules
from orchestration.definitions import action_assets, catalog_assets
from resources import planner_markers as mk
from resources.opentext import OpenTextResource, Recipient
from resources.planner import PlannerResource
from sensors.planner_completions import advance_stage_job, planner_completed_tasks
from tests.assets.test_catalog_assets import DERIVED, EXTRACTION, FIRST, resources_for
from tests.conftest import start_sandbox, stop_sandbox

DAY, NEXT = "2026-11-21", "2026-11-22"  # this module's world is "as of" DAY noon; NEXT is the day after
ALL_ASSETS = [*catalog_assets, *action_assets]


def action_resources(url: str, warehouse: str) -> dict:
    return {
        **resources_for(url, warehouse),
        "planner": PlannerResource(login_url=f"{url}/msauth", graph_url=f"{url}/graph", tenant_id="sandbox-tenant",
                                   client_id="sandbox-client", client_secret="sandbox-secret",
                                   plan_id="sandboxPlanAAAAAAAAAAAAAAAAA"),
        "opentext": OpenTextResource(auth_url=f"{url}/opentext-auth", api_url=f"{url}/opentext",
                                     tenant_id="sandbox-tenant", client_id="sandbox-ot-client",
                                     client_secret="sandbox-ot-secret"),
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    saved = os.environ.get("CATALOG_OPS_ACTIONS_MAX_AGE_DAYS")
    os.environ["CATALOG_OPS_ACTIONS_MAX_AGE_DAYS"] = "100000"  # the fixed world's days are "recent"
    proc, url = start_sandbox(extra=[f"world_now={DAY}T12:00:00Z"])
    warehouse = str(tmp_path_factory.mktemp("warehouse") / "warehouse.duckdb")
    instance = dg.DagsterInstance.local_temp(str(tmp_path_factory.mktemp("dagster_home")))
    resources = action_resources(url, warehouse)
    run = lambda selection, **kw: dg.materialize(ALL_ASSETS, selection=selection, resources=resources,  # noqa: E731
                                                 instance=instance, **kw)
    assert run(EXTRACTION, tags={ASSET_PARTITION_RANGE_START_TAG: FIRST, ASSET_PARTITION_RANGE_END_TAG: DAY}).success
    assert run(DERIVED, partition_key=DAY).success
    admin = httpx.Client(base_url=url, timeout=30)
    yield {"url": url, "warehouse": warehouse, "instance": instance, "resources": resources, "run": run,
           "admin": admin}
    admin.close()
    instance.dispose()
    stop_sandbox(proc)
    if saved is None:
        os.environ.pop("CATALOG_OPS_ACTIONS_MAX_AGE_DAYS", None)
    else:
        os.environ["CATALOG_OPS_ACTIONS_MAX_AGE_DAYS"] = saved


def query(world, sql: str, params=None):
    with duckdb.connect(world["warehouse"], read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def writes(world, service: str) -> list[dict]:
    return [w for w in world["admin"].get("/_sandbox/writes", params={"service": service}).json()["writes"]
            if w["status"] < 300]


def metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    event = result.asset_materializations_for_node(asset)[-1]
    return {k: v.value for k, v in event.metadata.items()}


def test_findings_become_one_message_each_or_one_digest_per_owner_and_are_sent_once(world):
    result = world["run"](["catalog_notifications"], partition_key=DAY)
    assert result.success
    digest_above = load_rules().notifications.digest_above
    per_owner = dict(query(world, "SELECT owner, count(*) FROM catalog_quality_report WHERE report_date = ? "
                                  "AND state = 'new' AND severity IN ('error', 'warning') GROUP BY owner", [DAY]))
    planned = Counter(r[0] for r in query(world, "SELECT recipient FROM notification_outbox WHERE kind = 'finding'"))
    assert per_owner, "the seeded world has findings"
    assert planned == {owner: (n if n <= digest_above else 1) for owner, n in per_owner.items()}
    digests = query(world, "SELECT recipient, subject FROM notification_outbox WHERE dedupe_key LIKE 'digest/finding/%'")
    assert all(str(per_owner[r]) in subject for r, subject in digests)

    sent = writes(world, "opentext")
    accepted = query(world, "SELECT reference FROM notification_outbox WHERE job_id IS NOT NULL")
    assert len(sent) == len(accepted) == len(query(world, "SELECT * FROM notification_outbox"))
    again = world["run"](["catalog_notifications"], partition_key=DAY)
    assert metadata(again, "catalog_notifications")["planned_new"] == 0
    assert len(writes(world, "opentext")) == len(sent)  # nothing sent twice


def test_a_send_cut_off_before_it_was_recorded_is_never_resent(world):
    with duckdb.connect(world["warehouse"]) as con:
        con.execute("INSERT INTO notification_outbox (dedupe_key, reference, kind, channel, recipient, destination, "
                    "subject, body, status, attempts, planned_at) VALUES ('test/crash|email', 'co-crashcrashcrash00', "
                    "'finding', 'email', 'data-steward@example.com', 'data-steward@example.com', 'x', 'y', "
                    "'submitting', 1, now())")
    # The process died after the service accepted the POST and before the outbox heard of it.
    client = world["resources"]["opentext"].get_client()
    assert client.submit_email("co-crashcrashcrash00", [Recipient("data-steward@example.com",
                                                                  "data-steward@example.com")], "x", "y").accepted
    before = len(writes(world, "opentext"))
    assert world["run"](["catalog_notifications"], partition_key=DAY).success
    assert query(world, "SELECT status FROM notification_outbox WHERE dedupe_key = 'test/crash|email'") == [("unknown",)]
    assert len(writes(world, "opentext")) == before
    with duckdb.connect(world["warehouse"]) as con:
        assert recover_interrupted(con) == 0  # idempotent: nothing left in between


def plan_tasks(world) -> dict[str, dict]:
    client = world["resources"]["planner"].get_client()
    index = client.load_index()
    return {marker: task for marker, tasks in index.by_marker.items() for task in tasks.values()}


def test_planner_tasks_match_the_findings_and_a_rerun_writes_nothing(world):
    result = world["run"](["planner_tasks"], partition_key=DAY)
    assert result.success
    keys = [r[0] for r in query(world, "SELECT key FROM planner_task_state WHERE status = 'open'")]
    launch_ready = query(world, "SELECT count(*) FROM catalog_quality_report WHERE report_date = ? "
                                "AND rule = 'launch_ready' AND state <> 'resolved'", [DAY])[0][0]
    duplicates = query(world, "SELECT count(DISTINCT s.sku_key) FROM catalog_quality_report r JOIN catalog_snapshot s "
                              "ON s.product_id = r.product_id AND s.snapshot_date = r.report_date "
                              "WHERE r.report_date = ? AND r.rule = 'duplicate_sku'", [DAY])[0][0]
    kinds = Counter(key.split("/", 1)[0] for key in keys)
    assert kinds["launch-ready"] == launch_ready > 0
    assert kinds["duplicate-sku"] == duplicates > 0
    tasks = plan_tasks(world)
    assert all(mk.marker(key) in tasks for key in keys)
    posted = [w for w in writes(world, "planner") if w["method"] == "POST" and w["path"].endswith("/planner/tasks")]
    assert len(posted) == len(keys)  # one POST per task, none blind

    before = len(writes(world, "planner"))
    again = world["run"](["planner_tasks"], partition_key=DAY)
    assert len(writes(world, "planner")) == before
    assert metadata(again, "planner_tasks")["tasks/skipped_unchanged"] == len(keys)  # not even a GET each


def test_dry_run_plans_and_audits_without_writing(world):
    before = len(writes(world, "planner")), len(writes(world, "opentext"))
    config = {"ops": {"planner_tasks": {"config": {"dry_run": True}}}}
    with duckdb.connect(world["warehouse"]) as con:
        con.execute("DELETE FROM planner_task_state WHERE key LIKE 'duplicate-sku/%'")  # so there is work to plan
    result = world["run"](["planner_tasks"], partition_key=DAY, run_config=config)
    assert result.success
    assert (len(writes(world, "planner")), len(writes(world, "opentext"))) == before
    audited = query(world, "SELECT count(*) FROM action_audit WHERE run_id = ? AND dry_run",
                    [result.run_id])[0][0]
    assert audited == metadata(result, "planner_tasks")["writes_total"] > 0
    assert world["run"](["planner_tasks"], partition_key=DAY).success  # put the state back


def test_completing_a_launch_task_moves_the_product_once(world):
    key, product_id, task_id = query(world, "SELECT key, product_id, task_id FROM planner_task_state "
                                            "WHERE key LIKE 'launch-ready/%' ORDER BY key LIMIT 1")[0]
    rules = load_rules()
    person = rules.people["apparel-merchandising@example.com"].entra_id
    world["admin"].post(f"/_sandbox/planner/tasks/{task_id}/complete", json={"user_id": person}).raise_for_status()
    resources = world["resources"]
    with dg.build_sensor_context(instance=world["instance"], resources={"planner": resources["planner"]}) as context:
        requests = list(planner_completed_tasks(context))
    mine = [r for r in requests if r.tags.get("planner/task_id") == task_id]
    assert len(mine) == 1
    run = lambda: dg.Definitions(jobs=[advance_stage_job], resources=resources).resolve_job_def(  # noqa: E731
        "advance_stage_job").execute_in_process(run_config=mine[0].run_config, instance=world["instance"])
    assert run().success
    plytix = resources["plytix"].get_client()
    assert plytix.get_product(product_id)["attributes"]["workflow_stage"] == rules.workflow.next_stage[rules.launch.stage]
    patches = [w for w in writes(world, "plytix") if w["path"].endswith(product_id) and w["method"] == "PATCH"]
    assert run().success  # the same completion again: the product is no longer at the launch stage
    assert len([w for w in writes(world, "plytix") if w["path"].endswith(product_id) and w["method"] == "PATCH"]) \
        == len(patches) == 1
    assert key.startswith("launch-ready/")


def test_image_sync_writes_only_differences_and_then_nothing(world):
    result = world["run"](["plytix_image_sync"], partition_key=DAY)
    assert result.success
    written = metadata(result, "plytix_image_sync")["products_written"]
    audited = query(world, "SELECT record_id FROM action_audit WHERE run_id = ? AND action = 'sync_images'",
                    [result.run_id])
    assert len(audited) == written > 0
    client = world["resources"]["plytix"].get_client()
    for (product_id,) in audited[:5]:
        product = client.get_product(product_id)
        files = {a["id"]: a["filename"] for a in client.product_assets(product_id)}
        hero, market = query(world, "SELECT image_id, licensed_market FROM product_images WHERE snapshot_date = ? "
                                    "AND product_id = ? AND image_role = 'hero'", [DAY, product_id])[0]
        assert files[product["attributes"]["hero_image"]["id"]] == f"{hero}.jpg"
        assert product["attributes"]["image_approval_status"] == "Approved"
        assert product["attributes"]["usage_rights_market"] in (market, "North America")
    before = len(writes(world, "plytix"))
    again = world["run"](["plytix_image_sync"], partition_key=DAY)
    assert metadata(again, "plytix_image_sync")["products_written"] == 0
    assert len(writes(world, "plytix")) == before


def test_keyword_sync_adds_the_product_attributes_once(world):
    result = world["run"](["photoshelter_keyword_sync"], partition_key=DAY)
    assert result.success
    meta = metadata(result, "photoshelter_keyword_sync")
    assert meta["images_written"] == meta["images_missing_keywords"] > 0
    image_id, keywords = query(world, "SELECT record_id, detail->>'keywords' FROM action_audit WHERE run_id = ? "
                                      "AND action = 'add_keywords' LIMIT 1", [result.run_id])[0]
    iptc = world["resources"]["photoshelter"].get_client().iptc(image_id)
    assert all(k.lower() in iptc["keyword"].lower() for k in json.loads(keywords))
    before = len(writes(world, "photoshelter"))
    assert world["run"](["photoshelter_keyword_sync"], partition_key=DAY).success
    assert len(writes(world, "photoshelter")) == before


def test_launch_packages_list_what_is_missing(world):
    assert world["run"](["launch_packages"], partition_key=DAY).success
    rows = query(world, "SELECT launch, complete, missing, hero_image_id FROM launch_packages WHERE package_date = ?",
                 [DAY])
    assert {r[0] for r in rows} == {launch.name for launch in load_rules().launches}
    assert all(complete == (not missing) for _, complete, missing, _ in rows)
    assert all(hero is not None for _, complete, _, hero in rows if complete)
    assert any(not complete for _, complete, _, _ in rows) and any(complete for _, complete, _, _ in rows)


def test_tasks_renamed_by_people_are_restored_through_412_and_429_storms(world):
    admin, person = world["admin"], load_rules().people["data-steward@example.com"].entra_id
    picked = query(world, "SELECT key, task_id FROM planner_task_state WHERE key LIKE 'duplicate-sku/%' "
                          "AND status = 'open' ORDER BY key LIMIT 4")
    for _, task_id in picked:
        admin.post(f"/_sandbox/planner/tasks/{task_id}/edit",
                   json={"user_id": person, "task": {"title": "renamed by a person"}}).raise_for_status()
    with duckdb.connect(world["warehouse"]) as con:  # forget what we knew, as after a lost warehouse
        con.execute("DELETE FROM planner_task_state WHERE key IN (SELECT unnest(?))", [[k for k, _ in picked]])
    before = len(writes(world, "planner"))
    admin.post("/_sandbox/config", json={"planner_concurrent_edit_rate": 0.5}).raise_for_status()
    admin.post("/_sandbox/faults", json={"service": "graph", "rate_limit_rate": 0.1, "storm_length": 3,
                                         "seed": 3}).raise_for_status()
    try:
        result = world["run"](["planner_tasks"], partition_key=DAY)
    finally:
        admin.delete("/_sandbox/faults").raise_for_status()
        admin.post("/_sandbox/config", json={"planner_concurrent_edit_rate": 0}).raise_for_status()
    assert result.success
    client = world["resources"]["planner"].get_client()
    for key, task_id in picked:
        assert mk.title_marker(client.get_task(task_id)["title"]) == mk.marker(key)
    patched = Counter(w["path"] for w in writes(world, "planner")[before:] if w["method"] == "PATCH")
    assert sorted(patched) == sorted(f"/v1.0/planner/tasks/{t}" for _, t in picked)
    assert set(patched.values()) == {1}  # each restored once, whatever the storms did


def test_fixing_a_product_closes_its_task_and_sends_no_new_alert(world):
    truth = world["admin"].get("/_sandbox/ground-truth").json()["ids"]
    only_description = sorted(set(truth["missing_required"]) - set().union(
        *(set(ids) for kind, ids in truth.items() if kind not in ("missing_required",) and not kind.startswith(
            ("planner_", "threekit_", "shopify_")))))
    key, product_id, task_id = query(world, "SELECT key, product_id, task_id FROM planner_task_state WHERE "
                                            "status = 'open' AND key LIKE 'missing-attributes/%' AND product_id IN "
                                            "(SELECT unnest(?)) ORDER BY key LIMIT 1", [only_description])[0]
    admin = world["admin"]
    admin.post("/_sandbox/config", json={"sandbox_clock": f"{NEXT}T06:00:00Z"}).raise_for_status()
    try:  # a person writes the missing description in Plytix the next morning
        world["resources"]["plytix"].get_client().patch_product(product_id, {"attributes": {"description": "Fixed."}})
    finally:
        admin.post("/_sandbox/config", json={"sandbox_clock": ""}).raise_for_status()
    for selection in (EXTRACTION, DERIVED, ["planner_tasks", "catalog_notifications"]):
        assert world["run"](selection, partition_key=NEXT).success
    assert query(world, "SELECT state FROM catalog_quality_report WHERE report_date = ? AND product_id = ? "
                        "AND rule = 'missing_required_attribute'", [NEXT, product_id]) == [("resolved",)]
    client = world["resources"]["planner"].get_client()
    task, details = client.get_task(task_id), client.get_details(task_id)
    assert task["percentComplete"] == 100
    assert f"Resolved: no longer found in the catalog quality report of {NEXT}" in details["description"]
    assert query(world, "SELECT status FROM planner_task_state WHERE key = ?", [key]) == [("completed",)]
    assert query(world, "SELECT count(*) FROM notification_outbox WHERE window_date = ? AND record_id = ?",
                 [NEXT, product_id]) == [(0,)]


def test_a_task_keyed_the_earlier_way_is_rekeyed_not_closed_and_recreated(world):
    """A SKU gains a character keys cannot hold (`SKU-1` -> `SKU-1 Ä`): the earlier version keyed both
    `missing-attributes/SKU-1`, so that task is the one to keep. It is re-keyed in place: no task
    created, none completed, the state row moves to the new key."""
    key, product_id, task_id = query(world, "SELECT key, product_id, task_id FROM planner_task_state WHERE "
                                            "status = 'open' AND key LIKE 'missing-attributes/SKU-%' AND product_id NOT IN "
                                            "(SELECT product_id FROM catalog_quality_report WHERE rule = 'duplicate_sku') "
                                            "ORDER BY key DESC LIMIT 1")[0]
    sku = key.split("/", 1)[1]
    its_tasks = query(world, "SELECT count(*) FROM planner_task_state WHERE status = 'open' AND key LIKE ?",
                      [f"%/{sku}"])[0][0]  # missing attributes, and maybe launch or taxonomy
    admin = world["admin"]
    admin.post("/_sandbox/config", json={"sandbox_clock": f"{NEXT}T07:00:00Z"}).raise_for_status()
    try:
        admin.post(f"/_sandbox/plytix/products/{product_id}/sku", json={"sku": f"{sku} Ä"}).raise_for_status()
    finally:
        admin.post("/_sandbox/config", json={"sandbox_clock": ""}).raise_for_status()
    for selection in (EXTRACTION, DERIVED):
        assert world["run"](selection, partition_key=NEXT).success
    posts_before = [w for w in writes(world, "planner") if w["method"] == "POST"]
    result = world["run"](["planner_tasks"], partition_key=NEXT)
    counts = metadata(result, "planner_tasks")
    assert result.success and counts["tasks/migrated"] == its_tasks and not any(k.startswith("tasks/closed") for k in counts)
    new_key = mk.issue_key("missing-attributes", mk.key_part(f"{sku} Ä"))
    assert query(world, "SELECT key, status, task_id FROM planner_task_state WHERE key IN (?, ?) ORDER BY status",
                 [key, new_key]) == [(new_key, "open", task_id), (key, "rekeyed", task_id)]
    assert [w for w in writes(world, "planner") if w["method"] == "POST"] == posts_before
    client = world["resources"]["planner"].get_client()
    task = client.get_task(task_id)
    assert task["percentComplete"] == 0 and mk.title_marker(task["title"]) == mk.marker(new_key)
    assert client.task_key(task_id) == new_key
