"""PhotoShelter gallery listings (`PhotoShelterImage.from_listing`, `assets.extraction.photoshelter_rows`)
through a real DuckDB staging file: valid listings with any text come back exactly, a wrong custom
field is refused by name, and whatever a listing holds, its quarantine row can be stored."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from assets.extraction import photoshelter_rows
from assets.quarantine import check_storable, quarantine_row, reason_for
from assets.warehouse import StagingArea
from resources.photoshelter import DEFAULT_FIELD_MAP, PhotoShelterImage
from tests.properties.junk import json_values, nasty_text, surrogate_text, wrong

FIRST_DAY = date(2026, 8, 1)
NOW = datetime(2026, 11, 22, 12, tzinfo=UTC)
LO, HI = datetime(1970, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
TABLE, QUARANTINE = "photoshelter_image_changes", "photoshelter_quarantine"
FIELD_OF = {v: k for k, v in DEFAULT_FIELD_MAP.items()}

ids = st.text("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=4, max_size=16)
moments = st.datetimes(datetime(1971, 1, 1), datetime(2099, 1, 1)).map(lambda m: m.replace(microsecond=0))
# Keywords are comma-joined: a keyword is text without commas, trimmed, not empty.
keywords = st.lists(nasty_text.map(lambda t: t.replace(",", " ").strip()).filter(bool), max_size=4)


@st.composite
def listings(draw) -> tuple[dict, dict]:
    """(a `GalleryImage` as the listing sends it, the values the project should read from it)."""
    image_id, updated = "I" + draw(ids), draw(moments)
    custom = {"sku": draw(st.none() | nasty_text), "style_code": draw(st.none() | nasty_text),
              "approval_status": draw(st.sampled_from(["Approved", "Pending", None]) | nasty_text),
              "license_expiration_date": draw(st.none() | st.dates(date(1971, 1, 1), date(2099, 1, 1)))}
    words = draw(keywords)
    item = {
        "image_id": image_id, "f_visible": "t",
        "Image": {"image_id": image_id, "file_name": draw(nasty_text), "file_size": str(draw(st.integers(0, 2**40))),
                  "width": str(draw(st.integers(1, 10**5))), "height": "", "model_released": "t",
                  "updated_at": updated.strftime("%Y-%m-%d %H:%M:%S GMT"), "uploaded_at": None,
                  "Iptc": {"keyword": ",".join(words), "caption": draw(nasty_text), "title": ""}},
        "ImageLink": {"link": f"https://m.psecn.photoshelter.com/img-get2/{image_id}/fit=2000x2000"},
        "CustomMetadata": [{"field_id": f"F{i}", "field_name": FIELD_OF[name],
                            "tag": None if value is None else str(value)} for i, (name, value) in enumerate(custom.items())],
    }
    expected = {"image_id": image_id, "gallery_id": "G1", "file_name": item["Image"]["file_name"],
                "updated_at": updated.replace(tzinfo=UTC), "keywords": [w.strip() for w in words],
                "link": item["ImageLink"]["link"], **custom}
    return item, expected


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


def read(item) -> tuple[PhotoShelterImage | None, dict | None]:
    """One listing item as the extraction's per-record step treats it: an image, or a quarantine row."""
    try:
        check_storable(item)
        return PhotoShelterImage.from_listing(item, "G1"), None
    except Exception as exc:
        return None, quarantine_row(FIRST_DAY, "photoshelter", item, reason_for(exc), NOW)


@settings(max_examples=40)  # each example is a DuckDB transaction
@given(pairs=st.lists(listings(), min_size=1, max_size=4, unique_by=lambda p: p[0]["image_id"]))
def test_valid_listings_round_trip_through_the_warehouse(area, pairs):
    images = [PhotoShelterImage.from_listing(item, "G1") for item, _ in pairs]
    rows = photoshelter_rows(images, LO, HI, FIRST_DAY, NOW)
    stage(area, rows, [])
    columns = ["image_id", "gallery_id", "file_name", "updated_at", "keywords", "link", "sku", "style_code",
               "approval_status", "license_expiration_date"]
    stored = area.con.execute(f"SELECT {', '.join(columns)} FROM {TABLE} ORDER BY image_id").fetchall()  # noqa: S608
    stored = [dict(zip(columns, row, strict=True)) for row in stored]
    for row in stored:
        row["updated_at"] = row["updated_at"].astimezone(UTC)
    assert stored == sorted((expected for _, expected in pairs), key=lambda e: e["image_id"])


@given(pair=listings(), field=st.sampled_from(["sku", "style_code", "approval_status", "license_expiration_date"]),
       value=wrong.filter(lambda v: not isinstance(v, str | None)))
def test_a_custom_field_of_the_wrong_type_is_refused_by_name(pair, field, value):
    # pydantic reads a number as a date (Unix seconds): lax, but a tag is text, so no number arrives here.
    assume(field != "license_expiration_date" or not isinstance(value, int | float))
    item, _ = pair
    for entry in item["CustomMetadata"]:
        if entry["field_name"] == FIELD_OF[field]:
            entry["tag"] = value
    with pytest.raises(ValidationError) as refused:
        PhotoShelterImage.from_listing(item, "G1")
    assert field in reason_for(refused.value)


@settings(max_examples=40)  # each example is a DuckDB transaction
@given(item=json_values | listings().flatmap(lambda p: st.builds(
    lambda section, value: {**p[0], section: value}, st.sampled_from(["Image", "CustomMetadata", "ImageLink",
                                                                      "image_id"]), wrong)))
def test_whatever_a_listing_holds_it_is_read_or_quarantined_and_stored(area, item):
    image, bad = read(item)
    rows = photoshelter_rows([image], LO, HI, FIRST_DAY, NOW) if image else []
    stage(area, rows, [bad] if bad else [])
    assert area.count(TABLE) + area.count(QUARANTINE) == (0 if image and not rows else 1)
    if bad:
        assert bad["reason"].strip()
        json.loads(bad["record"])


@settings(max_examples=40)  # each example is a DuckDB transaction
@given(pair=listings(), text=surrogate_text)
def test_a_file_name_the_warehouse_cannot_store_is_quarantined_by_name(area, pair, text):
    item, _ = pair
    item["Image"]["file_name"] = text
    image, bad = read(item)
    assert image is None and "Image.file_name: text is not valid Unicode" in bad["reason"]
    stage(area, [], [bad])


@pytest.mark.parametrize("change, field", [({"Image": {"width": "wide"}}, "Image.width:"),
                                           ({"Image": {"updated_at": "yesterday"}}, "Image.updated_at:"),
                                           ({"Image": "not an object"}, "Image: expected an object"),
                                           ({"Image": {"Iptc": {"keyword": 5}}}, "Image.Iptc.keyword:"),
                                           ({"Image": {"Iptc": ["x"]}}, "Image.Iptc: expected an object"),
                                           ({"CustomMetadata": "sku=1"}, "CustomMetadata: expected a list")],
                         ids=["width", "updated_at", "Image", "keyword", "Iptc", "CustomMetadata"])
def test_an_unreadable_value_is_quarantined_naming_its_field(change, field):
    image, bad = read({"image_id": "I0001", **change})
    assert image is None and field in bad["reason"]
