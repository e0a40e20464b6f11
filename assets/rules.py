"""The quality rules file: a pydantic model, so a bad key or value is named when it is loaded."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from assets.commerce_rules import CommerceRules
from assets.configurator_rules import ConfiguratorRules

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
    # Products in these stages take their approved images and usage rights from PhotoShelter.
    sync_stages: list[str] = ["Image review", "Ready for approval", "Approved", "Published"]


class LaunchRules(_Strict):
    stage: str


class Owners(_Strict):
    default: str
    by_category: dict[str, str] = {}
    by_channel: dict[str, str] = {}
    by_rule: dict[str, str] = {}


class Person(_Strict):
    """Someone an owner address stands for: how to reach them and who they escalate to."""

    name: str
    phone: str | None = Field(None, pattern=r"^\+[1-9][0-9]{6,14}$")  # E.164, for SMS
    entra_id: str | None = Field(None, pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
    manager: str | None = None


class NotificationRules(_Strict):
    # An owner's new findings on one day beyond this many go out as one digest, not one message each.
    digest_above: int = Field(5, ge=0)
    published_to: list[str] = []  # told when products are approved and published
    integration_owners: list[str] = []  # told about failed pushes, syncs and API calls
    # Findings open this many days escalate, level by level, up the manager chain (SMS from level 2).
    escalation_after_days: list[int] = [3, 7]
    milestone_min_products: int = Field(1, ge=1)  # a category milestone needs at least this many products


class Launch(_Strict):
    """A seasonal launch: the products in it (by category root or path prefix, and/or SKUs) and the
    channels its images must be licensed for."""

    name: str = Field(pattern=r"^[A-Za-z0-9 ._-]{1,80}$")
    categories: list[list[str]] = []
    skus: list[str] = []
    channels: list[str] = ["E-commerce"]

    @model_validator(mode="after")
    def _has_products(self) -> Launch:
        if not self.categories and not self.skus:
            raise ValueError(f"launch {self.name!r} names no categories and no skus")
        return self


class PlannerRules(_Strict):
    # Changes to these attributes need a review and approval task for `regulated_reviewer`.
    regulated_attributes: list[str] = []
    regulated_reviewer: str | None = None
    # A category root with at least this many products changed on one day is a catalog refresh.
    refresh_min_changes: int = Field(50, ge=1)
    launch_checklist: list[str] = ["Copy review", "Image approval", "Channel setup", "Marketplace validation"]
    # Turn task writes off without turning the rest of the actions off.
    enabled: bool = True


class WorkflowRules(_Strict):
    # The stage a product moves to when its Planner task is completed.
    next_stage: dict[str, str] = {}


class QualityRules(_Strict):
    locales: dict[str, str] = {}
    required_attributes: RequiredAttributes
    channel_rules: dict[str, list[ChannelRule]] = {}
    taxonomy: Taxonomy
    images: ImageRules
    launch: LaunchRules
    severity: dict[str, Severity]
    owners: Owners
    people: dict[str, Person] = {}
    notifications: NotificationRules = NotificationRules()
    workflow: WorkflowRules = WorkflowRules()
    launches: list[Launch] = []
    planner: PlannerRules = PlannerRules()
    commerce: CommerceRules = CommerceRules()
    configurator: ConfiguratorRules = ConfiguratorRules()

    @model_validator(mode="after")
    def _known_rules(self) -> QualityRules:
        unknown = sorted(set(self.severity) - set(RULES)) + sorted(set(self.owners.by_rule) - set(RULES))
        if unknown:
            raise ValueError(f"unknown rule name(s): {', '.join(unknown)}; known rules: {', '.join(RULES)}")
        missing = sorted(set(RULES) - set(self.severity))
        if missing:
            raise ValueError(f"severity missing for rule(s): {', '.join(missing)}")
        named = {self.owners.default, *self.owners.by_category.values(), *self.owners.by_channel.values(),
                 *self.owners.by_rule.values(), *self.notifications.published_to,
                 *self.notifications.integration_owners, *(p.manager for p in self.people.values() if p.manager),
                 *([self.planner.regulated_reviewer] if self.planner.regulated_reviewer else [])}
        unknown_people = sorted(named - set(self.people)) if self.people else []
        if unknown_people:
            raise ValueError(f"not in people: {', '.join(unknown_people)} (every owner and manager needs an entry)")
        return self


class RulesError(ValueError):
    """The rules file is unreadable or invalid; the message names the file and each bad key."""


def parse_rules(text: str, source: str = "<rules>") -> QualityRules:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RulesError(f"{source}: not valid YAML: {exc}") from None
    except RecursionError:  # PyYAML's parser recurses per nesting level: "[[[[..." exhausts the stack
        raise RulesError(f"{source}: nested too deeply to be a rules file") from None
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
