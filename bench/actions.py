"""Actions at scale: desired Planner tasks and notifications reconciled against the sandbox.

The project's own code does the work: `assets.planner_tasks.reconcile` (its SQL over the quality
report, the plan index, `PlannerClient.ensure_task`, the etag/hash state, the audit) and the outbox
(`enqueue`, then `deliver` passes as `notification_delivery_schedule` runs them, until OpenText has
accepted every notification). The bench only writes the warehouse rows they read: one finding per
product (so one task per product) and one planned email per item. Each side runs twice over the
same items; the second pass must write nothing, which the sandbox's own write log confirms.

Two settings of the sandbox's limits: unlimited (what the client and the sandbox manage together:
items/s), and the contracts' defaults (`planner_rate_per_s`, `opentext_rate_per_s`: 10 requests/s)
on a sample, for the share of the limit used. The share counts the requests the service let through
(a 429 takes no slot) per second of the pass.
"""

from __future__ import annotations

import logging
import tempfile
import time
from datetime import UTC, date, datetime

import duckdb
import httpx

from assets.audit import AuditLog
from assets.notifications import deliver
from assets.outbox import Planned, enqueue, outbox_counts
from assets.planner_tasks import reconcile
from assets.rules import load_rules
from assets.warehouse import ensure_tables
from orchestration.settings import ProjectSettings
from resources.opentext import OpenTextClient, TokenCache
from resources.planner import PlannerClient
from sandbox.service_options.opentext import OpenTextOptions
from sandbox.service_options.planner import PlannerOptions
from tests.conftest import start_sandbox, stop_sandbox

DAY = date(2026, 11, 22)
STAGES = ["New", "Enrichment", "Creative assignment", "Image review"]  # buckets the sandbox's plan has
UNLIMITED = 100_000.0  # requests/s: no limit in practice
# The contracts' limits, as the sandbox applies them by default (planner.md §5, opentext.md §5).
PLANNER_LIMIT = PlannerOptions().planner_rate_per_s
OPENTEXT_LIMIT = OpenTextOptions().opentext_rate_per_s
LOG = logging.getLogger("bench.actions")


class CountingTransport(httpx.HTTPTransport):
    """Counts requests and 429 responses, as the service saw them."""

    def __init__(self):
        super().__init__()
        self.requests = 0
        self.throttled = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        response = super().handle_request(request)
        self.throttled += response.status_code == 429
        return response


def configure(url: str, **options) -> None:
    httpx.post(f"{url}/_sandbox/config", json=options, timeout=60).raise_for_status()


def sandbox_writes(url: str, service: str) -> int:
    """Successful writes the sandbox recorded for `service` (its own log, not ours)."""
    writes = httpx.get(f"{url}/_sandbox/writes", params={"service": service}, timeout=600).json()["writes"]
    return sum(1 for w in writes if w["status"] < 300)


def _owners() -> list[str]:
    rules = load_rules(ProjectSettings().rules_path)
    return sorted(key for key, person in rules.people.items() if person.entra_id)


def seed_findings(con: duckdb.DuckDBPyConnection, label: str, items: int) -> None:
    """A snapshot of `items` products on DAY, each with one missing-attribute finding (one task each)."""
    con.execute("""
        INSERT INTO catalog_snapshot (snapshot_date, product_id, sku, sku_key, label, status, workflow_stage)
        SELECT $day, $label || '-' || lpad(CAST(i AS VARCHAR), 6, '0') AS id, upper(id), upper(id),
               'Bench product ' || id, 'Draft', $stages[1 + i % 4]
        FROM range($items) t(i)""", {"day": DAY, "label": label, "items": items, "stages": STAGES})
    con.execute("""
        INSERT INTO catalog_quality_report (report_date, product_id, sku, rule, severity, owner, detail, state,
                                            first_seen, last_seen)
        SELECT $day, product_id, sku, 'missing_required_attribute', 'warning',
               $owners[1 + CAST(hash(product_id) % len($owners) AS INTEGER)], 'description', 'new', $day, $day
        FROM catalog_snapshot WHERE snapshot_date = $day""", {"day": DAY, "owners": _owners()})


def planner_pass(con, client: PlannerClient, transport: CountingTransport, run_id: str) -> dict:
    rules = load_rules(ProjectSettings().rules_path)
    audit = AuditLog(con, run_id, "planner_tasks", dry_run=False)
    requests, throttled = transport.requests, transport.throttled
    started, cpu = time.perf_counter(), time.process_time()
    counts = reconcile(con, client, audit, DAY, rules, LOG)
    seconds, cpu_s = time.perf_counter() - started, time.process_time() - cpu
    return {"seconds": round(seconds, 2), "client_cpu_s": round(cpu_s, 2), "counts": counts,
            "requests": transport.requests - requests, "responses_429": transport.throttled - throttled}


def planner_bench(url: str, label: str, items: int, rate_per_s: float) -> dict:
    """Two reconcile passes over `items` desired tasks with the sandbox's Planner limit at `rate_per_s`."""
    configure(url, planner_rate_per_s=rate_per_s)
    transport = CountingTransport()
    client = PlannerClient(f"{url}/msauth", f"{url}/graph", "sandbox-tenant", "sandbox-client", "sandbox-secret",
                           "sandboxPlanAAAAAAAAAAAAAAAAA", transport=transport)
    writes = [sandbox_writes(url, "planner")]
    with tempfile.TemporaryDirectory() as folder, duckdb.connect(f"{folder}/warehouse.duckdb") as con:
        ensure_tables(con)
        seed_findings(con, label, items)
        first = planner_pass(con, client, transport, f"{label}-1")
        writes.append(sandbox_writes(url, "planner"))
        second = planner_pass(con, client, transport, f"{label}-2")
        writes.append(sandbox_writes(url, "planner"))
    client.close()
    return _summary(items, rate_per_s, first, second, writes)


def planned_items(label: str, items: int) -> list[Planned]:
    owners = _owners()
    return [Planned(dedupe_key=f"{label}/finding/{i:06d}/{DAY}|email", kind="finding", channel="email",
                    recipient=owners[i % len(owners)], destination=owners[i % len(owners)],
                    subject=f"Catalog finding {i}", body=f"Product {label}-{i:06d}: description is empty.",
                    record_id=f"{label}-{i:06d}", window_date=DAY) for i in range(items)]


def outbox_pass(con, client: OpenTextClient, transport: CountingTransport, label: str, items: int, run_id: str,
                deadline_s: float) -> dict:
    """Plan the items, then run delivery passes until none is left to submit (waiting out backoffs)."""
    audit = AuditLog(con, run_id, "catalog_notifications", dry_run=False)
    requests, throttled = transport.requests, transport.throttled
    started, cpu = time.perf_counter(), time.process_time()
    planned = enqueue(con, planned_items(label, items), run_id)
    passes, figures = 0, {}
    while True:
        passes += 1
        for key, value in deliver(con, client, audit).items():
            figures[key] = figures.get(key, 0) + value
        waiting, due = con.execute("SELECT count(*), min(next_attempt_at) FROM notification_outbox "
                                   "WHERE status = 'pending'").fetchone()
        if not waiting or time.perf_counter() - started > deadline_s:
            break
        time.sleep(min(max((due - datetime.now(UTC)).total_seconds(), 0), 60) if due else 0)
    seconds, cpu_s = time.perf_counter() - started, time.process_time() - cpu
    return {"seconds": round(seconds, 2), "client_cpu_s": round(cpu_s, 2), "planned_new": planned,
            "delivery_passes": passes, "counts": {k: v for k, v in figures.items() if v},
            "requests": transport.requests - requests, "responses_429": transport.throttled - throttled,
            "outbox": outbox_counts(con)}


def outbox_bench(url: str, label: str, items: int, rate_per_s: float, deadline_s: float = 3600) -> dict:
    """Two outbox runs over the same `items` notifications with the sandbox's OpenText limit at `rate_per_s`."""
    configure(url, opentext_rate_per_s=rate_per_s)
    transport = CountingTransport()
    client = OpenTextClient(f"{url}/opentext-auth", f"{url}/opentext", "sandbox-tenant", "sandbox-ot-client",
                            "sandbox-ot-secret", token_cache=TokenCache(), transport=transport)
    writes = [sandbox_writes(url, "opentext")]
    with tempfile.TemporaryDirectory() as folder, duckdb.connect(f"{folder}/warehouse.duckdb") as con:
        ensure_tables(con)
        first = outbox_pass(con, client, transport, label, items, f"{label}-1", deadline_s)
        writes.append(sandbox_writes(url, "opentext"))
        second = outbox_pass(con, client, transport, label, items, f"{label}-2", deadline_s)
        writes.append(sandbox_writes(url, "opentext"))
    client.close()
    return _summary(items, rate_per_s, first, second, writes)


def _summary(items: int, rate_per_s: float, first: dict, second: dict, writes: list[int]) -> dict:
    let_through = first["requests"] - first["responses_429"]
    return {
        "items": items, "limit_requests_per_s": rate_per_s,
        "first": {**first, "items_per_s": round(items / first["seconds"], 1),
                  "requests_per_s": round(let_through / first["seconds"], 1),
                  "share_of_limit": round(let_through / first["seconds"] / rate_per_s, 3),
                  "sandbox_writes": writes[1] - writes[0]},
        "second": {**second, "sandbox_writes": writes[2] - writes[1]},
    }


def actions(items: int, limited_tasks: int, limited_notifications: int) -> dict:
    """`items` tasks and notifications unlimited, then samples at the contracts' limits, on one sandbox."""
    # At the limits every 429 is retried after its Retry-After, and logged as a warning: expected here.
    logging.getLogger("catalog_ops.http").setLevel(logging.ERROR)
    started = time.perf_counter()
    proc, url = start_sandbox(products=200)  # the catalog is not read: the findings are the bench's own
    print(f"  sandbox up ({time.perf_counter() - started:.0f} s)", flush=True)
    try:
        result = {"planner": planner_bench(url, "unlimited", items, UNLIMITED)}
        print(f"  planner, {items:,} tasks: {result['planner']['first']['seconds']} s, "
              f"again {result['planner']['second']['seconds']} s", flush=True)
        result["outbox"] = outbox_bench(url, "unlimited", items, UNLIMITED)
        print(f"  outbox, {items:,} notifications: {result['outbox']['first']['seconds']} s, "
              f"again {result['outbox']['second']['seconds']} s", flush=True)
        result["planner_limited"] = planner_bench(url, "limited", limited_tasks, PLANNER_LIMIT)
        result["outbox_limited"] = outbox_bench(url, "limited", limited_notifications, OPENTEXT_LIMIT)
        print(f"  at the limits: planner {result['planner_limited']['first']['share_of_limit']}, "
              f"outbox {result['outbox_limited']['first']['share_of_limit']} of the allowed rate", flush=True)
    finally:
        stop_sandbox(proc)
    return result
