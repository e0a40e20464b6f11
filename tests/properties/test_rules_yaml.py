"""The rules file (`assets.rules.parse_rules`): whatever the text, it is a valid `QualityRules` that
survives a round trip, or a `RulesError` that names the file and the key at fault."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from assets.rules import DEFAULT_RULES_PATH, QualityRules, RulesError, parse_rules
from tests.properties.junk import SQL, odd_text, sql_text, unicode_text

SHIPPED = yaml.safe_load(DEFAULT_RULES_PATH.read_text())
SOURCE = "team-rules.yaml"
# What a person may type into YAML (no lone surrogates: a file on disk cannot hold them).
yaml_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), unicode_text, sql_text, odd_text,
                         st.text(max_size=5).map(lambda t: t * 2_000))
yaml_values = st.recursive(yaml_scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(unicode_text | sql_text, inner, max_size=3), max_leaves=6)


def paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from paths(value, (*prefix, i))


SHIPPED_PATHS = [p for p in paths(SHIPPED) if p]


def mutated(path: tuple, action: str, value) -> dict:
    root = yaml.safe_load(DEFAULT_RULES_PATH.read_text())
    parent = root
    for step in path[:-1]:
        parent = parent[step]
    if action == "delete":
        del parent[path[-1]]
    elif action == "extra" and isinstance(parent, dict):
        parent[f"{path[-1]}_{value!s:.20}"] = value
    else:
        parent[path[-1]] = value
    return root


def check(text: str) -> QualityRules | None:
    """parse_rules's contract: a model that round-trips, or a RulesError naming the file."""
    try:
        rules = parse_rules(text, SOURCE)
    except RulesError as error:
        assert str(error).startswith(f"{SOURCE}: ") and len(str(error)) > len(SOURCE) + 2
        return None
    again = parse_rules(yaml.safe_dump(rules.model_dump(mode="json", by_alias=True), allow_unicode=True), SOURCE)
    assert again == rules
    return rules


def test_the_shipped_rules_round_trip():
    assert check(DEFAULT_RULES_PATH.read_text()) is not None


@settings(max_examples=40)  # the pure-Python YAML loader is slow: 40 files of ~120 keys each
@given(path=st.sampled_from(SHIPPED_PATHS), action=st.sampled_from(["replace", "delete", "extra"]), value=yaml_values)
def test_a_changed_key_is_accepted_or_named(path, action, value):
    text = yaml.safe_dump(mutated(path, action, value), allow_unicode=True)
    try:
        parse_rules(text, SOURCE)
    except RulesError as error:
        message = str(error)
        named = [str(step) for step in path if isinstance(step, str)]
        # A field error names its path; a cross-key rule (an unknown rule, an owner not in people) says so.
        assert named[0] in message or "(top level)" in message, message[:300]
    check(text)


@given(text=st.text(max_size=200) | st.lists(st.sampled_from(["a:", " b", "- ", "[", "]", "{", "}", ":", "&x ", "*x",
                                                              "!!str ", "\n", "'", '"', *SQL]), max_size=40).map("".join))
def test_any_text_is_rules_or_a_rules_error(text):
    check(text)


@settings(max_examples=30)
@given(people=st.dictionaries(unicode_text.filter(bool), st.builds(dict, name=unicode_text | sql_text | odd_text),
                              max_size=3), owner=unicode_text.filter(bool))
def test_owners_must_be_people_whatever_their_names(people, owner):
    raw = yaml.safe_load(DEFAULT_RULES_PATH.read_text())
    raw["people"] = {**people, "x@example.com": {"name": "X"}}
    raw["owners"] = {"default": owner}
    raw["notifications"] = {}
    raw["planner"] = {}
    rules = check(yaml.safe_dump(raw, allow_unicode=True))
    assert (rules is not None) == (owner in raw["people"])


def test_deep_nesting_is_a_rules_error():
    with pytest.raises(RulesError, match="nested too deeply"):
        parse_rules("[" * 1_000, SOURCE)
