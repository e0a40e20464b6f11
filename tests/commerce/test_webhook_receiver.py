"""The webhook receiver over real loopback HTTP (uvicorn on a free port): HMAC valid with the current or
the previous secret, invalid, tampered, missing; a replayed Webhook-Id stored once. And the sensor:
cursor, run keys, batches; and what the inbox tells IT."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import dagster as dg
import httpx
import pytest
import uvicorn

from assets.commerce_notifications import inbox_problems
from orchestration.webhooks import Inbox, create_app
from resources.shopify_webhooks import shopify_hmac
from sandbox.services.shopify_webhooks import template_bytes
from sensors.webhook_inbox import EVENTS_PER_RUN, webhook_inbox_sensor
from tests.conftest import free_port

BODY = template_bytes("orders_create.json")  # a real payload's exact bytes


@pytest.fixture
def receiver(tmp_path):
    inbox = Inbox(tmp_path / "inbox.sqlite3")
    server = uvicorn.Server(uvicorn.Config(create_app(inbox, ["new-secret", "old-secret"]), host="127.0.0.1",
                                           port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    with httpx.Client(base_url=f"http://127.0.0.1:{server.config.port}", timeout=10) as client:
        yield client, inbox
    server.should_exit = True
    thread.join(timeout=10)
    inbox.close()


def post(client: httpx.Client, body: bytes, signature: str | None, webhook_id: str | None = "wh-1") -> httpx.Response:
    headers = {"Content-Type": "application/json", "X-Shopify-Topic": "orders/create",
               "X-Shopify-Event-Id": "ev-1", "X-Shopify-Shop-Domain": "sandbox.myshopify.com"}
    if signature is not None:
        headers["X-Shopify-Hmac-Sha256"] = signature
    if webhook_id is not None:
        headers["X-Shopify-Webhook-Id"] = webhook_id
    return client.post("/webhooks/shopify", content=body, headers=headers)


def test_a_valid_signature_is_stored_verbatim_before_the_200(receiver):
    client, inbox = receiver
    answer = post(client, BODY, shopify_hmac(BODY, "new-secret"))
    assert answer.status_code == 200 and answer.json() == {"stored": True}
    [event] = inbox.events(1, 10)
    assert event.body == BODY and event.topic == "orders/create" and event.webhook_id == "wh-1"


def test_the_previous_secret_still_counts_during_a_rotation(receiver):
    client, inbox = receiver
    assert post(client, BODY, shopify_hmac(BODY, "old-secret")).status_code == 200
    assert len(inbox.events(1, 10)) == 1


@pytest.mark.parametrize("case", ["wrong secret", "tampered body", "missing", "not base64"])
def test_bad_or_missing_signatures_are_401_and_store_nothing(receiver, case):
    client, inbox = receiver
    signature, body = {"wrong secret": (shopify_hmac(BODY, "another-secret"), BODY),
                       "tampered body": (shopify_hmac(BODY, "new-secret"), BODY.replace(b"1", b"2", 1)),
                       "missing": (None, BODY), "not base64": ("%%%", BODY)}[case]
    answer = post(client, body, signature)
    assert answer.status_code == 401
    assert "secret" not in answer.text  # says nothing about the secrets
    assert inbox.events(1, 10) == []


def test_a_replayed_webhook_id_is_stored_once(receiver):
    client, inbox = receiver
    signature = shopify_hmac(BODY, "new-secret")
    first, again = post(client, BODY, signature), post(client, BODY, signature)
    assert (first.status_code, again.status_code) == (200, 200)  # Shopify must stop retrying either way
    assert (first.json()["stored"], again.json()["stored"]) == (True, False)
    assert post(client, BODY, signature, webhook_id="wh-2").json()["stored"]  # a new delivery is new
    assert [e.webhook_id for e in inbox.events(1, 10)] == ["wh-1", "wh-2"]
    assert post(client, BODY, signature, webhook_id=None).status_code == 400  # no id: cannot dedupe


def test_the_sensor_asks_once_per_range_of_new_events(tmp_path, monkeypatch):
    path = tmp_path / "inbox.sqlite3"
    monkeypatch.setenv("CATALOG_OPS_WEBHOOK_INBOX_PATH", str(path))
    context = dg.build_sensor_context(cursor=None)
    assert isinstance(webhook_inbox_sensor(context), dg.SkipReason)  # no inbox yet
    inbox = Inbox(path)
    total = EVENTS_PER_RUN * 2 + 50
    for n in range(total):
        inbox.add(f"wh-{n}", "orders/updated", b"{}")
    result = webhook_inbox_sensor(dg.build_sensor_context(cursor=None))
    keys = [r.run_key for r in result.run_requests]
    assert keys == [f"shopify-webhooks:{a}-{b}" for a, b in
                    [(1, EVENTS_PER_RUN), (EVENTS_PER_RUN + 1, 2 * EVENTS_PER_RUN), (2 * EVENTS_PER_RUN + 1, total)]]
    assert result.run_requests[0].run_config["ops"]["apply_shopify_webhooks"]["config"] == {
        "first_seq": 1, "last_seq": EVENTS_PER_RUN}
    assert result.cursor == str(total)
    assert isinstance(webhook_inbox_sensor(dg.build_sensor_context(cursor=result.cursor)), dg.SkipReason)
    # A tick replayed from an old cursor asks for the same run keys: Dagster launches them once.
    assert [r.run_key for r in webhook_inbox_sensor(dg.build_sensor_context(cursor=None)).run_requests] == keys
    inbox.add("wh-late", "orders/updated", b"{}")
    later = webhook_inbox_sensor(dg.build_sensor_context(cursor=result.cursor))
    assert [r.run_key for r in later.run_requests] == [f"shopify-webhooks:{total + 1}-{total + 1}"]
    inbox.close()


def test_failed_and_stuck_inbox_events_are_it_problems(tmp_path, monkeypatch):
    path = tmp_path / "inbox.sqlite3"
    monkeypatch.setenv("CATALOG_OPS_WEBHOOK_INBOX_PATH", str(path))
    inbox = Inbox(path)
    inbox.add("wh-1", "orders/updated", b"{}")
    inbox.add("wh-2", "returns/update", b"{}")
    inbox.mark({2: ("failed", "KeyError: 'order_id'")}, "run-1")
    now = datetime.now(UTC)
    assert [p.key for p in inbox_problems(now, backlog_minutes=30)] == ["webhook-failed/2"]
    later = inbox_problems(now + timedelta(minutes=31), backlog_minutes=30)  # seq 1 still waits for a run
    assert [p.key for p in later] == ["webhook-failed/2", "webhook-backlog/1"]
    inbox.close()


def test_the_receiver_will_not_listen_beyond_loopback_on_the_public_sandbox_secret(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "SHOPIFY_WEBHOOK_SECRET"}
    done = subprocess.run([sys.executable, "-m", "orchestration.cli", "webhooks", "--host", "0.0.0.0", "--port",
                           str(free_port()), "--inbox", str(tmp_path / "inbox.sqlite3")], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and "SHOPIFY_WEBHOOK_SECRET" in done.stderr
    assert not (tmp_path / "inbox.sqlite3").exists()
