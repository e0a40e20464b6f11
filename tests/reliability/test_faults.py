"""The whole pipeline under the faults real services show (5xx, 429 storms, connections dropped
mid-body, latency spikes, tokens expiring mid-run) ends where a fault-free run of the same world ends:
every warehouse table the same, and nothing created twice in the services. Persistent malformed
answers fail the run with an error naming the service, the request, the page and the request id, and
leave nothing that looks complete."""

from __future__ import annotations

import json
import logging
import re
import threading
from collections import Counter

import dagster as dg
import duckdb
import httpx
import pytest

from orchestration.definitions import catalog_assets
from resources.plytix import PlytixResource
from sensors.run_alerts import failure_of
from tests.assets.test_catalog_assets import resources_for
from tests.conftest import start_sandbox, stop_sandbox
from tests.reliability.pipeline import RANGE, WORLD, fingerprints, run_pipeline

pytestmark = pytest.mark.slow  # three sandboxes and two whole pipelines, the faulty one waiting out its faults

PRODUCTS = 300
# Every service the sandbox emulates, by path prefix (token endpoints are hosts of their own).
SERVICES = ["plytix", "plytix-auth", "photoshelter", "shopify", "threekit", "msauth", "graph", "opentext-auth",
            "opentext"]
FAULTS = {"error_rate": 0.05, "rate_limit_rate": 0.02, "storm_length": 3, "drop_rate": 0.01,
          "latency_rate": 0.03, "latency_ms": 400}
# OpenText has no idempotency key and no lookup by reference (opentext.md §7): a 500/502 or a cut answer
# to a submit may have created the job, so the outbox rightly parks the message as `unknown` for a person
# instead of sending it again, and no run can equal a fault-free one there. Its messaging host gets the
# faults the contract says created nothing (503, 429 storms) and latency; its token host gets all of them.
OPENTEXT_MESSAGING = {**FAULTS, "error_statuses": [503], "drop_rate": 0}
# Services whose tokens the sandbox can expire (Shopify and Threekit use static tokens). The faulty
# sandbox also issues 30 s tokens, so clients refresh before expiry as well as after a 401.
EXPIRING = ["plytix", "photoshelter", "msauth", "opentext"]
SHORT_TOKENS = ["plytix_token_ttl_s=30", "msauth_token_ttl_s=30", "opentext_token_ttl_s=30",
                "photoshelter_session_idle_ttl_s=30"]


@pytest.fixture(scope="module")
def module_env():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CATALOG_OPS_ACTIONS_MAX_AGE_DAYS", "100000")  # the fixed world's day is "recent"
        # Injected faults need no real waiting: every retry wait is a tenth (the faults are tested, not the clock).
        patch.setenv("CATALOG_OPS_HTTP_RETRY_DELAY_SCALE", "0.1")
        yield


@pytest.fixture(scope="module")
def sandboxes(module_env):
    """A clean and a faulty sandbox of the same seed and world, started side by side."""
    started: dict[str, tuple] = {}

    def start(name: str, extra: list[str]) -> None:
        started[name] = start_sandbox(products=PRODUCTS, extra=extra)

    threads = [threading.Thread(target=start, args=("clean", WORLD)),
               threading.Thread(target=start, args=("faulty", [*WORLD, *SHORT_TOKENS]))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert set(started) == {"clean", "faulty"}, "a sandbox did not start"
        yield {name: url for name, (_, url) in started.items()}
    finally:
        for proc, _ in started.values():
            stop_sandbox(proc)


class TokenExpirer(threading.Thread):
    """Expires every issued token of the services that have them, every `every_s`, while a run goes.

    Not more often: a client re-authenticates once per call (a second 401 right after means the
    credentials are wrong), and a real token does not expire twice within one call's retries."""

    def __init__(self, url: str, every_s: float = 10.0):
        super().__init__(daemon=True)
        self.url, self.every_s = url, every_s
        self.stop = threading.Event()
        self.rounds = 0

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as admin:
            while not self.stop.wait(self.every_s):
                for service in EXPIRING:
                    admin.post("/_sandbox/tokens/expire", json={"service": service}).raise_for_status()
                self.rounds += 1


class LostAnswers(logging.Handler):
    """Counts Planner POSTs whose answer a fault took (only the faulty run has any)."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += "answer lost" in record.getMessage()


@pytest.fixture(scope="module")
def runs(sandboxes, tmp_path_factory):
    """The same pipeline on both sandboxes at once (the faulty run mostly waits out its faults)."""
    folder = tmp_path_factory.mktemp("faults")
    lost = LostAnswers()
    logging.getLogger("catalog_ops.planner").addHandler(lost)
    with httpx.Client(base_url=sandboxes["faulty"], timeout=30) as admin:
        for seed, service in enumerate(SERVICES, start=1):
            spec = OPENTEXT_MESSAGING if service == "opentext" else FAULTS
            admin.post("/_sandbox/faults", json={"service": service, **spec, "seed": seed}).raise_for_status()
        clean: dict = {}
        clean_thread = threading.Thread(
            target=lambda: clean.update(run=run_pipeline(sandboxes["clean"], folder / "clean")))
        expirer = TokenExpirer(sandboxes["faulty"])
        clean_thread.start()
        expirer.start()
        try:
            faulty = run_pipeline(sandboxes["faulty"], folder / "faulty")
        finally:
            expirer.stop.set()
            expirer.join()
            clean_thread.join()
            logging.getLogger("catalog_ops.planner").removeHandler(lost)
        injected = admin.get("/_sandbox/faults").json()["injected"]
        admin.delete("/_sandbox/faults").raise_for_status()
    assert "run" in clean, "the fault-free run failed (see its log above)"
    return {"clean": clean["run"], "faulty": faulty, "injected": injected, "expiry_rounds": expirer.rounds,
            "planner_lost_answers": lost.count}


def test_the_faults_really_happened(runs):
    injected = runs["injected"]
    kinds = {"5xx": sum(n for k, n in injected.items() if k.isdigit() and k != "429"),
             "429": injected.get("429", 0), "drop": injected.get("drop", 0)}
    print(f"\ninjected: {injected}; token expiry rounds: {runs['expiry_rounds']}; Planner POST answers lost: "
          f"{runs['planner_lost_answers']}; delivery passes: {runs['faulty'].delivery_passes}; seconds per step: "
          f"clean {runs['clean'].seconds}, faulty {runs['faulty'].seconds}")
    # ~900 requests at these rates: about 45 5xx, 18 storms of three 429s and 9 drops (the seeds fix them).
    assert kinds["5xx"] >= 15 and kinds["429"] >= 15 and kinds["drop"] >= 3, injected
    assert runs["expiry_rounds"] >= 2


def test_every_table_matches_the_fault_free_run(runs, sandboxes):
    clean = fingerprints(runs["clean"].warehouse, sandboxes["clean"])
    faulty = fingerprints(runs["faulty"].warehouse, sandboxes["faulty"])
    assert sorted(faulty) == sorted(clean)
    differ = {}
    for table, expected in clean.items():
        got = faulty[table]
        if (got.rows, got.digest) != (expected.rows, expected.digest):
            differ[table] = {"rows": (expected.rows, got.rows),
                             "missing": sorted(set(expected.sample) - set(got.sample))[:2],
                             "extra": sorted(set(got.sample) - set(expected.sample))[:2]}
    assert not differ, differ
    # The comparison covers every group, and the outbox ended where the fault-free one did: all delivered.
    for table in ("catalog_snapshot", "planner_task_state", "notification_outbox", "shopify_orders",
                  "threekit_configurations", "configurator_findings"):
        assert clean[table].rows > 0, table
    with duckdb.connect(runs["faulty"].warehouse, read_only=True) as con:
        assert con.execute("SELECT DISTINCT status FROM notification_outbox").fetchall() == [("delivered",)]


def successful_writes(url: str) -> list[dict]:
    reply = httpx.get(f"{url}/_sandbox/writes", timeout=30).raise_for_status()
    return [w for w in reply.json()["writes"] if w["status"] < 300]


def creations(writes: list[dict]) -> Counter:
    """What each non-idempotent create made: an OpenText job per reference, a Planner task per title."""
    made = Counter()
    for w in writes:
        if w["service"] == "opentext":
            made[("opentext", w["body"]["customer_reference"])] += 1
        elif w["service"] == "planner" and w["method"] == "POST":
            made[("planner", w["path"], w["body"].get("title") or w["body"].get("name"))] += 1
    return made


def updates(writes: list[dict]) -> set[str]:
    """Every other write, with the ids each sandbox mints for Planner tasks and buckets, and the wall-clock
    instant a Threekit status note carries, masked."""
    out = set()
    for w in writes:
        if w["service"] == "opentext" or (w["service"] == "planner" and w["method"] == "POST"):
            continue
        text = json.dumps([w["service"], w["method"], w["path"], w["body"]], sort_keys=True)
        if w["service"] == "planner":
            text = re.sub(r'(/planner/tasks/|"bucketId": ")[^/"]+', r"\1<id>", text)
        text = re.sub(r'("statusNoteAt": ")[^"]+', r"\1<now>", text)
        out.add(text)
    return out


def test_nothing_is_created_twice_in_the_services(runs, sandboxes):
    clean, faulty = successful_writes(sandboxes["clean"]), successful_writes(sandboxes["faulty"])
    made = creations(faulty)
    twice = {key: n for key, n in made.items() if n > 1}
    assert not twice, twice
    assert made == creations(clean)
    assert {k[0] for k in made} == {"opentext", "planner"}
    # Updates are idempotent: the same ones (a retried one may land twice, to the same effect).
    assert updates(faulty) == updates(clean)
    assert Counter(w["service"] for w in faulty) >= Counter(w["service"] for w in clean)


@pytest.fixture(scope="module")
def malformed_run(module_env, tmp_path_factory):
    """Plytix answers the second page of the product read with a truncated body, every time it is asked:
    on each of the three attempts (Dagster retries the extraction twice), and every search after that."""
    proc, url = start_sandbox(products=PRODUCTS, extra=WORLD)
    folder = tmp_path_factory.mktemp("malformed")
    (folder / "dagster_home").mkdir()
    warehouse = str(folder / "warehouse.duckdb")
    # Three tries a call instead of eight: the same path, a third of the waiting.
    plytix = PlytixResource(auth_url=f"{url}/plytix-auth", api_url=f"{url}/plytix", api_key="sandbox-plytix-key",
                            api_password="sandbox-plytix-password", max_requests_per_second=0, max_attempts=3)
    # The count probe and page 1 answer; page 2 is cut, on each of its three tries; then the next attempt.
    script = (["ok", "ok"] + ["malformed"] * 3) * 3
    try:
        httpx.post(f"{url}/_sandbox/faults", json={"service": "plytix", "path_contains": "/api/v1/products/search",
                                                   "malformed_rate": 1, "script": script}).raise_for_status()
        with dg.DagsterInstance.local_temp(str(folder / "dagster_home")) as instance:
            result = dg.materialize(catalog_assets, selection=["plytix_product_changes", "catalog_snapshot"],
                                    resources={**resources_for(url, warehouse), "plytix": plytix},
                                    instance=instance, tags=RANGE, raise_on_error=False)
            injected = httpx.get(f"{url}/_sandbox/faults").json()["injected"]
            yield {"result": result, "instance": instance, "warehouse": warehouse, "injected": injected}
    finally:
        stop_sandbox(proc)


def root_error(result: dg.ExecuteInProcessResult):
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    error = failure.event_specific_data.error
    while error.cause is not None:
        error = error.cause
    return error


def test_persistent_malformed_pages_fail_the_run_naming_service_page_and_request(malformed_run):
    result = malformed_run["result"]
    assert not result.success
    assert malformed_run["injected"].get("malformed", 0) >= 9  # three tries on each of three attempts
    error = root_error(result)
    assert error.cls_name == "MalformedResponse"
    assert error.message.startswith("resources.http.MalformedResponse: plytix POST /api/v1/products/search failed")
    # Page 2 of the keyset read: the one after page 1's last `modified`, not the read's start (1970).
    page = re.search(r"page 1 \(modified gte (\S+) and modified lt \S+, by modified\)", error.message)
    assert page and not page.group(1).startswith("1970"), error.message
    assert re.search(r"request id [0-9a-f]{32}\b", error.message), error.message  # Plytix's own X-Kong-Request-Id
    assert "body is not valid JSON" in error.message
    # What the failure alert would say (sensors/run_alerts.py) names the same service and request.
    cls, line = failure_of(malformed_run["instance"], result.run_id)
    assert cls == "MalformedResponse" and "plytix POST /api/v1/products/search" in line


def test_a_failed_read_leaves_no_partition_that_looks_complete(malformed_run):
    instance = malformed_run["instance"]
    for asset in ("plytix_product_changes", "catalog_snapshot"):
        assert instance.get_latest_materialization_event(dg.AssetKey(asset)) is None, asset
        assert not instance.get_materialized_partitions(dg.AssetKey(asset)), asset
    # Page 1 was read on every attempt; none of it reached the warehouse (it waits in the staging file).
    with duckdb.connect(malformed_run["warehouse"]) as con:
        tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        for table in {"plytix_product_changes", "plytix_quarantine", "catalog_snapshot"} & tables:
            assert con.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0, table  # noqa: S608
