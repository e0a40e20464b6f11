"""The shared webhook hub (sandbox/webhooks.py) against a receiver run by the test.

The hub's admin routes are served in-process (uvicorn in a thread) so the test can register a
builder for a fake service; deliveries go over real loopback HTTP to a small http.server. The app
holds only the hub, on a stand-in for the parts of SandboxState it uses, so the test does not
depend on building a world.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette

from sandbox import webhooks
from sandbox.faults import FaultSpec, FaultState
from tests.conftest import free_port

SERVICE = "testsvc"
TOPICS = ["thing/created", "thing/updated"]


class Receiver:
    """Records every POST; `answer(n)` gives the status for the n-th request (from 1), or a float: sleep that long."""

    def __init__(self):
        self.received: list[dict] = []
        self.answer: Callable[[int], int | float] = lambda n: 200
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._lock:
                    receiver.received.append({"path": self.path, "headers": dict(self.headers.items()), "body": body})
                    n = len(receiver.received)
                answer = receiver.answer(n)
                try:
                    if isinstance(answer, float):
                        time.sleep(answer)
                        answer = 200
                    self.send_response(answer)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the hub gave up waiting and closed the connection

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/token-abc"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def ids(self) -> list[str]:
        return [r["headers"]["X-Test-Delivery"] for r in self.received]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def build(state, topic: str, resource_id: str | None, sample: bool) -> webhooks.Outgoing:
    """A test-only builder: the body names the resource; headers carry both ids."""
    if topic not in TOPICS:
        raise ValueError(f"unknown topic {topic}")
    if resource_id is not None and resource_id.startswith("missing"):
        raise KeyError(resource_id)
    body = json.dumps({"id": resource_id, "topic": topic, "sample": sample}).encode()
    return webhooks.Outgoing(topic, body, lambda delivery_id, event_id: {
        "Content-Type": "application/json", "X-Test-Topic": topic, "X-Test-Delivery": delivery_id,
        "X-Test-Event": event_id}, resource_id)


class HubState:
    """What the hub uses of SandboxState: the fault specs, per-service state and the clock."""

    def __init__(self):
        self.faults = FaultState()
        self.service_state: dict = {}

    def per_service(self, service: str, factory):
        if service not in self.service_state:
            self.service_state[service] = factory()
        return self.service_state[service]

    def now(self) -> datetime:
        return datetime.now(UTC).replace(tzinfo=None)


@pytest.fixture(scope="module")
def served() -> Iterator[tuple]:
    state = HubState()
    app = Starlette(routes=webhooks.admin_routes(state))
    app.state.sandbox = state
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "in-process sandbox did not start"
    try:
        yield app, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def hub_env(served, monkeypatch):
    app, url = served
    monkeypatch.setitem(webhooks.BUILDERS, SERVICE, build)
    monkeypatch.setitem(webhooks.TOPICS, SERVICE, TOPICS)
    monkeypatch.setitem(webhooks.TIMEOUTS_S, SERVICE, (1.0, 0.3))
    monkeypatch.setitem(webhooks.DEFAULT_RETRY_SCHEDULE_S, SERVICE, [0.05, 0.05])
    receiver = Receiver()
    with httpx.Client(base_url=url, timeout=10) as admin:
        app.state.sandbox.service_state.clear()  # a fresh hub, as after a reset: no registrations, no log
        yield app, admin, receiver
    app.state.sandbox.faults.clear(SERVICE)
    receiver.close()


def register(admin, address: str, **extra) -> dict:
    reply = admin.post("/_sandbox/webhooks", json={"service": SERVICE, "address": address, **extra})
    assert reply.status_code == 201, reply.text
    return reply.json()


def deliver(admin, topic: str = "thing/updated", resource_id: str = "r-1", **extra) -> httpx.Response:
    return admin.post("/_sandbox/webhooks/deliver",
                      json={"service": SERVICE, "topic": topic, "resource_id": resource_id, **extra})


def log(admin) -> dict:
    return admin.get("/_sandbox/webhooks", params={"service": SERVICE}).json()


def wait_for(condition: Callable[[], bool], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.02)


def test_registration_shape_defaults_and_replacement(hub_env):
    _, admin, receiver = hub_env
    first = register(admin, receiver.url, topics=["thing/created"])
    assert first["service"] == SERVICE and first["topics"] == ["thing/created"] and first["active"] is True
    assert (first["duplicate_rate"], first["reorder_window_s"], first["retry_schedule_s"]) == (0, 0, [0.05, 0.05])
    replaced = register(admin, receiver.url, duplicate_rate=0.5, retry_schedule_s=[1, 2])
    assert replaced["id"] != first["id"] and replaced["topics"] == TOPICS  # no topics means all of them
    assert [r["id"] for r in log(admin)["registrations"]] == [replaced["id"]]
    for bad in ({"service": "nosuch", "address": receiver.url}, {"service": SERVICE, "address": receiver.url,
                                                                  "topics": ["thing/deleted"]},
                {"service": SERVICE, "address": "not a url"}, {"service": SERVICE, "address": receiver.url,
                                                               "duplicate_rate": 2}):
        assert admin.post("/_sandbox/webhooks", json=bad).status_code == 400


def test_delivery_sends_the_frozen_body_and_headers_and_logs_it(hub_env):
    _, admin, receiver = hub_env
    registration = register(admin, receiver.url, topics=["thing/updated"])
    reply = deliver(admin, resource_id="r-42")
    assert reply.status_code == 202
    event_id, [delivery_id] = reply.json()["event_id"], reply.json()["webhook_ids"]
    wait_for(lambda: len(log(admin)["deliveries"]) == 1)
    [got] = receiver.received
    assert got["path"] == "/hooks/token-abc"
    assert json.loads(got["body"]) == {"id": "r-42", "topic": "thing/updated", "sample": False}
    assert (got["headers"]["X-Test-Delivery"], got["headers"]["X-Test-Event"]) == (delivery_id, event_id)
    [entry] = log(admin)["deliveries"]
    assert entry["webhook_id"] == delivery_id and entry["event_id"] == event_id
    assert entry["registration_id"] == registration["id"] and entry["topic"] == "thing/updated"
    assert (entry["attempt"], entry["status_code"], entry["duplicate"], entry["resource_id"]) == (1, 200, False, "r-42")
    assert entry["sent_at"].endswith("Z")
    # A topic the registration does not take goes nowhere.
    assert deliver(admin, topic="thing/created").json()["webhook_ids"] == []


def test_two_registrations_get_two_delivery_ids_and_one_event_id(hub_env):
    _, admin, receiver = hub_env
    other = Receiver()
    try:
        register(admin, receiver.url)
        register(admin, other.url)
        reply = deliver(admin).json()
        assert len(set(reply["webhook_ids"])) == 2
        wait_for(lambda: len(receiver.received) == 1 and len(other.received) == 1)
        assert {receiver.received[0]["headers"]["X-Test-Event"], other.received[0]["headers"]["X-Test-Event"]} == \
            {reply["event_id"]}
        assert set(receiver.ids() + other.ids()) == set(reply["webhook_ids"])
    finally:
        other.close()


def test_failed_deliveries_are_retried_verbatim_with_the_same_delivery_id(hub_env):
    _, admin, receiver = hub_env
    receiver.answer = lambda n: 500 if n <= 2 else 200
    register(admin, receiver.url, retry_schedule_s=[0.05, 0.05, 0.05])
    [delivery_id] = deliver(admin).json()["webhook_ids"]
    wait_for(lambda: len(log(admin)["deliveries"]) == 3)
    assert receiver.ids() == [delivery_id] * 3
    assert len({r["body"] for r in receiver.received}) == 1
    assert [(e["attempt"], e["status_code"]) for e in log(admin)["deliveries"]] == [(1, 500), (2, 500), (3, 200)]
    assert log(admin)["registrations"][0]["active"] is True


def test_a_timeout_counts_as_a_failure_with_no_status(hub_env):
    _, admin, receiver = hub_env
    receiver.answer = lambda n: 1.0 if n == 1 else 200  # longer than the 0.3 s answer timeout
    register(admin, receiver.url)
    deliver(admin)
    wait_for(lambda: len(log(admin)["deliveries"]) == 2)
    assert [(e["attempt"], e["status_code"]) for e in log(admin)["deliveries"]] == [(1, None), (2, 200)]


def test_exhausted_schedule_deactivates_the_registration(hub_env):
    _, admin, receiver = hub_env
    receiver.answer = lambda n: 503
    register(admin, receiver.url, retry_schedule_s=[0.02, 0.02])
    deliver(admin)
    wait_for(lambda: not log(admin)["registrations"][0]["active"])
    assert [e["attempt"] for e in log(admin)["deliveries"]] == [1, 2, 3]  # the first try and two retries
    assert deliver(admin).json()["webhook_ids"] == []  # an inactive registration gets nothing
    refused = register(admin, f"http://127.0.0.1:{free_port()}/gone", retry_schedule_s=[0.02])
    deliver(admin)
    wait_for(lambda: not next(r for r in log(admin)["registrations"] if r["id"] == refused["id"])["active"])
    statuses = [e["status_code"] for e in log(admin)["deliveries"] if e["registration_id"] == refused["id"]]
    assert statuses == [None, None]  # connection refused, twice


def test_duplicates_resend_the_same_delivery(hub_env):
    _, admin, receiver = hub_env
    register(admin, receiver.url, duplicate_rate=1)
    ids = [deliver(admin, resource_id=f"r-{i}").json()["webhook_ids"][0] for i in range(3)]
    wait_for(lambda: len(receiver.received) == 6)
    assert sorted(receiver.ids()) == sorted(ids * 2)
    # The log line is written after the receiver answered: wait for it rather than race it.
    duplicates = lambda: sorted(e["webhook_id"] for e in log(admin)["deliveries"] if e["duplicate"])  # noqa: E731
    wait_for(lambda: len(duplicates()) == 3)
    assert duplicates() == sorted(ids)


def test_reorder_window_holds_deliveries_and_shuffles_them(hub_env):
    _, admin, receiver = hub_env
    register(admin, receiver.url, reorder_window_s=0.5)
    ids = [deliver(admin, resource_id=f"r-{i}").json()["webhook_ids"][0] for i in range(12)]
    wait_for(lambda: len(receiver.received) == 12)
    assert sorted(receiver.ids()) == sorted(ids)
    assert receiver.ids() != ids  # 1 in 12! that a shuffle keeps the order


def test_emit_from_outside_the_event_loop_is_delivered_on_it(hub_env):
    app, admin, receiver = hub_env
    register(admin, receiver.url)
    hub = webhooks.hub(app.state.sandbox)
    result = hub.emit(SERVICE, build(None, "thing/created", "r-7", False))  # from this (non-loop) thread
    wait_for(lambda: len(receiver.received) == 1)
    assert receiver.ids() == result["webhook_ids"]


def test_fault_error_rate_loses_attempts_before_they_are_sent(hub_env):
    app, admin, receiver = hub_env
    app.state.sandbox.faults.set(SERVICE, FaultSpec(error_rate=1))
    register(admin, receiver.url, retry_schedule_s=[0.02])
    deliver(admin)
    wait_for(lambda: not log(admin)["registrations"][0]["active"])
    assert receiver.received == []
    assert [e["status_code"] for e in log(admin)["deliveries"]] == [None, None]


def test_deliver_errors_and_delete(hub_env):
    _, admin, receiver = hub_env
    registration = register(admin, receiver.url)
    assert deliver(admin, resource_id="missing-1").status_code == 404
    assert deliver(admin, topic="thing/deleted").status_code == 400
    assert admin.post("/_sandbox/webhooks/deliver", json={"service": "nosuch", "topic": "x"}).status_code == 400
    sample = deliver(admin, resource_id=None, sample=True)
    assert sample.status_code == 202
    wait_for(lambda: len(receiver.received) == 1)
    assert json.loads(receiver.received[0]["body"])["sample"] is True
    assert admin.delete(f"/_sandbox/webhooks/{registration['id']}").status_code == 204
    assert admin.delete(f"/_sandbox/webhooks/{registration['id']}").status_code == 404
    assert log(admin)["registrations"] == [] and deliver(admin).json()["webhook_ids"] == []
