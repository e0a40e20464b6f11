"""The Threekit webhook receiver, served by uvicorn in a thread and fed by the sandbox's webhook hub
over real HTTP: the path token, one stored hint per delivery id whatever the duplicates, and the
sensor that turns hints into one run each."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import dagster as dg
import httpx
import pytest
import uvicorn
from starlette.applications import Starlette

from sensors.threekit_sensors import Hints, threekit_webhook_routes, threekit_webhook_sensor
from tests.conftest import free_port

TOKEN = "test-path-token-5b1f0c"


@pytest.fixture
def receiver(tmp_path) -> Iterator[tuple[str, str]]:
    path = str(tmp_path / "threekit_webhooks.sqlite3")
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(Starlette(routes=threekit_webhook_routes(path, TOKEN)), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "receiver did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", path
    server.should_exit = True
    thread.join(timeout=10)


def stored(path: str) -> list[tuple]:
    hints = Hints(path)
    try:
        return hints.after(0)
    finally:
        hints.close()


def test_a_delivery_and_its_duplicates_are_one_hint(sandbox, receiver):
    url, path = receiver
    order = httpx.get(f"{sandbox.url}/threekit/api/orders", params={"perPage": 1},
                      headers={"Authorization": "Bearer sandbox-threekit-token"}).json()["orders"][0]
    registration = sandbox.admin.post("/_sandbox/webhooks", json={
        "service": "threekit", "address": f"{url}/threekit/{TOKEN}", "topics": ["order.updated"],
        "duplicate_rate": 1.0}).json()
    try:
        sandbox.admin.post("/_sandbox/webhooks/deliver", json={"service": "threekit", "topic": "order.updated",
                                                               "resource_id": order["id"]}).raise_for_status()
        deadline = time.monotonic() + 30
        while True:  # the hub delivers asynchronously: the delivery and its injected duplicate
            log = [d for d in sandbox.admin.get("/_sandbox/webhooks", params={"service": "threekit"}).json()[
                "deliveries"] if d["registration_id"] == registration["id"]]
            if len(log) >= 2:
                break
            assert time.monotonic() < deadline, f"deliveries not seen: {log}"
            time.sleep(0.1)
    finally:
        sandbox.admin.delete(f"/_sandbox/webhooks/{registration['id']}")
    assert [d["status_code"] for d in log] == [200, 200] and [d["duplicate"] for d in log] == [False, True]
    rows = stored(path)
    assert [(topic, resource) for _, _, topic, resource in rows] == [("order.updated", order["id"])]
    assert rows[0][1] == log[0]["webhook_id"]


def test_without_the_path_token_or_a_delivery_id_nothing_is_stored(receiver):
    url, path = receiver
    wrong = httpx.post(f"{url}/threekit/not-the-token", json={"topic": "order.updated"},
                       headers={"X-Threekit-Delivery-Id": "d-1", "X-Threekit-Topic": "order.updated"})
    assert wrong.status_code == 404
    missing = httpx.post(f"{url}/threekit/{TOKEN}", json={"topic": "order.updated"})
    assert missing.status_code == 400
    garbage = httpx.post(f"{url}/threekit/{TOKEN}", content=b"not json", headers={"X-Threekit-Delivery-Id": "d-2"})
    assert garbage.json() == {"received": True, "duplicate": False}  # a hint all the same: the run re-reads
    assert [(delivery, resource) for _, delivery, _, resource in stored(path)] == [("d-2", None)]


def test_the_sensor_asks_for_one_run_per_batch_of_hints(receiver, monkeypatch):
    url, path = receiver
    monkeypatch.setenv("CATALOG_OPS_THREEKIT_WEBHOOKS_PATH", path)
    instance = dg.DagsterInstance.ephemeral()
    with dg.build_sensor_context(instance=instance) as context:
        assert isinstance(threekit_webhook_sensor(context), dg.SkipReason)
    for n in (1, 2, 2):  # a retry of delivery 2 is not a new hint
        httpx.post(f"{url}/threekit/{TOKEN}", json={}, headers={"X-Threekit-Delivery-Id": f"d-{n}",
                                                                "X-Threekit-Topic": "asset.published"})
    with dg.build_sensor_context(instance=instance) as context:
        request = threekit_webhook_sensor(context)
        cursor = context.cursor
    assert isinstance(request, dg.RunRequest) and request.run_key == "threekit-webhooks:2"
    assert request.tags["catalog-ops/threekit-deliveries"] == "2"
    with dg.build_sensor_context(instance=instance, cursor=cursor) as context:
        assert isinstance(threekit_webhook_sensor(context), dg.SkipReason)
