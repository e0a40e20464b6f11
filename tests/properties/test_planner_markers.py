"""The Planner marker convention (`resources.planner_markers`) over any text people or products bring:
keys are valid or refused with a ValueError naming them, titles keep their marker within 255
characters, and people's text above the managed block survives every rewrite of the block."""

from __future__ import annotations

import re
import uuid

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from resources import planner_markers as mk
from tests.properties.junk import nasty_text, odd_text, sql_text, unicode_text

kinds = st.sampled_from(mk.KINDS)
subjects = st.lists(nasty_text | sql_text, min_size=1, max_size=3)
people_text = (unicode_text | odd_text | sql_text).filter(lambda t: mk.BLOCK_HEADER not in t)


@given(kind=kinds | unicode_text, subject=subjects)
def test_a_key_is_valid_or_refused_by_name(kind, subject):
    assume(all(subject))  # an empty part: see test_known_gaps
    try:
        key = mk.issue_key(kind, *subject)
    except ValueError as error:
        assert repr(kind) in str(error) or "issue key" in str(error)
        return
    assert mk.KEY_RE.match(key) and mk.validate_key(key) == key


@given(kind=kinds, text=nasty_text | sql_text)
def test_key_part_makes_any_text_usable_in_a_key(kind, text):
    part = mk.key_part(text)
    assert re.fullmatch(r"[A-Za-z0-9._:-]*", part) and not part.startswith("-") and not part.endswith("-")
    assume(part and len(kind) + 1 + len(part) <= 120)
    assert mk.issue_key(kind, part) == f"{kind}/{part}"


@given(kind=kinds, part=st.from_regex(r"[A-Za-z0-9._:-]{1,60}", fullmatch=True), summary=nasty_text | sql_text)
def test_a_title_keeps_its_marker_whatever_the_summary(kind, part, summary):
    key = mk.issue_key(kind, part)
    title = mk.title(key, summary)
    assert len(title) <= mk.MAX_TITLE and mk.title_marker(title) == mk.marker(key)
    assert re.fullmatch(r"CO-[0-9a-f]{10}", mk.marker(key))
    assert uuid.UUID(mk.checklist_key(key, summary)).version == 5


@given(kind=kinds, part=st.from_regex(r"[A-Za-z0-9._:-]{1,60}", fullmatch=True), people=people_text,
       old_lines=st.lists(nasty_text, max_size=3), new_lines=st.lists(nasty_text, max_size=3),
       crlf=st.booleans())
def test_people_text_survives_every_rewrite_of_the_block(kind, part, people, old_lines, new_lines, crlf):
    key = mk.issue_key(kind, part)
    people = people.replace("\n", "\r\n") if crlf else people
    first = mk.compose_description(people, mk.managed_block(key, old_lines))
    second = mk.compose_description(first, mk.managed_block(key, new_lines))
    parsed = mk.split_description(second)
    assert parsed.key == key
    assert not mk.block_differs(second, mk.managed_block(key, new_lines))
    assert parsed.people.rstrip("\r\n") == mk.split_description(first).people.rstrip("\r\n")
    assert people.rstrip("\r\n") in second or mk.BLOCK_HEADER in people


@given(text=unicode_text | sql_text | odd_text)
def test_a_graph_time_is_an_instant_or_a_value_error(text):
    try:
        moment = mk.instant(text)
    except ValueError as error:
        assert "isoformat" in str(error) or text in str(error)
        return
    assert moment is None or moment.tzinfo is not None


@pytest.mark.parametrize("text", ["[CO-0123456789] x", "[CO-0123456789]x", "CO-0123456789 x", None, ""])
def test_title_marker_reads_only_a_leading_marker(text):
    assert mk.title_marker(text) == ("CO-0123456789" if text == "[CO-0123456789] x" else None)


@pytest.mark.parametrize("skus", [("商品", "製品"), ("X" * 130, "X" * 129 + "Y"), ("SKU-1", "SKU-2")],
                         ids=["no-key-character", "too-long", "ordinary"])
def test_every_sku_gives_a_valid_key_of_its_own(skus):
    keys = [mk.issue_key("channel-optimisation", "Marketplaces", mk.key_part(sku)) for sku in skus]
    assert len(set(keys)) == len(skus) and all(mk.validate_key(k) == k for k in keys)


def test_an_ordinary_sku_keeps_the_key_its_task_already_has():
    assert mk.key_part(" SKU-100234 ") == "SKU-100234" and mk.key_part("A" * mk.MAX_KEY_PART) == "A" * mk.MAX_KEY_PART


@pytest.mark.parametrize("skus", [("SKU-Ä1", "SKU-Ö1"), ("Jacket 1", "Jacket-1"), ("-abc-", "abc")],
                         ids=["umlauts", "space", "edge-dashes"])
def test_skus_that_differ_only_in_characters_a_key_cannot_hold_get_keys_of_their_own(skus):
    keys = [mk.issue_key("missing-attributes", mk.key_part(sku)) for sku in skus]
    assert len(set(keys)) == len(skus) and all(mk.validate_key(k) == k for k in keys)
    # ... and each names the key its task had before, unless it is that very key (then it keeps it).
    formers = [mk.former_key("missing-attributes", sku) for sku in skus]
    assert len({f or k for f, k in zip(formers, keys, strict=True)}) == 1


@given(sku=st.text(min_size=1, max_size=120))
def test_the_former_key_is_given_exactly_when_the_key_changed(sku):
    assume(mk.former_key_part(sku))
    key = mk.issue_key("duplicate-sku", mk.key_part(sku))
    former = mk.former_key("duplicate-sku", sku)
    if len(mk.former_key_part(sku)) <= mk.MAX_KEY_PART and sku.strip() == mk.former_key_part(sku):
        assert key == f"duplicate-sku/{sku.strip()}" and former is None
    elif len(mk.former_key_part(sku)) <= mk.MAX_KEY_PART:
        assert former == f"duplicate-sku/{mk.former_key_part(sku)}" != key
