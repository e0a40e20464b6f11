"""From the webhook inbox to the warehouse: `webhook_inbox_sensor` turns stored Shopify deliveries into
runs of `shopify_webhook_job`, which loads them into the tables the polling fills and notifies.

A delivery says *that* something changed; the run reads the record's current state through the
same GraphQL documents as the poll (so both paths write identical rows), but only when the payload
is newer than what is stored (§10: "apply only payloads whose updated_at is newer"): a change the
poll already brought in, a duplicate or a stale retry costs no request. Rules then run for the days
touched and the outbox's dedupe keys make an event seen both ways one message.

The sensor's cursor is the last inbox sequence number it asked for; a run covers a range of them
and its run key names the range, so a tick that repeats, or a sensor restarted from an older cursor,
launches nothing twice. Events a run could not apply, or that wait too long, are IT's (commerce rules).
"""


import json
from datetime import UTC, date, datetime, timedelta

import dagster as dg
from dagster_duckdb import DuckDBResource
from pydantic import Field

from assets.audit import AuditLog
from assets.commerce_extraction import (
    checkout_row,
    first_day,
    order_tables_for,
    read_level,
    read_orders,
    upsert_levels,
    upsert_rows,
)
from assets.commerce_notifications import notify_commerce
from assets.extraction import partition_date
from assets.warehouse import ensure_tables
from orchestration.service_tags import service_run_tags
from orchestration.settings import ProjectSettings
from orchestration.webhooks import Inbox, InboxEvent, inbox_path
from resources.opentext import OpenTextResource
from resources.shopify import ShopifyClient, ShopifyResource

EVENTS_PER_RUN = 200
RUNS_PER_TICK = 5
# Order topics whose payload names the order, and the payload field that says when the change happened.
ORDER_CHILD_TOPICS = {"fulfillments/create": "updated_at", "fulfillment_events/create": "created_at",
                      "order_transactions/create": "created_at", "refunds/create": "created_at"}


def _stamp(value) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) and value else None


def _gid(kind: str, number) -> str:
    return f"gid://shopify/{kind}/{number}"


class Batch:
    """What one run's events ask for, after dropping what the warehouse already holds."""

    def __init__(self, con):
        self.con = con
        self.orders: dict[str, list[int]] = {}  # order gid -> inbox seqs asking for it
        self.checkouts: dict[str, tuple[datetime, list[int]]] = {}
        self.levels: dict[str, tuple[dict, list[int]]] = {}
        self.outcomes: dict[int, tuple[str, str | None]] = {}

    def stored(self, table: str, column: str, record: str) -> datetime | None:
        return self.con.execute(f"SELECT max(updated_at) FROM {table} WHERE {column} = ?",  # noqa: S608 (fixed)
                                [record]).fetchone()[0]

    def newer(self, table: str, column: str, record: str, stamp: datetime | None) -> bool:
        stored = self.stored(table, column, record)
        return stamp is None or stored is None or stamp > stored

    def add(self, event: InboxEvent) -> None:
        payload, topic = json.loads(event.body), event.topic
        if topic.startswith("orders/") or topic in ORDER_CHILD_TOPICS:
            if topic == "orders/risk_assessment_changed":
                order, stamp = payload.get("admin_graphql_api_order_id") or _gid("Order", payload["order_id"]), \
                    _stamp(payload.get("created_at"))
            elif topic.startswith("orders/"):
                order, stamp = payload.get("admin_graphql_api_id") or _gid("Order", payload["id"]), \
                    _stamp(payload.get("updated_at"))
            else:
                order, stamp = _gid("Order", payload["order_id"]), _stamp(payload.get(ORDER_CHILD_TOPICS[topic]))
            self._order(order, stamp, event.seq)
        elif topic.startswith("returns/"):
            order = (payload.get("order") or {}).get("id") or payload.get("order_id")
            if order is None:  # returns/update names only the return: find its order in what we hold
                found = self.con.execute("SELECT max(order_id) FROM shopify_returns WHERE return_id = ?",
                                         [payload.get("admin_graphql_api_id")]).fetchone()[0]
                if found is None:
                    self.outcomes[event.seq] = ("ignored", "a return this warehouse does not know (the poll will)")
                    return
                self._order(found, None, event.seq)
            else:
                self._order(_gid("Order", order), None, event.seq)
        elif topic.startswith("checkouts/"):
            checkout, stamp = _gid("AbandonedCheckout", payload["id"]), _stamp(payload.get("updated_at"))
            if stamp is None or not self.newer("shopify_abandoned_checkouts", "checkout_id", checkout, stamp):
                self.outcomes[event.seq] = ("already_seen", None)
            else:
                self.checkouts.setdefault(checkout, (stamp, []))[1].append(event.seq)
        elif topic == "inventory_levels/update":
            level = payload.get("admin_graphql_api_id") or (
                f"gid://shopify/InventoryLevel/{payload['location_id']}?inventory_item_id={payload['inventory_item_id']}")
            if not self.newer("shopify_inventory_levels", "level_id", level, _stamp(payload.get("updated_at"))):
                self.outcomes[event.seq] = ("already_seen", None)
            else:
                self.levels.setdefault(level, (payload, []))[1].append(event.seq)
        else:
            self.outcomes[event.seq] = ("ignored", f"topic {topic} is not read")

    def _order(self, order: str, stamp: datetime | None, seq: int) -> None:
        # An order's updatedAt moves whenever anything beneath it changes: a stored version at least as
        # recent as the change already holds it.
        if stamp is not None and not self.newer("shopify_orders", "order_id", order, stamp):
            self.outcomes[seq] = ("already_seen", None)
        else:
            self.orders.setdefault(order, []).append(seq)


def apply_events(con, client: ShopifyClient, events: list[InboxEvent]) -> tuple[dict[int, tuple[str, str | None]],
                                                                                  set[date]]:
    """Load the events' records into the warehouse. Returns each event's outcome and the partitions touched."""
    batch, days, now = Batch(con), set(), datetime.now(UTC)
    for event in events:
        try:
            batch.add(event)
        except (ValueError, KeyError, TypeError) as exc:  # an unreadable payload fails alone
            batch.outcomes[event.seq] = ("failed", f"{type(exc).__name__}: {exc}"[:500])
    fresh = []
    for order in read_orders(client, list(batch.orders)):
        stored = batch.stored("shopify_orders", "order_id", order["id"])
        if stored is None or datetime.fromisoformat(order["updatedAt"].replace("Z", "+00:00")) > stored:
            fresh.append(order)
    read = {o["id"] for o in fresh}
    if fresh:
        tables = order_tables_for(client, fresh, now, "webhook")
        upsert_rows(con, tables, "shopify_orders")
        days |= {row["partition_date"] for row in tables["shopify_orders"]}
    for order, seqs in batch.orders.items():
        for seq in seqs:
            batch.outcomes[seq] = ("applied", None) if order in read else ("already_seen", None)
    for checkout, (stamp, seqs) in batch.checkouts.items():
        found = [c for page in client.iter_abandoned_checkouts(stamp, stamp + timedelta(seconds=1)) for c in page
                 if c["id"] == checkout]
        if found:
            day = partition_date(_stamp(found[0]["updatedAt"]), first_day())
            upsert_rows(con, {"shopify_abandoned_checkouts": [checkout_row(found[0], day, now)]},
                        "shopify_abandoned_checkouts")
            days.add(day)
        for seq in seqs:
            batch.outcomes[seq] = ("applied", None) if found else ("ignored", "not found at that updated_at: changed again since")
    locations = None
    for payload, seqs in batch.levels.values():
        if locations is None:
            locations = {loc["id"]: loc for loc in client.locations()}
        location = locations.get(_gid("Location", payload["location_id"]))
        row = read_level(client, location, _gid("InventoryItem", payload["inventory_item_id"])) if location else None
        if row:
            upsert_levels(con, [row])
            days.add(partition_date(row["updated_at"] or now, first_day()))
        for seq in seqs:
            batch.outcomes[seq] = ("applied", None) if row else ("ignored", "level not found at an active location")
    return batch.outcomes, days


class WebhookBatchConfig(dg.Config):
    first_seq: int = Field(description="First inbox sequence number of the batch.")
    last_seq: int = Field(description="Last inbox sequence number of the batch.")
    dry_run: bool = Field(default_factory=lambda: ProjectSettings().dry_run,
                          description="Load the events and plan the messages, send nothing.")


@dg.op(pool="duckdb_warehouse",
       description="Load a range of inbox events into the Shopify tables and notify what changed, once.")
def apply_shopify_webhooks(context: dg.OpExecutionContext, config: WebhookBatchConfig, shopify: ShopifyResource,
                           warehouse: DuckDBResource, opentext: OpenTextResource) -> dg.Output:
    inbox = Inbox(inbox_path())
    try:
        events = inbox.events(config.first_seq, config.last_seq)
        oldest = datetime.now(UTC).date() - timedelta(days=ProjectSettings().actions_max_age_days)
        with warehouse.get_connection() as con:
            ensure_tables(con)
            outcomes, days = apply_events(con, shopify.get_client(), events)
            recent = sorted(d for d in days if d >= oldest)  # like every action: a stale retry pages no one
            span = [recent[0] + timedelta(days=n) for n in range((recent[-1] - recent[0]).days + 1)] if recent else []
            audit = AuditLog(con, context.run.run_id, "apply_shopify_webhooks", config.dry_run)
            figures = notify_commerce(con, span, audit, opentext.get_client(), context.run.run_id)
        inbox.mark(outcomes, context.run.run_id)
    finally:
        inbox.close()
    summary: dict[str, int] = {}
    for status, _ in outcomes.values():
        summary[status] = summary.get(status, 0) + 1
    return dg.Output(None, metadata={"events": len(events), **{f"events/{k}": v for k, v in sorted(summary.items())},
                                     "days": ", ".join(map(str, sorted(days))), **figures, **audit.metadata()})


@dg.job(description="Shopify webhook events from the inbox into the commerce tables and notifications.",
        tags=service_run_tags([apply_shopify_webhooks]))
def shopify_webhook_job():
    apply_shopify_webhooks()


@dg.sensor(job=shopify_webhook_job, minimum_interval_seconds=15, default_status=dg.DefaultSensorStatus.RUNNING,
           description="New events in the Shopify webhook inbox (`catalog-ops webhooks`): one run per range of "
                       "inbox sequence numbers (run key: the range).")
def webhook_inbox_sensor(context: dg.SensorEvaluationContext):
    path = inbox_path()
    if not path.exists():
        return dg.SkipReason(f"no webhook inbox at {path}: is `catalog-ops webhooks` running?")
    inbox = Inbox(path)
    try:
        after = int(context.cursor or 0)
        pending = inbox.received_after(after, EVENTS_PER_RUN * RUNS_PER_TICK)
    finally:
        inbox.close()
    if not pending:
        return dg.SkipReason(f"no webhook event after #{after}")
    requests = []
    for start in range(0, len(pending), EVENTS_PER_RUN):
        chunk = pending[start:start + EVENTS_PER_RUN]
        first, last = chunk[0][0], chunk[-1][0]
        requests.append(dg.RunRequest(
            run_key=f"shopify-webhooks:{first}-{last}",
            run_config={"ops": {"apply_shopify_webhooks": {"config": {"first_seq": first, "last_seq": last}}}},
            tags={"catalog-ops/webhook-events": str(len(chunk))}))
    return dg.SensorResult(run_requests=requests, cursor=str(pending[-1][0]))
