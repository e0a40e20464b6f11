"""The rules file: the shipped defaults load, and every kind of mistake is named clearly."""

from __future__ import annotations

import pytest

from assets.rules import DEFAULT_RULES_PATH, RULES, RulesError, load_rules, parse_rules

DEFAULT_TEXT = DEFAULT_RULES_PATH.read_text()


def test_defaults_load_and_cover_every_rule():
    rules = load_rules()
    assert set(rules.severity) == set(RULES)
    assert rules.required_attributes.global_[0] == "label"


def test_unknown_key_is_named():
    with pytest.raises(RulesError, match=r"owners\.by_regoin: Extra inputs are not permitted"):
        parse_rules(DEFAULT_TEXT.replace("by_rule:", "by_regoin:"), "rules.yaml")


def test_bad_severity_is_named():
    with pytest.raises(RulesError, match=r"severity\.duplicate_sku: Input should be 'error', 'warning' or 'info'"):
        parse_rules(DEFAULT_TEXT.replace("duplicate_sku: error", "duplicate_sku: fatal"), "rules.yaml")


def test_unknown_rule_name_is_named():
    with pytest.raises(RulesError, match="unknown rule name\\(s\\): duplicate_skus"):
        parse_rules(DEFAULT_TEXT.replace("  duplicate_sku: error", "  duplicate_skus: error\n  duplicate_sku: error"))


def test_negative_threshold_is_refused():
    with pytest.raises(RulesError, match=r"images\.expiring_within_days: Input should be greater than or equal to 0"):
        parse_rules(DEFAULT_TEXT.replace("expiring_within_days: 30", "expiring_within_days: -1"))


def test_not_yaml_is_refused_with_the_file_name():
    with pytest.raises(RulesError, match="my-rules.yaml: not valid YAML"):
        parse_rules("owners: [unclosed", "my-rules.yaml")


def test_missing_file_is_named(tmp_path):
    with pytest.raises(RulesError, match="cannot read rules file"):
        load_rules(tmp_path / "absent.yaml")
