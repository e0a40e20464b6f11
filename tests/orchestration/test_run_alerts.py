"""Alerts on failed materialisations, end to end: a real failing run against the sandbox, the sensor
reading it from a real instance, the alert run sending through the outbox to the OpenText sandbox."""

from __future__ import annotations

import json

import dagster as dg
import duckdb
import httpx
import pytest

from orchestration.definitions import catalog_assets
from sensors.run_alerts import materialisation_alerts, run_alert_job
from tests.assets.test_actions import action_resources
from tests.conftest import start_sandbox, stop_sandbox

DAY = "2026-11-22"
EXTRACT = ["plytix_product_changes"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    proc, url = start_sandbox(products=200)
    instance = dg.DagsterInstance.local_temp(str(tmp_path_factory.mktemp("dagster_home")))
    resources = action_resources(url, str(tmp_path_factory.mktemp("wh") / "warehouse.duckdb"))
    admin = httpx.Client(base_url=url, timeout=30)
    yield {"instance": instance, "resources": resources, "admin": admin, "cursor": None}
    admin.close()
    instance.dispose()
    stop_sandbox(proc)


def materialise(world, **tags) -> dg.ExecuteInProcessResult:
    return dg.materialize(catalog_assets, selection=EXTRACT, resources=world["resources"], instance=world["instance"],
                          partition_key=DAY, raise_on_error=False, tags=tags)


def tick(world) -> list[dg.RunRequest]:
    context = dg.build_sensor_context(instance=world["instance"], cursor=world["cursor"])
    requests = [r for r in materialisation_alerts(context) if isinstance(r, dg.RunRequest)]
    world["cursor"] = context.cursor
    return requests


def send(world, request: dg.RunRequest) -> list[dict]:
    job = dg.Definitions(jobs=[run_alert_job], resources=world["resources"]).resolve_job_def(run_alert_job.name)
    assert job.execute_in_process(run_config=request.run_config, instance=world["instance"]).success
    writes = world["admin"].get("/_sandbox/writes", params={"service": "opentext"}).json()["writes"]
    return [w for w in writes if w["status"] < 300]


def config(request: dg.RunRequest) -> dict:
    return request.run_config["ops"]["send_run_alert"]["config"]


def test_a_failure_alerts_once_names_what_failed_and_recovers(world):
    # Plytix refusing every search (a 400 is never retried by the client: the run fails fast)
    world["admin"].post("/_sandbox/faults", json={"service": "plytix", "error_rate": 1.0,
                                                  "error_statuses": [400]}).raise_for_status()
    failed = materialise(world)
    assert not failed.success
    requests = tick(world)
    assert [config(r)["kind"] for r in requests] == ["failure"]
    alert = config(requests[0])
    assert alert["pairs"] == [f"plytix_product_changes|{DAY}"]
    assert alert["error_class"] == "RequestRejected" and "plytix POST /api/v1/products/search" in alert["message"]
    assert requests[0].run_key == f"failure:{failed.run_id}"
    sent = send(world, requests[0])
    assert len(sent) == 1
    body = json.dumps(sent[0]["body"])
    assert "RequestRejected" in body and "plytix_product_changes" in body and f"/runs/{failed.run_id}" in body

    assert not materialise(world).success  # still broken, same error class: no second alert
    assert tick(world) == []
    assert not materialise(world, **{"dagster/will_retry": "true"}).success  # will be retried: no alert
    assert tick(world) == []

    world["admin"].delete("/_sandbox/faults").raise_for_status()
    assert materialise(world).success
    recovery = tick(world)
    assert [config(r)["kind"] for r in recovery] == ["recovery"]
    assert config(recovery[0])["pairs"] == [f"plytix_product_changes|{DAY}"]
    assert len(send(world, recovery[0])) == 2
    assert send(world, recovery[0])[-1] == send(world, recovery[0])[-1]  # re-running the alert sends nothing new
    with duckdb.connect(world["resources"]["warehouse"].database, read_only=True) as con:
        kinds = con.execute("SELECT kind, status FROM notification_outbox ORDER BY planned_at").fetchall()
    assert [k for k, _ in kinds] == ["run_failure", "run_recovery"]
    assert all(status == "accepted" for _, status in kinds)
