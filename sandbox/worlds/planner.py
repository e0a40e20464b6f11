"""The Planner world (contracts/planner.md §7 "Seed"): the plan, one bucket per workflow stage, the
Entra people the routing rules name, and a few of people's own tasks the project must leave alone.

Tasks for findings start absent: the project creates them. Entra ids are fixed per mail address
(not per seed), so a deployment's owner table can name them; they are also served as ground truth
(`planner_user:<mail>` -> [id]) and at `GET /_sandbox/planner/people`.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta

import pandas as pd

from sandbox import taxonomy
from sandbox.services.planner_common import PLAN_ID, new_id, user_identity
from sandbox.services.planner_model import new_details
from sandbox.services.planner_store import SCHEMA

PEOPLE_TASKS_KIND = 300  # draw stream of people's own tasks
_ENTRA_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://login.microsoftonline.com/sandbox-tenant/users")
PLAN_OWNER_GROUP = str(uuid.uuid5(_ENTRA_NAMESPACE, "group:catalog-operations"))

# mail -> (display name, role, manager's mail). The first block mirrors `owners` in the default
# orchestration/rules.yaml; the rest are the seed pages' other roles (regulated-change reviewers,
# integration owners, sales and marketing) and two levels of managers for escalations.
PEOPLE: dict[str, tuple[str, str, str | None]] = {
    "catalog-operations@example.com": ("Catalog Operations", "default owner", "catalog-operations-manager@example.com"),
    "apparel-merchandising@example.com": ("Apparel Merchandising", "category owner: Apparel",
                                          "merchandising-manager@example.com"),
    "footwear-merchandising@example.com": ("Footwear Merchandising", "category owner: Footwear",
                                           "merchandising-manager@example.com"),
    "accessories-merchandising@example.com": ("Accessories Merchandising", "category owner: Accessories",
                                              "merchandising-manager@example.com"),
    "home-merchandising@example.com": ("Home Merchandising", "category owner: Home", "merchandising-manager@example.com"),
    "marketplaces-team@example.com": ("Marketplaces Team", "channel owner: Marketplaces", "channel-manager@example.com"),
    "data-steward@example.com": ("Data Steward", "data steward", "catalog-operations-manager@example.com"),
    "content-operations@example.com": ("Content Operations", "images and usage rights",
                                       "catalog-operations-manager@example.com"),
    "compliance-review@example.com": ("Compliance Review", "regulated changes: legal, compliance, brand",
                                      "catalog-operations-manager@example.com"),
    "integration-owner@example.com": ("Integration Owner", "push/sync and API failures",
                                      "catalog-operations-manager@example.com"),
    "sales-marketing@example.com": ("Sales and Marketing", "published and approved products",
                                    "head-of-ecommerce@example.com"),
    "merchandising-manager@example.com": ("Merchandising Manager", "manager", "head-of-ecommerce@example.com"),
    "channel-manager@example.com": ("Channel Manager", "manager", "head-of-ecommerce@example.com"),
    "catalog-operations-manager@example.com": ("Catalog Operations Manager", "manager", "head-of-ecommerce@example.com"),
    "head-of-ecommerce@example.com": ("Head of E-commerce", "director", None),
}
_PEOPLE_TASK_TITLES = ("Book studio for the SS26 footwear shoot", "Update the size guide PDF", "Review supplier onboarding deck",
                       "Plan FW26 lookbook", "Clean up the shared product drive", "Brief agency on marketplace banners",
                       "Collect fabric certificates", "Prepare Q4 range review")


def entra_id(mail: str) -> str:
    """The sandbox tenant's object id for a person: fixed per mail address."""
    return str(uuid.uuid5(_ENTRA_NAMESPACE, mail.lower()))


def build(con, gen) -> None:
    con.execute(SCHEMA)
    created = gen.now - timedelta(days=400)
    founder = entra_id("catalog-operations-manager@example.com")
    con.execute("INSERT INTO planner_plans VALUES (?, 'Catalog operations', ?, ?, ?)",
                [PLAN_ID, PLAN_OWNER_GROUP, _stamp(created), json.dumps(user_identity(founder))])
    truth: list[tuple[str, str]] = []
    for mail, (name, role, manager) in PEOPLE.items():
        con.execute("INSERT INTO planner_people VALUES (?, ?, ?, ?, ?)",
                    [entra_id(mail), mail, name, role, entra_id(manager) if manager else None])
        truth.append((f"planner_user:{mail}", entra_id(mail)))
    buckets = []
    for seq, stage in enumerate(taxonomy.WORKFLOW_STAGES, start=1):
        bucket = {"name": stage, "planId": PLAN_ID, "orderHint": str(8585269235419217847 - seq * 7_919_113),
                  "id": new_id(gen.o.seed, "bucket", seq)}
        con.execute("INSERT INTO planner_buckets VALUES (?, ?, ?, ?, 1)", [seq, bucket["id"], PLAN_ID, json.dumps(bucket)])
        truth.append((f"planner_bucket:{stage}", bucket["id"]))
        buckets.append(bucket["id"])
    rows = [_people_task(gen, seq, buckets) for seq in range(1, gen.o.planner_people_tasks + 1)]
    if rows:
        frame = pd.DataFrame(rows, columns=["seq", "id", "plan_id", "task", "etag_n", "details", "details_etag_n"])
        con.register("planner_frame", frame)
        con.execute("INSERT INTO planner_tasks SELECT * FROM planner_frame")
        con.unregister("planner_frame")
        truth += [("planner_people_task", row[1]) for row in rows]
    con.executemany("INSERT INTO ground_truth VALUES (?, ?)", truth)


def _people_task(gen, seq: int, buckets: list[str]) -> tuple:
    """A person's own task: no marker, created by a user, sometimes completed, with a checklist."""
    rng = gen.rng(PEOPLE_TASKS_KIND, seq)
    people = sorted(PEOPLE)
    author = entra_id(rng.choice(people))
    assignee = entra_id(rng.choice(people))
    created = gen.now - timedelta(days=rng.uniform(1, 60))
    task_id = new_id(gen.o.seed, "task", seq)
    percent = rng.choice((0, 0, 50, 100))
    checklist_key = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    checked = percent == 100
    details = new_details(task_id)
    details["description"] = "Notes from the weekly sync.\r\nOwner to confirm dates."
    details["checklist"] = {checklist_key: {
        "@odata.type": "#microsoft.graph.plannerChecklistItem", "isChecked": checked, "title": "Confirm with the team",
        "orderHint": "8585269209601773376", "lastModifiedDateTime": _stamp(created),
        "lastModifiedBy": user_identity(author)}}
    completed = created + timedelta(hours=rng.uniform(1, 20)) if percent == 100 else None
    task = {"planId": PLAN_ID, "bucketId": rng.choice(buckets), "title": rng.choice(_PEOPLE_TASK_TITLES),
            "orderHint": str(8584964728139267910 - seq), "assigneePriority": "", "percentComplete": percent,
            "startDateTime": None, "createdDateTime": _stamp(created),
            "dueDateTime": (gen.now + timedelta(days=rng.randint(3, 30))).strftime("%Y-%m-%dT17:00:00Z"),
            "hasDescription": True, "previewType": "automatic",
            "completedDateTime": _stamp(completed) if completed else None,
            "completedBy": user_identity(assignee) if completed else None, "referenceCount": 0,
            "checklistItemCount": 1, "activeChecklistItemCount": 0 if checked else 1, "conversationThreadId": None,
            "priority": rng.choice((1, 3, 5, 9)), "id": task_id, "createdBy": user_identity(author),
            "appliedCategories": {}, "assignments": {assignee: {
                "@odata.type": "#microsoft.graph.plannerAssignment", "assignedDateTime": _stamp(created),
                "orderHint": "8584964728740986700PZ", "assignedBy": user_identity(author)}}}
    return seq, task_id, PLAN_ID, json.dumps(task), rng.randint(1, 4), json.dumps(details), rng.randint(1, 3)


def _stamp(moment: datetime) -> str:
    """A deterministic 7-digit server time for seeded records."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}0Z"
