"""Planner tasks and task details as plain dicts (contracts/planner.md §4.1, §4.4, §4.5): creation,
PATCH with per-key merge of maps, the 400s, completion semantics, and what a task mirrors of its
details. Pure functions: the service module loads, saves and bumps etags around them.

People's edits (the sandbox-only calls) go through the same functions with a user identity, so a
person's write and the app's write can never differ in shape.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sandbox.services.planner_common import (
    GUID_RE,
    ID_RE,
    NO_QUALIFIED_NAME,
    GraphError,
    bad_request,
    not_found,
    parse_datetime,
    stamp7,
)

TASK_READ_ONLY = frozenset({"id", "createdDateTime", "completedDateTime", "completedBy", "createdBy", "hasDescription",
                            "referenceCount", "checklistItemCount", "activeChecklistItemCount"})
TASK_WRITABLE = frozenset({"planId", "bucketId", "title", "orderHint", "assigneePriority", "percentComplete",
                           "startDateTime", "dueDateTime", "previewType", "conversationThreadId", "priority",
                           "appliedCategories", "assignments"})
DETAILS_WRITABLE = frozenset({"description", "previewType", "checklist", "references"})
PREVIEW_TYPES = frozenset({"automatic", "noPreview", "checklist", "description", "reference"})
CATEGORY_RE = re.compile(r"^category([1-9]|1\d|2[0-5])$")
MAX_TITLE = 255
MAX_CHECKLIST_ITEMS = 20  # §4.5: the code is documented, the limit inferred
ASSIGNMENT_TYPE = "microsoft.graph.plannerAssignment"
CHECKLIST_TYPE = "microsoft.graph.plannerChecklistItem"
REFERENCE_TYPE = "microsoft.graph.plannerExternalReference"


@dataclass
class Context:
    """Who writes, when, and the lookups a write needs."""

    caller: dict  # {"application": {...}} or {"user": {...}}
    now: datetime
    hint: Callable[[], str]  # a fresh service-computed order hint
    bucket_plan: Callable[[str], str | None]  # bucket id -> its plan id, None if unknown
    plan_exists: Callable[[str], bool]


# ---------- messages (inferred unless §4 quotes them) ----------
def _unknown_property(name: str, type_name: str) -> GraphError:
    return bad_request(f"The property '{name}' does not exist on type 'microsoft.graph.{type_name}'. Make sure to only "
                       "use property names that are defined by the type or mark the type as open type.")


def _read_only(name: str) -> GraphError:
    return bad_request(f"The request is invalid:\nThe property '{name}' is read-only and cannot be set.")


def _invalid(name: str) -> GraphError:
    return bad_request(f"The request is invalid:\nThe value of the property '{name}' is not valid or out of range.")


def _bad_hint() -> GraphError:
    return bad_request("The request is invalid:\nThe order hint is not in the correct format.")


def _unresolved_type(name: str) -> GraphError:
    return bad_request(f"The request is invalid:\nA type named '{name}' could not be resolved by the model. When a "
                       "model is available, each type name must resolve to a valid type.")


# ---------- tasks ----------
def new_task(body: Any, ctx: Context) -> dict:
    """A task from a POST body, every property present; `id` is filled in by the caller."""
    fields = _fields(body, TASK_WRITABLE, TASK_READ_ONLY, "plannerTask")
    plan_id = fields.get("planId")
    if not plan_id:
        raise bad_request("The request is invalid:\nThe planId field is required.")
    if not isinstance(plan_id, str) or not ID_RE.match(plan_id):
        raise _invalid("planId")
    if not ctx.plan_exists(plan_id):
        raise not_found()
    now = stamp7(ctx.now)
    task = {"planId": plan_id, "bucketId": None, "title": "", "orderHint": ctx.hint(), "assigneePriority": "",
            "percentComplete": 0, "startDateTime": None, "createdDateTime": now, "dueDateTime": None,
            "hasDescription": False, "previewType": "automatic", "completedDateTime": None, "completedBy": None,
            "referenceCount": 0, "checklistItemCount": 0, "activeChecklistItemCount": 0,
            "conversationThreadId": None, "priority": 5, "id": None, "createdBy": ctx.caller,
            "appliedCategories": {}, "assignments": {}}
    fields.pop("planId")
    return _apply_task_fields(task, fields, ctx)


def patch_task(task: dict, body: Any, ctx: Context) -> dict:
    """The task after a PATCH: only sent properties change, maps merge per key."""
    fields = _fields(body, TASK_WRITABLE - {"planId"}, TASK_READ_ONLY | {"planId"}, "plannerTask")
    return _apply_task_fields(copy.deepcopy(task), fields, ctx)


def _apply_task_fields(task: dict, fields: dict, ctx: Context) -> dict:
    for name, value in fields.items():
        if name == "bucketId":
            task["bucketId"] = _bucket(value, task["planId"], ctx)
        elif name == "title":
            if not isinstance(value, str) or len(value) > MAX_TITLE:
                raise _invalid(name)
            task["title"] = value
        elif name in ("priority", "percentComplete"):
            top = 10 if name == "priority" else 100
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= top:
                raise _invalid(name)
            if name == "percentComplete":
                _complete(task, value, ctx)
            task[name] = value
        elif name in ("startDateTime", "dueDateTime"):
            if value is not None and parse_datetime(value) is None:
                raise _invalid(name)
            task[name] = value  # due and start dates come back as sent
        elif name == "orderHint":
            task["orderHint"] = _hint(value, ctx)
        elif name == "assigneePriority":
            task["assigneePriority"] = "" if value in ("", None) else _hint(value, ctx)
        elif name == "previewType":
            if value not in PREVIEW_TYPES:
                raise _invalid(name)
            task["previewType"] = value
        elif name == "conversationThreadId":
            if value is not None and not isinstance(value, str):
                raise _invalid(name)
            task[name] = value
        elif name == "appliedCategories":
            task[name] = _merge_categories(task[name], value)
        elif name == "assignments":
            task[name] = _merge_assignments(task[name], value, ctx)
    return task


def _complete(task: dict, percent: int, ctx: Context) -> None:
    """100 completes (time of this write, by the caller); below 100 clears both; 100 again changes nothing."""
    if percent == 100 and task["percentComplete"] != 100:
        task["completedDateTime"], task["completedBy"] = stamp7(ctx.now), ctx.caller
    elif percent < 100:
        task["completedDateTime"], task["completedBy"] = None, None


def complete_as(task: dict, ctx: Context) -> dict:
    """A person completing the task (sandbox-only call): a fresh completion by that person."""
    task = copy.deepcopy(task)
    task["percentComplete"], task["completedDateTime"], task["completedBy"] = 100, stamp7(ctx.now), ctx.caller
    return task


def _bucket(value: Any, plan_id: str, ctx: Context) -> str:
    if not isinstance(value, str) or not ID_RE.match(value):
        raise _invalid("bucketId")
    owner = ctx.bucket_plan(value)
    if owner is None:
        raise not_found()
    if owner != plan_id:
        raise bad_request("The request is invalid:\nThe bucket does not belong to the task's plan.")
    return value


def _merge_categories(current: dict, value: Any) -> dict:
    if not isinstance(value, dict):
        raise _invalid("appliedCategories")
    merged = dict(current)
    for name, flag in value.items():
        if not CATEGORY_RE.match(name) or (flag is not None and not isinstance(flag, bool)):
            raise _invalid("appliedCategories")
        if flag:
            merged[name] = True
        else:
            merged.pop(name, None)
    return merged


def _merge_assignments(current: dict, value: Any, ctx: Context) -> dict:
    if not isinstance(value, dict):
        raise _invalid("assignments")
    merged = copy.deepcopy(current)
    for user_id, item in value.items():
        if not GUID_RE.match(user_id):
            raise _invalid("assignments")
        if item is None:
            merged.pop(user_id, None)
            continue
        if not isinstance(item, dict):
            raise _invalid("assignments")
        _require_type(item, ASSIGNMENT_TYPE)
        extra = set(item) - {"@odata.type", "orderHint"}
        if extra:
            raise _unknown_property(sorted(extra)[0], "plannerAssignment")
        if "orderHint" not in item:
            raise bad_request("The request is invalid:\nValue cannot be null.\nParameter name: orderHint")
        hint = _hint(item["orderHint"], ctx) + "PZ"
        if user_id in merged:
            merged[user_id]["orderHint"] = hint
        else:
            merged[user_id] = {"@odata.type": f"#{ASSIGNMENT_TYPE}", "assignedDateTime": stamp7(ctx.now),
                               "orderHint": hint, "assignedBy": ctx.caller}
    return merged


# ---------- details ----------
def new_details(task_id: str) -> dict:
    return {"description": None, "previewType": "automatic", "id": task_id, "references": {}, "checklist": {}}


def patch_details(details: dict, body: Any, ctx: Context) -> dict:
    fields = _fields(body, DETAILS_WRITABLE, frozenset({"id"}), "plannerTaskDetails")
    details = copy.deepcopy(details)
    for name, value in fields.items():
        if name == "description":
            if value is not None and not isinstance(value, str):
                raise _invalid(name)
            details[name] = value  # plain text, replaced whole
        elif name == "previewType":
            if value not in PREVIEW_TYPES:
                raise _invalid(name)
            details[name] = value
        elif name == "checklist":
            details[name] = _merge_checklist(details[name], value, ctx)
        elif name == "references":
            details[name] = _merge_references(details[name], value, ctx)
    if len(details["checklist"]) > MAX_CHECKLIST_ITEMS:
        raise GraphError(403, "The maximum number of checklist items on a task has been reached.",
                         code="MaximumChecklistItemsOnTask")
    return details


def _merge_checklist(current: dict, value: Any, ctx: Context) -> dict:
    if not isinstance(value, dict):
        raise _invalid("checklist")
    merged = copy.deepcopy(current)
    for key, item in value.items():
        if not GUID_RE.match(key):  # keys are client-chosen GUIDs (doc); the check's text is inferred
            raise bad_request(f"The request is invalid:\nThe checklist item id '{key}' is not a valid GUID.")
        if item is None:
            merged.pop(key, None)
            continue
        if not isinstance(item, dict):
            raise _invalid("checklist")
        _require_type(item, CHECKLIST_TYPE)
        for name in item:
            if name in ("lastModifiedDateTime", "lastModifiedBy"):
                raise _read_only(name)
            if name not in ("@odata.type", "title", "isChecked", "orderHint"):
                raise _unknown_property(name, "plannerChecklistItem")
        old = merged.get(key)
        if old is None and not isinstance(item.get("title"), str):
            raise bad_request("The request is invalid:\nThe title of a new checklist item is required.")
        if "title" in item and (not isinstance(item["title"], str) or len(item["title"]) > MAX_TITLE):
            raise _invalid("title")
        if "isChecked" in item and not isinstance(item["isChecked"], bool):
            raise _invalid("isChecked")
        entry = old or {"@odata.type": f"#{CHECKLIST_TYPE}", "isChecked": False, "title": "", "orderHint": None}
        entry = {**entry, **{k: item[k] for k in ("title", "isChecked") if k in item}}
        if "orderHint" in item or old is None:
            entry["orderHint"] = _hint(item["orderHint"], ctx) if "orderHint" in item else ctx.hint()
        entry["lastModifiedDateTime"], entry["lastModifiedBy"] = stamp7(ctx.now), ctx.caller
        merged[key] = entry
    return merged


def _merge_references(current: dict, value: Any, ctx: Context) -> dict:
    if not isinstance(value, dict):
        raise _invalid("references")
    merged = copy.deepcopy(current)
    for key, item in value.items():
        if not key or any(ch in key for ch in ".:@#"):  # keys are encoded URLs (doc)
            raise _invalid("references")
        if item is None:
            merged.pop(key, None)
            continue
        if not isinstance(item, dict):
            raise _invalid("references")
        _require_type(item, REFERENCE_TYPE)
        for name in item:
            if name not in ("@odata.type", "alias", "type", "previewPriority"):
                raise _unknown_property(name, "plannerExternalReference")
        entry = merged.get(key) or {"@odata.type": f"#{REFERENCE_TYPE}", "alias": None, "type": None,
                                    "previewPriority": ctx.hint()}
        entry = {**entry, **{k: item[k] for k in ("alias", "type") if k in item}}
        if "previewPriority" in item:
            entry["previewPriority"] = _hint(item["previewPriority"], ctx)
        entry["lastModifiedDateTime"], entry["lastModifiedBy"] = stamp7(ctx.now), ctx.caller
        merged[key] = entry
    return merged


def mirrored(details: dict) -> dict:
    """What the task shows of its details; when any of it changes, so does the task's etag."""
    items = details["checklist"].values()
    return {"hasDescription": bool(details["description"]), "referenceCount": len(details["references"]),
            "checklistItemCount": len(items), "activeChecklistItemCount": sum(1 for i in items if not i["isChecked"])}


# ---------- shared ----------
def _fields(body: Any, writable: frozenset, read_only: frozenset, type_name: str) -> dict:
    """The body's properties, OData annotations dropped; unknown or read-only ones are 400s."""
    if not isinstance(body, dict):
        raise bad_request("The request is invalid:\nAn object was expected.")
    fields = {k: v for k, v in body.items() if not k.startswith("@odata.")}
    for name in fields:
        if name in read_only:
            raise _read_only(name)
        if name not in writable:
            raise _unknown_property(name, type_name)
    return fields


def _require_type(item: dict, expected: str) -> None:
    given = item.get("@odata.type")
    if given is None:
        raise bad_request(NO_QUALIFIED_NAME)
    if not isinstance(given, str) or given.lstrip("#") != expected:
        raise _unresolved_type(str(given))


def _hint(value: Any, ctx: Context) -> str:
    """An order hint as a client sends it: `<previous> <next>!`, either side possibly empty."""
    if not isinstance(value, str) or not value.endswith("!") or " " not in value or len(value) > 512:
        raise _bad_hint()
    return ctx.hint()
