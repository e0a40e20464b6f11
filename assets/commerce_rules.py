"""The commerce rules: the `commerce:` section of rules.yaml, and the SQL that turns Shopify tables into
notifications for the teams it names.

Each rule is one SELECT over the day's partitions (an order, fulfillment, return... changed on D), so
it sees the same rows whether they arrived by polling or by webhook. Every candidate message is an
*item* with a key that says what and which version of the record (an order *and* its risk level, a
fulfillment *and* its status, an inventory level *and* the instant it crossed its threshold); the
outbox ignores a key it already holds, so an event seen twice, or a re-run, is notified once.
Routing is by team: the file says who is on each team; which team a rule goes to follows the seed
pages (order operations, customer service, procurement, finance, fraud review, retention, sales
managers, returns, support, IT).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from assets.outbox import Planned

if TYPE_CHECKING:
    from assets.rules import QualityRules


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CommerceTeams(_Strict):
    """Who is on each team (addresses with a `people` entry)."""

    order_operations: list[str] = []
    customer_service: list[str] = []
    premium_customer_service: list[str] = []  # premium customers' fulfillment news, marked priority
    procurement: list[str] = []
    finance: list[str] = []
    fraud_review: list[str] = []
    retention: list[str] = []
    sales_managers: list[str] = []
    finance_controllers: list[str] = []
    returns: list[str] = []
    support: list[str] = []
    it: list[str] = []


class LowStock(_Strict):
    """Available at or below the threshold (tracked items only); the most specific setting wins."""

    default: int = Field(5, ge=0)
    by_location: dict[str, int] = {}  # location name -> threshold
    by_sku: dict[str, int] = {}
    by_sku_at_location: dict[str, dict[str, int]] = {}  # SKU -> location name -> threshold


class CommerceRules(_Strict):
    enabled: bool = True
    premium_tags: list[str] = ["VIP"]  # a customer with any of these tags is premium
    high_risk_levels: list[str] = ["HIGH"]
    payment_pending_statuses: list[str] = ["PENDING"]
    address_review_results: list[str] = ["WARNING", "ERROR"]  # MailingAddress.validationResultSummary
    large_order_amount: Decimal = Field(Decimal(1000), gt=0)  # shop currency: approval by sales managers
    finance_approval_amount: Decimal = Field(Decimal(5000), gt=0)  # and from here, finance controllers too
    sensitive_tags: list[str] = []  # order tags that need the finance controllers' approval
    exception_statuses: list[str] = ["DELAYED", "ATTEMPTED_DELIVERY", "FAILURE"]
    packed_statuses: list[str] = ["LABEL_PURCHASED", "LABEL_PRINTED", "READY_FOR_PICKUP", "CONFIRMED"]
    shipped_statuses: list[str] = ["IN_TRANSIT", "CARRIER_PICKED_UP", "OUT_FOR_DELIVERY"]
    # Packed / shipped / partially shipped news: for premium customers only, everyone, or no one.
    fulfillment_updates_for: Literal["premium", "all", "none"] = "premium"
    fulfillment_update_max_age_hours: int = Field(48, ge=1)  # older tracking events are history, not news
    failed_payment_within_minutes: int = Field(120, ge=1)  # checkout abandoned this soon after a decline
    order_freshness_hours: float = Field(24, gt=0)  # no new order for longer: the order sync has stopped
    webhook_backlog_minutes: int = Field(30, ge=1)  # inbox events unprocessed for longer: ingestion is down
    low_stock: LowStock = LowStock()
    teams: CommerceTeams = CommerceTeams()


# (kind, variant) -> the teams told. Variants: a return's status, a large order's approval level,
# "premium" for a premium customer's fulfillment news.
ROUTES: dict[tuple[str, str], tuple[str, ...]] = {
    ("shopify_high_risk_order", ""): ("order_operations",),
    ("shopify_payment_pending", ""): ("order_operations",),
    ("shopify_address_needs_review", ""): ("order_operations",),
    ("shopify_fulfillment_exception", ""): ("customer_service",),
    ("shopify_fulfillment_exception", "premium"): ("premium_customer_service",),
    ("shopify_fulfillment_update", ""): ("customer_service",),
    ("shopify_fulfillment_update", "premium"): ("premium_customer_service",),
    ("shopify_low_stock", ""): ("procurement",),
    ("shopify_declined_payment", ""): ("finance", "fraud_review"),
    ("shopify_abandoned_after_failed_payment", ""): ("retention", "fraud_review"),
    ("shopify_large_order", "approval"): ("sales_managers",),
    ("shopify_large_order", "finance"): ("sales_managers", "finance_controllers"),
    ("shopify_sensitive_order", ""): ("finance_controllers",),
    ("shopify_return", "REQUESTED"): ("returns",),  # initiated
    ("shopify_return", "OPEN"): ("returns", "support"),  # approved
    ("shopify_return", "CLOSED"): ("returns", "finance"),  # received
    ("shopify_return", "DECLINED"): ("support",),
    ("shopify_return", "CANCELED"): ("returns",),
    ("shopify_refund", ""): ("finance", "support"),  # refunded
    ("shopify_order_sync_stopped", ""): ("it",),
    ("shopify_webhook_ingestion_failed", ""): ("it",),
}
PREMIUM_KINDS = ("shopify_fulfillment_exception", "shopify_fulfillment_update")


def commerce_recipients(rules: CommerceRules) -> set[str]:
    return {address for team in CommerceTeams.model_fields for address in getattr(rules.teams, team)}


def unknown_recipients(rules: QualityRules) -> list[str]:
    """Team members without a `people` entry (the catalog's rule: every recipient needs one)."""
    return sorted(commerce_recipients(rules.commerce) - set(rules.people)) if rules.people else []


ITEMS_SQL = """
CREATE OR REPLACE TEMP TABLE commerce_items AS
WITH orders AS (SELECT * FROM shopify_orders WHERE partition_date BETWEEN $start AND $end),
latest_orders AS (
    SELECT order_id, customer_id, skus FROM shopify_orders
    QUALIFY row_number() OVER (PARTITION BY order_id ORDER BY updated_at DESC, partition_date DESC) = 1
),
failed AS (  -- every declined or failed payment we know of, with who tried and what they tried to buy
    SELECT DISTINCT t.transaction_id, t.order_id, t.created_at, k.customer_id, k.skus
    FROM shopify_transactions t JOIN latest_orders k USING (order_id) WHERE t.status IN ('FAILURE', 'ERROR')
)
SELECT 'shopify_high_risk_order' AS kind, '' AS variant, order_id AS record_id, order_id,
       order_id || '/risk/' || risk_level AS item_key, partition_date AS day,
       'Order ' || name || ' flagged ' || risk_level || ' risk' AS title,
       'Shopify recommends ' || coalesce(risk_recommendation, 'nothing') || '. '
           || coalesce(array_to_string(risk_facts, '; '), '') AS detail
FROM orders WHERE list_contains($risk_levels::VARCHAR[], risk_level)
UNION ALL
SELECT 'shopify_payment_pending', '', order_id, order_id, order_id || '/financial/' || financial_status, partition_date,
       'Payment pending on order ' || name,
       'Outstanding ' || printf('%.2f', outstanding) || ' ' || currency || '; hold fulfilment until it is paid.'
FROM orders WHERE list_contains($pending_statuses::VARCHAR[], financial_status)
UNION ALL
SELECT 'shopify_address_needs_review', '', order_id, order_id, order_id || '/address/' || address_validation,
       partition_date, 'Shipping address needs review on order ' || name,
       'Address validation: ' || address_validation || ' (' || coalesce(ship_country, '?') || '). Confirm it with '
           || 'the customer before fulfilment.'
FROM orders WHERE list_contains($address_results::VARCHAR[], address_validation)
UNION ALL
SELECT 'shopify_large_order', CASE WHEN total >= $finance_amount THEN 'finance' ELSE 'approval' END, order_id, order_id,
       order_id || '/large', partition_date, 'Approval requested: order ' || name || ' for ' || printf('%.2f', total)
           || ' ' || currency,
       'Orders from ' || printf('%.2f', $large_amount) || ' ' || currency || ' need a manager''s approval before '
           || 'fulfilment or invoicing' || CASE WHEN total >= $finance_amount THEN ', and finance''s from '
           || printf('%.2f', $finance_amount) ELSE '' END || '.'
FROM orders WHERE total >= $large_amount
UNION ALL
SELECT 'shopify_sensitive_order', '', order_id, order_id, order_id || '/sensitive', partition_date,
       'Approval requested: sensitive order ' || name,
       'Tagged ' || array_to_string(list_intersect(tags, $sensitive_tags::VARCHAR[]), ', ') || '.'
FROM orders WHERE list_has_any(tags, $sensitive_tags::VARCHAR[])
UNION ALL
SELECT 'shopify_declined_payment', '', t.order_id, t.order_id, t.transaction_id, t.partition_date,
       'Payment ' || lower(t.status) || ' on order ' || o.name || ' (' || coalesce(t.error_code, 'no code') || ')',
       t.kind || ' of ' || printf('%.2f', t.amount) || ' ' || coalesce(t.currency, '') || ' through '
           || coalesce(t.gateway, '?') || ' at ' || strftime(t.created_at, '%Y-%m-%d %H:%M UTC') || '.'
FROM shopify_transactions t JOIN orders o ON o.order_id = t.order_id AND o.partition_date = t.partition_date
WHERE t.status IN ('FAILURE', 'ERROR')
UNION ALL
SELECT 'shopify_fulfillment_exception', '', f.order_id, f.order_id, f.fulfillment_id || '/' || f.display_status,
       f.partition_date, 'Delivery exception (' || f.display_status || ') on order ' || o.name,
       'Fulfillment ' || f.name || ' with ' || coalesce(f.tracking_company, '?') || ' '
           || coalesce(f.tracking_number, '') || ': ' || coalesce(f.tracking_url, '')
FROM shopify_fulfillments f JOIN orders o ON o.order_id = f.order_id AND o.partition_date = f.partition_date
WHERE list_contains($exception_statuses::VARCHAR[], f.display_status)
UNION ALL
SELECT 'shopify_fulfillment_update', '', e.order_id, e.order_id, e.event_id, e.partition_date,
       'Order ' || o.name || CASE WHEN list_contains($packed_statuses::VARCHAR[], e.status) THEN ' packed'
           ELSE ' shipped' END || ' (' || e.status || ')',
       coalesce(e.message, e.status) || ' at ' || strftime(e.happened_at, '%Y-%m-%d %H:%M UTC')
           || coalesce(' in ' || e.city, '') || '.'
FROM shopify_fulfillment_events e JOIN orders o ON o.order_id = e.order_id AND o.partition_date = e.partition_date
WHERE list_contains(list_concat($packed_statuses::VARCHAR[], $shipped_statuses::VARCHAR[]), e.status)
  AND e.created_at >= CAST(e.partition_date + 1 AS TIMESTAMPTZ) - to_hours($update_max_age_hours)
UNION ALL
SELECT 'shopify_fulfillment_update', '', order_id, order_id, order_id || '/partially-shipped', partition_date,
       'Order ' || name || ' partially shipped', 'Some items are on their way; the rest are still to ship.'
FROM orders WHERE fulfillment_status = 'PARTIALLY_FULFILLED'
UNION ALL
SELECT 'shopify_return', r.status, r.order_id, r.order_id, r.return_id || '/' || r.status, r.partition_date,
       'Return ' || coalesce(r.name, '') || ' ' || CASE r.status WHEN 'REQUESTED' THEN 'initiated'
           WHEN 'OPEN' THEN 'approved' WHEN 'CLOSED' THEN 'received' ELSE lower(r.status) END
           || ' for order ' || o.name,
       CAST(r.total_quantity AS VARCHAR) || ' item(s)' || coalesce('; declined: ' || r.decline_reason, '')
           || coalesce(' (' || r.decline_note || ')', '') || '.'
FROM shopify_returns r JOIN orders o ON o.order_id = r.order_id AND o.partition_date = r.partition_date
UNION ALL
SELECT 'shopify_refund', '', r.order_id, r.order_id, r.refund_id, r.partition_date,
       'Refund of ' || printf('%.2f', r.amount) || ' ' || coalesce(r.currency, '') || ' on order ' || o.name,
       coalesce(r.note, 'No note') || '.'
FROM shopify_refunds r JOIN orders o ON o.order_id = r.order_id AND o.partition_date = r.partition_date
UNION ALL
SELECT 'shopify_abandoned_after_failed_payment', '', c.checkout_id, min(f.order_id), c.checkout_id,
       c.partition_date, 'Checkout ' || c.name || ' abandoned after a failed payment',
       'Total ' || printf('%.2f', c.total) || ' ' || coalesce(c.currency, '') || ' by '
           || coalesce(c.customer_name, c.email, 'a guest') || '. Recovery link: ' || coalesce(c.recovery_url, '-')
FROM shopify_abandoned_checkouts c JOIN failed f
    ON f.created_at BETWEEN c.created_at - to_minutes($within_minutes) AND c.created_at
   AND (c.customer_id = f.customer_id
        OR (c.customer_id IS NULL AND f.customer_id IS NULL AND list_sort(c.skus) = list_sort(f.skus)))
WHERE c.partition_date BETWEEN $start AND $end AND c.completed_at IS NULL
GROUP BY ALL
"""

# Who an item is about (the order's latest version), whether the customer is premium, and the filter on
# fulfillment updates by customer.
ROUTED_SQL = """
SELECT i.kind, i.variant, i.record_id, i.item_key, i.day, i.title, i.detail, o.name, o.customer_name, o.total,
       o.currency, coalesce(list_has_any(o.customer_tags, $premium_tags::VARCHAR[]), false) AS premium
FROM commerce_items i LEFT JOIN (
    SELECT * FROM shopify_orders
    QUALIFY row_number() OVER (PARTITION BY order_id ORDER BY updated_at DESC, partition_date DESC) = 1
) o USING (order_id)
WHERE i.kind <> 'shopify_fulfillment_update' OR $updates_for = 'all' OR ($updates_for = 'premium'
      AND coalesce(list_has_any(o.customer_tags, $premium_tags::VARCHAR[]), false))
ORDER BY i.kind, i.day, i.item_key
"""

# Low stock, once per crossing: a level that goes at or below its threshold opens a crossing (keyed by
# the instant it was seen low); it closes when the level is seen above it again, and only then can a
# new crossing (and a new message) open. Seeing the same low level on every tick changes nothing.
THRESHOLDS_SQL = """
CREATE OR REPLACE TEMP TABLE stock_levels AS
SELECT l.*, coalesce(p.threshold, s.threshold, loc.threshold, $default_threshold) AS threshold,
       l.tracked AND l.available <= coalesce(p.threshold, s.threshold, loc.threshold, $default_threshold) AS low
FROM shopify_inventory_levels l
LEFT JOIN cfg_stock_pair p ON p.sku = l.sku AND p.location_name = l.location_name
LEFT JOIN cfg_stock_sku s ON s.sku = l.sku
LEFT JOIN cfg_stock_location loc ON loc.location_name = l.location_name
"""
CLOSE_CROSSINGS_SQL = """
UPDATE shopify_stock_crossings c SET recovered_at = s.updated_at
FROM stock_levels s WHERE s.level_id = c.level_id AND c.recovered_at IS NULL AND NOT s.low
"""
OPEN_CROSSINGS_SQL = """
INSERT INTO shopify_stock_crossings
SELECT level_id, updated_at, threshold, available, NULL FROM stock_levels s
WHERE s.low AND NOT EXISTS (SELECT 1 FROM shopify_stock_crossings c WHERE c.level_id = s.level_id
                                                                        AND c.recovered_at IS NULL)
"""
LOW_STOCK_ITEMS_SQL = """
INSERT INTO commerce_items
SELECT 'shopify_low_stock', '', c.level_id, NULL, c.level_id || '@' || strftime(c.crossed_at, '%Y-%m-%dT%H:%M:%SZ'),
       CAST($today AS DATE), 'Low stock: ' || coalesce(s.sku, s.variant, s.item_id) || ' at ' || s.location_name,
       CAST(s.available AS VARCHAR) || ' available (threshold ' || CAST(s.threshold AS VARCHAR) || ') of '
           || coalesce(s.variant, '?') || '.'
FROM shopify_stock_crossings c JOIN stock_levels s USING (level_id) WHERE c.recovered_at IS NULL
"""


@dataclass(frozen=True)
class Problem:
    """An integration problem found outside the tables (the webhook inbox): told to IT once per key."""

    key: str
    title: str
    detail: str


def _register(con, name: str, frame: pd.DataFrame) -> None:
    con.register(f"{name}_frame", frame)
    con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM {name}_frame")  # noqa: S608 (fixed names)
    con.unregister(f"{name}_frame")


def evaluate(con, rules: CommerceRules, start: date, end: date, now: datetime,
             problems: list[Problem] = ()) -> None:
    """Fill the temp table `commerce_items` for partitions start..end (and the present's checks when the
    range reaches today: inventory crossings, order freshness, inbox problems)."""
    con.execute(ITEMS_SQL, {
        "start": start, "end": end, "risk_levels": rules.high_risk_levels,
        "pending_statuses": rules.payment_pending_statuses, "address_results": rules.address_review_results,
        "large_amount": rules.large_order_amount, "finance_amount": rules.finance_approval_amount,
        "sensitive_tags": rules.sensitive_tags, "exception_statuses": rules.exception_statuses,
        "packed_statuses": rules.packed_statuses, "shipped_statuses": rules.shipped_statuses,
        "update_max_age_hours": rules.fulfillment_update_max_age_hours,
        "within_minutes": rules.failed_payment_within_minutes})
    if end < now.date() - timedelta(days=1):
        return  # stock, freshness and the inbox are about the present, not a backfilled past
    _register(con, "cfg_stock_sku", pd.DataFrame(list(rules.low_stock.by_sku.items()), columns=["sku", "threshold"],
                                                 dtype=object))
    _register(con, "cfg_stock_pair", pd.DataFrame(
        [(sku, where, n) for sku, places in rules.low_stock.by_sku_at_location.items() for where, n in places.items()],
        columns=["sku", "location_name", "threshold"], dtype=object))
    _register(con, "cfg_stock_location", pd.DataFrame(list(rules.low_stock.by_location.items()),
                                                      columns=["location_name", "threshold"], dtype=object))
    con.execute(THRESHOLDS_SQL, {"default_threshold": rules.low_stock.default})
    con.execute(CLOSE_CROSSINGS_SQL)
    con.execute(OPEN_CROSSINGS_SQL)
    con.execute(LOW_STOCK_ITEMS_SQL, {"today": now.date()})
    newest = con.execute("SELECT max(created_at) FROM shopify_orders").fetchone()[0]
    if newest is not None and now - newest > timedelta(hours=rules.order_freshness_hours):
        con.execute("INSERT INTO commerce_items VALUES ('shopify_order_sync_stopped', '', 'shopify', NULL, ?, ?, ?, ?)",
                    [f"sync-stopped/{newest.isoformat()}", now.date(), "Shopify order sync has stopped",
                     f"No new order since {newest:%Y-%m-%d %H:%M} UTC (expected within "
                     f"{rules.order_freshness_hours:g} h). Check the Shopify extraction and webhook runs."])
    for problem in problems:
        con.execute("INSERT INTO commerce_items VALUES ('shopify_webhook_ingestion_failed', '', 'shopify-webhooks', "
                    "NULL, ?, ?, ?, ?)", [problem.key, now.date(), problem.title, problem.detail])


def render(con, rules: CommerceRules, links: dict[str, str]) -> tuple[list[Planned], int]:
    """The items as outbox rows, one per recipient; and how many items had no one to go to.

    `links`: `shop` (the Shopify admin base) and `ui` (the Dagster asset page of the day)."""
    rows = con.execute(ROUTED_SQL, {"premium_tags": rules.premium_tags,
                                    "updates_for": rules.fulfillment_updates_for}).fetchall()
    planned, unrouted = [], 0
    for kind, variant, record_id, item_key, day, title, detail, name, customer, total, currency, premium in rows:
        if kind in PREMIUM_KINDS and premium:
            variant = "premium"
        recipients = [address for team in ROUTES.get((kind, variant), ()) for address in getattr(rules.teams, team)]
        if not recipients:
            unrouted += 1
            continue
        subject = (("[Priority] " if premium and kind in PREMIUM_KINDS else "") + title)[:200]
        lines = [detail or ""]
        if name:
            number = str(record_id).rsplit("/", 1)[-1] if kind != "shopify_abandoned_after_failed_payment" else ""
            amount = f"{total:.2f} {currency}" if total is not None else "no total"
            lines.append(f"Order {name} · {customer or 'guest'} · {amount}" + (" · premium customer" if premium else ""))
            if number:
                lines.append(f"Shopify: {links['shop']}/admin/orders/{number}")
        lines.append(f"Dagster: {links['ui']}?partition={day}")
        body = "\n".join(lines)
        for recipient in dict.fromkeys(recipients):
            key = f"{kind}/{item_key}/{recipient}|email"
            planned.append(Planned(key, kind, "email", recipient, recipient, subject, body, record_id, day))
    return planned, unrouted
