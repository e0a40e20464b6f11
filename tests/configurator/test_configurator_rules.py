"""The configurator's rules on a small hand-made warehouse (what the seeded world does not plant:
restricted components, manufacturing limits, per-currency thresholds, missing item attributes,
localisation completed), the digest and the ledger, the rules-file model, and the read marks."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import duckdb
import pytest

from assets.audit import AuditLog
from assets.configurator_extraction import change_day, read_from
from assets.configurator_notifications import evaluate, plan, record, write_back
from assets.configurator_rules import ConfiguratorRules
from assets.rules import DEFAULT_RULES_PATH, RulesError, load_rules, parse_rules
from assets.warehouse import ensure_tables
from resources.http import RequestRejected
from resources.threekit import WriteResult

D = date(2026, 11, 21)
NOW = datetime(2026, 11, 21, 18, tzinfo=UTC)
RETAIL, OLD = "pb-retail", "pb-old"
A, B, C = "asset-a", "asset-b", "asset-c"
ATTRIBUTES = [
    {"name": "Color", "type": "Asset", "values": [{"assetId": A}, {"assetId": B}]},
    {"name": "Size", "type": "String", "values": ["S", "M", "L"]},
    {"name": "Width", "type": "Number", "values": []},
    {"name": "Engraving", "type": "String", "values": []},
]


def insert(con, table: str, **row) -> None:
    names = ", ".join(row)
    con.execute(f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' for _ in row)})", list(row.values()))  # noqa: S608


@pytest.fixture
def con():
    con = duckdb.connect()
    ensure_tables(con)
    insert(con, "threekit_pricebooks", id=RETAIL, name="Retail", currencies=["USD", "EUR"])
    insert(con, "threekit_pricebooks", id=OLD, name="Old", currencies=["GBP"], deleted_at=NOW - timedelta(days=300))
    insert(con, "threekit_items", id="item-1", name="Chair", sku="SKU-1", plytix_product_id="p1",
           metadata=json.dumps({"sku": "SKU-1", "plytixProductId": "p1"}), attributes=json.dumps(ATTRIBUTES),
           attribute_names=[a["name"] for a in ATTRIBUTES])
    insert(con, "threekit_items", id="item-2", name="Lamp", sku="SKU-2", plytix_product_id=None,
           metadata=json.dumps({"sku": "SKU-2"}), attributes="[]", attribute_names=["Color"])
    for item, currency in (("item-1", "USD"), ("item-1", "EUR"), ("item-2", "USD")):  # item-2 lacks EUR
        insert(con, "threekit_item_prices", item_id=item, pricebook_id=RETAIL, currency=currency, amount=10)
    insert(con, "catalog_snapshot", snapshot_date=D, product_id="p1", sku="SKU-1", sku_key="SKU-1",
           locales=["en", "de-DE", "fr-FR"])
    configurations = {
        "ok": ({"Color": {"assetId": A}, "Size": "M", "Width": 200}, "100.00", "USD"),
        "eur-under-own-threshold": ({"Size": "S"}, "3000.00", "EUR"),
        "usd-over": ({"Size": "S"}, "2600.00", "USD"),
        "restricted": ({"Engraving": "Logo"}, "100.00", "USD"),
        "too-wide": ({"Width": 500}, "100.00", "USD"),
        "not-offered": ({"Color": {"assetId": C}, "Size": "XL"}, "100.00", "USD"),
        "unknown-attribute": ({"Fabric": "Silk"}, "100.00", "USD"),
        "no-price": ({"Size": "S"}, None, "USD"),
    }
    for cid, (variant, price, currency) in configurations.items():
        insert(con, "threekit_configurations", partition_date=D - timedelta(days=1), id=cid, short_id=cid,
               product_id="item-1", variant=json.dumps(variant), metadata="{}", price=price, currency=currency,
               created_at=NOW - timedelta(days=1))
    # A localisation asked for earlier whose copy has arrived (fr-FR is now in the snapshot's locales).
    insert(con, "configurator_items", item_key="localisation-needed/item-1/fr-FR/localisation@example.com",
           kind="localisation_needed", recipient="localisation@example.com", record_id="item-1",
           first_day=D - timedelta(days=3), message_key="m")
    yield con
    con.close()


def rules_with(**review):
    rules = load_rules()
    base = rules.configurator.model_dump()
    base["review"].update(review)
    return rules.model_copy(update={"configurator": ConfiguratorRules.model_validate(base)})


def problems(con, table: str, column: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for kind, record_id in con.execute(f"SELECT kind, {column} FROM {table}").fetchall():  # noqa: S608
        out.setdefault(kind, set()).add(record_id)
    return out


def test_configuration_rules_threshold_restricted_limits_and_offered_values(con):
    rules = rules_with(price_threshold_by_currency={"EUR": 3500}, restricted_components=["Logo"],
                       manufacturing_limits={"Width": {"min": 100, "max": 300}})
    evaluate(con, D, rules, NOW)
    assert problems(con, "tk_config_problems", "config_id") == {
        "config_needs_review": {"usd-over", "restricted"},
        "config_invalid_option": {"too-wide", "not-offered", "unknown-attribute"},
        "config_missing_price": {"no-price"},
    }
    detail = dict(con.execute("SELECT config_id, detail FROM tk_config_problems WHERE kind = "
                              "'config_invalid_option'").fetchall())
    assert detail["not-offered"] == f"Color = {C} (not offered); Size = XL (not offered)"
    assert "outside the manufacturing limits" in detail["too-wide"]


def test_item_rules_and_localisation_completed(con):
    evaluate(con, D, rules_with(), NOW)
    items = problems(con, "tk_item_problems", "id")
    assert items["missing_price"] == {"item-2"}  # the deleted pricebook's GBP is not asked for
    assert items["missing_attributes"] == {"item-2"}
    assert items["broken_sku_ref"] == {"item-2"}  # SKU-2 is not in the snapshot
    missing = con.execute("SELECT detail FROM tk_item_problems WHERE kind = 'missing_attributes'").fetchone()[0]
    assert missing == "missing Size, plytixProductId"
    completed = con.execute("SELECT recipient, record_id FROM tk_items WHERE kind = 'localisation_completed'").fetchall()
    assert sorted(completed) == sorted((p, "item-1") for p in rules_with().configurator.localisation.completed_to)
    assert not con.execute("SELECT 1 FROM tk_items WHERE kind = 'localisation_needed'").fetchall()


def test_many_items_make_one_digest_and_a_second_plan_makes_nothing(con):
    rules = rules_with(restricted_components=["Logo"], manufacturing_limits={"Width": {"max": 300}})
    evaluate(con, D, rules, NOW)
    planned, ledger = plan(con, D, rules, "http://ui")
    approvers = rules.configurator.review.approvers
    review = [p for p in planned if p.kind == "config_needs_review"]
    invalid = [p for p in planned if p.kind == "config_invalid_option"]
    # usd-over, restricted, and the EUR one (no EUR override here): 3 <= digest_above, so one message each.
    assert len(review) == 3 * len(approvers) and all(p.record_id for p in review)
    con.execute("DELETE FROM notification_outbox")
    assert record(con, D, planned, ledger, "run-1") == len(planned)
    carried = {key for key, in con.execute("SELECT message_key FROM configurator_items WHERE kind = "
                                           "'config_invalid_option'").fetchall()}
    assert {f"{k}|email" for k in carried} == {p.dedupe_key for p in invalid}
    evaluate(con, D, rules, NOW)
    assert plan(con, D, rules, "http://ui") == ([], [])  # every item is in the ledger now
    digest = rules.model_copy(update={"notifications": rules.notifications.model_copy(update={"digest_above": 1})})
    con.execute("DELETE FROM configurator_items WHERE kind = 'config_invalid_option'")
    again, _ = plan(con, D, digest, "http://ui")
    assert [p.dedupe_key.split("/")[1] for p in again if p.kind == "config_invalid_option"] == ["digest"] * len(approvers)
    assert all("3 on 2026-11-21" in p.subject for p in again if p.kind == "config_invalid_option")


def test_rules_file_names_a_bad_configurator_value():
    text = DEFAULT_RULES_PATH.read_text()
    with pytest.raises(RulesError, match="configurator.orders.milestones"):
        parse_rules(text.replace("      In Progress: Production started", "      Shipped: Production started"))
    with pytest.raises(RulesError, match="ascending after_days"):
        parse_rules(text.replace("{after_days: 5,", "{after_days: 1,"))
    rules = parse_rules(text)
    assert rules.configurator.recipients() <= set(rules.people)


class StandInThreekit:
    """Records status-note writes; fails them while `failing` (what the sandbox cannot be made to do fast)."""

    def __init__(self, failing: bool):
        self.failing, self.notes = failing, []

    def write_status_note(self, order_id: str, note: str) -> WriteResult:
        self.notes.append((order_id, note))
        if self.failing:
            raise RequestRejected("threekit", "PUT", f"/api/orders/{order_id}", 409, None, "conflict", 1)
        return WriteResult(order_id, applied=True, written=True)


def test_a_refused_write_back_goes_to_it_and_is_written_once_it_works(con):
    insert(con, "threekit_orders", partition_date=D, id="order-1", short_id="o1", name="Shopify #1", status="New",
           configuration_ids=["usd-over", "ok"], metadata="{}", updated_at=NOW)
    rules = rules_with()
    evaluate(con, D, rules, NOW)
    audit = AuditLog(con, "run-1", "configurator_notifications", False)
    failing = StandInThreekit(failing=True)
    assert write_back(con, D, rules, failing, audit)["order_notes_failed"] == 1
    assert failing.notes == [("order-1", "Design review pending: 1 configuration(s) need review (needs_review)")]
    it = con.execute("SELECT recipient, record_id FROM tk_items WHERE kind = 'sync_failure'").fetchall()
    assert sorted(it) == sorted((p, "order-1") for p in rules.configurator.sync.notify)
    working = StandInThreekit(failing=False)
    assert write_back(con, D, rules, working, audit)["order_notes_written"] == 1
    assert write_back(con, D, rules, working, audit)["order_notes_written"] == 0  # the ledger remembers
    assert len(working.notes) == 1


@pytest.mark.parametrize(("mark", "days", "expected"), [
    (None, [D], None),  # no mark yet: read everything
    (datetime(2026, 11, 21, 9, tzinfo=UTC), [D], datetime(2026, 11, 21, 9, tzinfo=UTC)),  # within the day
    (datetime(2026, 11, 19, 9, tzinfo=UTC), [D], datetime(2026, 11, 19, 9, tzinfo=UTC)),  # missed days: from it
    (datetime(2026, 11, 23, 1, tzinfo=UTC), [D, D + timedelta(days=1)], datetime(2026, 11, 21, tzinfo=UTC)),
])
def test_an_incremental_read_starts_at_the_mark_unless_the_run_covers_days_already_read(mark, days, expected):
    assert read_from(mark, days) == expected


def test_a_change_belongs_to_its_utc_day_and_old_ones_to_the_first_partition():
    first = date(2026, 8, 1)
    assert change_day(datetime(2026, 11, 21, 23, 30, tzinfo=UTC), first) == D
    assert change_day(datetime(2025, 1, 1, tzinfo=UTC), first) == first
