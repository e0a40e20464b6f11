"""The quality rules file: a pydantic model, so a bad key or value is named when it is loaded."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

DEFAULT_RULES_PATH = Path(__file__).resolve().parent.parent / "orchestration" / "rules.yaml"
RULES = ("missing_required_attribute", "missing_category_attribute", "channel_attribute_invalid", "missing_images",
         "unapproved_images", "no_hero_image", "usage_rights_expired", "usage_rights_expiring", "duplicate_sku",
         "unknown_category", "family_mismatch", "missing_translation", "publish_blocked", "launch_ready")
Severity = Literal["error", "warning", "info"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RequiredAttributes(_Strict):
    global_: list[str] = Field(default_factory=list, alias="global")
    by_category: dict[str, list[str]] = {}


class ChannelRule(_Strict):
    attribute: str
    max_length: int | None = Field(None, gt=0)


class Taxonomy(_Strict):
    families: dict[str, list[list[str]]]


class ImageRules(_Strict):
    stages_needing_hero: list[str]
    expiring_within_days: int = Field(30, ge=0)


class LaunchRules(_Strict):
    stage: str


class Owners(_Strict):
    default: str
    by_category: dict[str, str] = {}
    by_channel: dict[str, str] = {}
    by_rule: dict[str, str] = {}


class QualityRules(_Strict):
    locales: dict[str, str] = {}
    required_attributes: RequiredAttributes
    channel_rules: dict[str, list[ChannelRule]] = {}
    taxonomy: Taxonomy
    images: ImageRules
    launch: LaunchRules
    severity: dict[str, Severity]
    owners: Owners

    @model_validator(mode="after")
    def _known_rules(self) -> QualityRules:
        unknown = sorted(set(self.severity) - set(RULES)) + sorted(set(self.owners.by_rule) - set(RULES))
        if unknown:
            raise ValueError(f"unknown rule name(s): {', '.join(unknown)}; known rules: {', '.join(RULES)}")
        missing = sorted(set(RULES) - set(self.severity))
        if missing:
            raise ValueError(f"severity missing for rule(s): {', '.join(missing)}")
        return self


class RulesError(ValueError):
    """The rules file is unreadable or invalid; the message names the file and each bad key."""


def parse_rules(text: str, source: str = "<rules>") -> QualityRules:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RulesError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise RulesError(f"{source}: expected a mapping at the top level")
    try:
        return QualityRules.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}"
                             for e in exc.errors())
        raise RulesError(f"{source}: {problems}") from None


@cache
def load_rules(path: Path | None = None) -> QualityRules:
    path = path or DEFAULT_RULES_PATH
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise RulesError(f"{path}: cannot read rules file: {exc.strerror}") from None
    return parse_rules(text, str(path))
