"""Plytix product records as extraction reads them (`assets.extraction.plytix_rows`), stored in a real
DuckDB staging file: any page is split into kept rows and quarantined records without raising, a
quarantined record's reason names the field, and valid records come back from the warehouse exactly."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from assets.extraction import plytix_rows
from assets.warehouse import StagingArea
from tests.properties.junk import json_values, nasty_text, surrogate_text, unicode_text, wrong

FIRST_DAY = date(2026, 8, 1)
NOW = datetime(2026, 11, 22, 12, tzinfo=UTC)
TABLE, QUARANTINE = "plytix_product_changes", "plytix_quarantine"

hex_id = st.text("0123456789abcdef", min_size=24, max_size=24)
moments = st.datetimes(datetime(1971, 1, 1), datetime(9000, 1, 1), timezones=st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]))
timestamps = moments.flatmap(lambda m: st.sampled_from([
    m.isoformat(), m.astimezone(UTC).isoformat().replace("+00:00", "Z"), m.astimezone(UTC).replace(tzinfo=None).isoformat()]))
clean_json = st.recursive(st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False,
                          allow_infinity=False) | nasty_text,
                          lambda inner: st.lists(inner, max_size=3) | st.dictionaries(unicode_text, inner, max_size=3),
                          max_leaves=8)


@st.composite
def products(draw) -> dict:
    """A record as the contract allows it, with the nastiest text a person can type into the PIM."""
    record = {"id": draw(hex_id), "sku": draw(nasty_text), "modified": draw(timestamps)}
    optional = {
        "label": st.none() | nasty_text, "status": st.none() | st.sampled_from(["Draft", "Completed"]) | nasty_text,
        "_parent_id": st.none() | hex_id, "num_variations": st.integers(0, 2**31 - 1),
        "categories": st.lists(hex_id | hex_id.map(lambda i: {"id": i}), max_size=4),
        "thumbnail": st.none() | hex_id | hex_id.map(lambda i: {"id": i, "url": "https://x/y.jpg"}),
        "attributes": st.dictionaries(unicode_text, clean_json, max_size=5),
    }
    for name, strategy in optional.items():
        if draw(st.booleans()):
            record[name] = draw(strategy)
    return record


FIELDS = ["id", "sku", "modified", "label", "status", "_parent_id", "num_variations", "categories", "thumbnail",
          "attributes"]


@pytest.fixture(scope="module")
def area(tmp_path_factory):
    staged = StagingArea(tmp_path_factory.mktemp("staging") / "warehouse.duckdb", "properties")
    staged.create(TABLE)
    staged.create(QUARANTINE)
    yield staged
    staged.discard()


def stage(area: StagingArea, good: list[dict], bad: list[dict]) -> None:
    area.con.execute(f"DELETE FROM {TABLE}")  # noqa: S608 (fixed names)
    area.con.execute(f"DELETE FROM {QUARANTINE}")  # noqa: S608
    area.append({TABLE: good, QUARANTINE: bad})


@settings(max_examples=40)  # each example is a DuckDB transaction
@given(page=st.lists(st.one_of(products().map(lambda p: ("valid", p)), st.tuples(st.just("mutated"), st.builds(
    lambda p, field, value, drop: ({k: v for k, v in p.items() if k != field} if drop else {**p, field: value}),
    products(), st.sampled_from(FIELDS), wrong, st.booleans())), json_values.map(lambda j: ("junk", j))), max_size=8))
def test_any_page_is_kept_or_quarantined_and_the_warehouse_takes_both(area, page):
    items = [item for _, item in page]
    good, bad = plytix_rows(items, FIRST_DAY, NOW)
    assert len(good) + len(bad) == len(items)
    assert len(good) >= sum(kind == "valid" for kind, _ in page)
    for row in bad:
        assert row["reason"].strip() and row["source"] == "plytix"
        json.loads(row["record"])  # always valid JSON, however odd or long the record
        assert len(row["reason"]) <= 1_000 and len(row["record"]) <= 100_000
    stage(area, good, bad)
    assert area.count(TABLE) == len(good) and area.count(QUARANTINE) == len(bad)


@given(record=products(), field=st.sampled_from(FIELDS), value=wrong, drop=st.booleans())
def test_a_quarantined_record_names_the_field_that_is_wrong(area, record, field, value, drop):
    item = {k: v for k, v in record.items() if k != field} if drop else {**record, field: value}
    good, bad = plytix_rows([item], FIRST_DAY, NOW)
    if bad:
        assert field in bad[0]["reason"], (field, bad[0]["reason"])
    stage(area, good, bad)


@settings(max_examples=40)  # each example is a DuckDB transaction
@given(record=products(), text=surrogate_text, field=st.sampled_from(["sku", "label", "status"]))
def test_text_the_warehouse_cannot_store_is_quarantined_with_its_field(area, record, text, field):
    good, bad = plytix_rows([{**record, field: text}], FIRST_DAY, NOW)
    assert not good and f"{field}: text is not valid Unicode" in bad[0]["reason"]
    stage(area, good, bad)
    stored = area.con.execute(f"SELECT record_id, record FROM {QUARANTINE}").fetchone()  # noqa: S608
    kept = json.loads(stored[1])
    assert stored[0] == record["id"] and (kept.get("id") == record["id"] or kept.get("truncated") is True)


@settings(max_examples=40)  # each example is a DuckDB transaction
@given(records=st.lists(products(), min_size=1, max_size=5, unique_by=lambda p: p["id"]))
def test_valid_records_round_trip_through_the_warehouse(area, records):
    good, bad = plytix_rows(records, FIRST_DAY, NOW)
    assert not bad and len(good) == len(records)
    stage(area, good, bad)
    stored = {row[0]: row[1:] for row in area.con.execute(
        f"SELECT id, sku, label, status, parent_id, num_variations, categories, thumbnail, attributes, "  # noqa: S608
        f"epoch_us(modified), partition_date FROM {TABLE}").fetchall()}
    for record in records:
        modified = datetime.fromisoformat(record["modified"].replace("Z", "+00:00"))
        modified = modified if modified.tzinfo else modified.replace(tzinfo=UTC)
        thumbnail = record.get("thumbnail")
        assert stored[record["id"]] == (
            record["sku"], record.get("label"), record.get("status"), record.get("_parent_id"),
            record.get("num_variations", 0), [c["id"] if isinstance(c, dict) else c for c in record.get("categories", [])],
            thumbnail["id"] if isinstance(thumbnail, dict) else thumbnail, json.dumps(record.get("attributes", {})),
            (modified - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1),
            max(modified.astimezone(UTC).date(), FIRST_DAY))


VALID = {"id": "0123456789abcdef01234567", "sku": "SKU-1", "modified": "2026-11-01T10:00:00Z"}


@pytest.mark.parametrize("change, field", [
    ({"num_variations": 2**31}, "num_variations"),  # fits the model's int, not the warehouse's INTEGER
    ({"modified": "9999-12-31T23:59:59-23:59"}, None),  # beyond datetime's range once in UTC
    ({"label": "x" * 300_000, "sku": None}, "sku"),  # a quarantined record too long to keep whole
    ({"attributes": {"\ud800": 1}}, "attributes"),  # a key the warehouse's JSON cannot hold
])
def test_records_that_used_to_fail_the_whole_page_are_quarantined(area, change, field):
    good, bad = plytix_rows([{**VALID, **change}], FIRST_DAY, NOW)
    assert not good and len(bad) == 1 and (field is None or field in bad[0]["reason"])
    stage(area, good, bad)
    assert area.count(QUARANTINE) == 1


@pytest.mark.parametrize("change", [{"categories": 5}, {"categories": "abc"}, {"categories": {"abc": 1}},
                                    {"modified": 1700000000}], ids=["int", "str", "dict", "epoch"])
def test_a_wrongly_shaped_category_list_or_timestamp_is_named(change):
    good, bad = plytix_rows([{**VALID, **change}], FIRST_DAY, NOW)
    assert not good and next(iter(change)) in bad[0]["reason"]
