"""The commerce rules on hand-made rows in an in-memory DuckDB: low stock once per crossing (per-SKU and
per-location thresholds), approval routing for large and sensitive orders, priority for premium
customers, the stopped-sync alert, and the rows §5.1 orders become (exact money, worst risk level)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import duckdb
import pytest

from assets.commerce_extraction import _insert, order_rows
from assets.commerce_rules import CommerceRules, CommerceTeams, LowStock, evaluate, render, unknown_recipients
from assets.rules import load_rules
from assets.warehouse import ensure_tables

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
TODAY = NOW.date()
LINKS = {"shop": "https://shop.example", "ui": "http://ui.example/assets/commerce_notifications"}
TEAMS = CommerceTeams(order_operations=["ops@x"], customer_service=["cs@x"], premium_customer_service=["vip@x"],
                      procurement=["buy@x"], finance=["fin@x"], fraud_review=["fraud@x"], retention=["keep@x"],
                      sales_managers=["sales@x"], finance_controllers=["controller@x"], returns=["ret@x"],
                      support=["help@x"], it=["it@x"])


@pytest.fixture
def con():
    connection = duckdb.connect()
    ensure_tables(connection)
    connection.execute("SET TimeZone = 'UTC'")
    yield connection
    connection.close()


def order(number: int, total: str, *, tags=(), customer_tags=(), fulfillments=(), assessments=(), updated=NOW) -> dict:
    """A §5.1 node, as the client hands it over (money already Decimal)."""
    return {
        "id": f"gid://shopify/Order/{number}", "name": f"#{number}", "createdAt": "2026-11-22T08:00:00Z",
        "updatedAt": updated.strftime("%Y-%m-%dT%H:%M:%SZ"), "tags": list(tags),
        "displayFinancialStatus": "PAID", "displayFulfillmentStatus": "FULFILLED", "returnStatus": "NO_RETURN",
        "customer": {"id": f"gid://shopify/Customer/{number}", "displayName": f"Buyer {number}",
                     "tags": list(customer_tags)},
        "totalPriceSet": {"shopMoney": {"amount": Decimal(total), "currencyCode": "USD"}},
        "risk": {"recommendation": "ACCEPT", "assessments": list(assessments)},
        "fulfillments": list(fulfillments), "transactions": [], "refunds": [], "returns": {"nodes": []},
    }


def load(con, *orders: dict, day: date = TODAY) -> None:
    for node in orders:
        for table, rows in order_rows(node, None, day, NOW, "poll").items():
            _insert(con, table, rows)


def planned(con, rules: CommerceRules, now: datetime = NOW) -> dict[str, set[str]]:
    evaluate(con, rules, TODAY, TODAY, now)
    rows, _ = render(con, rules, LINKS)
    out: dict[str, set[str]] = {}
    for row in rows:
        out.setdefault(row.kind, set()).add(f"{row.record_id}>{row.recipient}")
    return out


def test_order_rows_keep_money_exact_and_the_worst_risk():
    node = order(1, "184.9", assessments=[
        {"riskLevel": "LOW", "facts": [{"description": "CVV ok", "sentiment": "POSITIVE"}]},
        {"riskLevel": "HIGH", "facts": [{"description": "Billing country differs", "sentiment": "NEGATIVE"}]}])
    row = order_rows(node, {"shippingAddress": {"validationResultSummary": "WARNING"},
                            "lineItems": {"nodes": [{"sku": "SKU-1"}, {"sku": None}]}}, TODAY, NOW, "poll")
    row = row["shopify_orders"][0]
    assert row["total"] == "184.9" and row["risk_level"] == "HIGH"
    assert row["risk_facts"] == ["Billing country differs"] and row["skus"] == ["SKU-1"]
    assert row["address_validation"] == "WARNING"


def test_large_and_sensitive_orders_ask_the_right_approvers(con):
    load(con, order(1, "1500.00"), order(2, "6000.00"), order(3, "99.00", tags=["approval-required"]),
         order(4, "999.99"))
    rules = CommerceRules(teams=TEAMS, sensitive_tags=["approval-required"])
    got = planned(con, rules)
    assert got["shopify_large_order"] == {"gid://shopify/Order/1>sales@x", "gid://shopify/Order/2>sales@x",
                                          "gid://shopify/Order/2>controller@x"}
    assert got["shopify_sensitive_order"] == {"gid://shopify/Order/3>controller@x"}


def test_premium_customers_get_priority_and_their_shipping_news(con):
    def fulfilled(number: int, status: str) -> dict:
        return {"id": f"gid://shopify/Fulfillment/{number}", "name": f"#{number}.1", "status": "SUCCESS",
                "displayStatus": status, "createdAt": "2026-11-22T09:00:00Z", "updatedAt": "2026-11-23T08:00:00Z",
                "trackingInfo": [{"company": "UPS", "number": "1Z", "url": "https://ups.example/1Z"}],
                "events": [{"id": f"gid://shopify/FulfillmentEvent/{number}", "status": status,
                            "happenedAt": "2026-11-23T07:59:00Z", "createdAt": "2026-11-23T08:00:00Z"}]}

    load(con, order(1, "50", customer_tags=["VIP"], fulfillments=[fulfilled(11, "DELAYED")]),
         order(2, "50", fulfillments=[fulfilled(12, "DELAYED")]),
         order(3, "50", customer_tags=["VIP"], fulfillments=[fulfilled(13, "IN_TRANSIT")]),
         order(4, "50", fulfillments=[fulfilled(14, "IN_TRANSIT")]))
    rules = CommerceRules(teams=TEAMS)
    evaluate(con, rules, TODAY, TODAY, NOW)
    rows, _ = render(con, rules, LINKS)
    by_order = {(r.kind, r.record_id): r for r in rows}
    exception = by_order[("shopify_fulfillment_exception", "gid://shopify/Order/1")]
    assert exception.recipient == "vip@x" and exception.subject.startswith("[Priority]")
    assert by_order[("shopify_fulfillment_exception", "gid://shopify/Order/2")].recipient == "cs@x"
    shipped = {r.record_id for r in rows if r.kind == "shopify_fulfillment_update"}
    assert shipped == {"gid://shopify/Order/3"}  # shipping news only for the premium customer


def level(con, level_id: str, available: int, at: datetime, *, sku="SKU-1", location="Portland Warehouse",
          tracked=True) -> None:
    con.execute("DELETE FROM shopify_inventory_levels WHERE level_id = ?", [level_id])
    _insert(con, "shopify_inventory_levels", [{
        "level_id": level_id, "location_id": "gid://shopify/Location/1", "location_name": location,
        "item_id": "gid://shopify/InventoryItem/1", "sku": sku, "tracked": tracked, "variant": "Jacket - M",
        "available": available, "updated_at": at, "observed_at": at}])


def low_stock_keys(con, rules: CommerceRules) -> set[str]:
    evaluate(con, rules, TODAY, TODAY, NOW)
    return {r.dedupe_key for r in render(con, rules, LINKS)[0] if r.kind == "shopify_low_stock"}


def test_low_stock_is_told_once_per_crossing_not_every_tick(con):
    rules = CommerceRules(teams=TEAMS, low_stock=LowStock(default=5, by_sku={"SKU-2": 20},
                                                          by_location={"Toronto Store": 0},
                                                          by_sku_at_location={"SKU-3": {"Toronto Store": 8}}))
    t0 = NOW - timedelta(hours=5)
    level(con, "L1", 3, t0)
    level(con, "L2", 15, t0, sku="SKU-2")  # below its SKU's own threshold
    level(con, "L3", 3, t0, location="Toronto Store")  # the store's threshold is 0
    level(con, "L4", 0, t0, tracked=False)  # not tracked: never low
    level(con, "L5", 7, t0, sku="SKU-3", location="Toronto Store")  # this SKU at this store: 8
    first = low_stock_keys(con, rules)
    assert {k.split("/")[1].split("@")[0] for k in first} == {"L1", "L2", "L5"}
    assert low_stock_keys(con, rules) == first  # the next tick: the same crossing, the same keys
    level(con, "L1", 12, t0 + timedelta(hours=1))  # restocked: the crossing closes
    assert {k.split("/")[1].split("@")[0] for k in low_stock_keys(con, rules)} == {"L2", "L5"}
    level(con, "L1", 1, t0 + timedelta(hours=2))  # and down again: a new crossing, a new message
    again = low_stock_keys(con, rules)
    new = again - first
    assert len(new) == 1 and "L1@" in next(iter(new))
    assert con.execute("SELECT count(*) FROM shopify_stock_crossings WHERE level_id = 'L1'").fetchone()[0] == 2


def test_a_stalled_order_sync_is_told_to_it_once_per_stall(con):
    load(con, order(1, "10"))  # created 25 hours before NOW
    rules = CommerceRules(teams=TEAMS, order_freshness_hours=24)
    evaluate(con, rules, TODAY, TODAY, NOW)
    keys = {r.dedupe_key for r in render(con, rules, LINKS)[0] if r.kind == "shopify_order_sync_stopped"}
    assert len(keys) == 1 and all(k.endswith("/it@x|email") for k in keys)
    evaluate(con, rules, TODAY, TODAY, NOW + timedelta(hours=3))  # still stalled later: the same key
    assert {r.dedupe_key for r in render(con, rules, LINKS)[0] if r.kind == "shopify_order_sync_stopped"} == keys
    evaluate(con, CommerceRules(teams=TEAMS, order_freshness_hours=48), TODAY, TODAY, NOW)
    assert not [r for r in render(con, rules, LINKS)[0] if r.kind == "shopify_order_sync_stopped"]


def test_every_commerce_recipient_in_the_shipped_rules_is_a_known_person():
    rules = load_rules()
    assert unknown_recipients(rules) == []
    assert rules.commerce.teams.order_operations and rules.commerce.teams.it
