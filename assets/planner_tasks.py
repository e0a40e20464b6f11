"""`planner_tasks`: the work the catalog needs, reconciled with the tasks in the Planner plan.

Desired tasks come from the quality report in SQL (one per problem, keyed by the marker convention
of planner.md); the plan is read once, each desired task is created or brought in line (If-Match,
re-read on 412, inside the client), and open tasks whose problem is gone are completed with a note.
Review tasks for regulated changes are closed by people, never by the app.

Steady state is cheap: `planner_task_state` remembers each task's etag and the hash of what we
wanted; a task whose listing etag and desired hash are both unchanged is skipped without a GET.
"""


import hashlib
import json
from dataclasses import asdict, replace
from datetime import UTC, date, datetime

import dagster as dg
from dagster_duckdb import DuckDBResource

from assets.audit import ActionConfig, AuditLog, acting_days
from assets.quality import catalog_quality_report
from assets.rules import QualityRules, load_rules
from assets.warehouse import ensure_tables
from orchestration.partitions import daily_partitions
from orchestration.settings import ProjectSettings
from resources import planner_markers as mk
from resources.planner import DesiredTask, PlannerResource

MISSING_RULES = ["missing_required_attribute", "missing_category_attribute", "missing_translation",
                 "missing_images", "no_hero_image", "unapproved_images", "usage_rights_expired"]
TAXONOMY_RULES = ["unknown_category", "family_mismatch"]
# People close these (a review is a decision); the app never completes them.
PEOPLE_CLOSE = {"regulated-change"}

# One row per desired task: kind, subject, summary, owners, bucket, notes. Per product unless said.
DESIRED_SQL = """
WITH r AS (SELECT * FROM catalog_quality_report WHERE report_date = $day AND state <> 'resolved'),
s AS (SELECT * FROM catalog_snapshot WHERE snapshot_date = $day),
y AS (SELECT * FROM catalog_snapshot WHERE snapshot_date = $day - 1),
per_product AS (
    SELECT CASE WHEN list_contains($missing, r.rule) THEN 'missing-attributes'
                WHEN list_contains($taxonomy, r.rule) THEN 'taxonomy-error'
                WHEN r.rule = 'launch_ready' THEN 'launch-ready'
                WHEN r.rule = 'channel_attribute_invalid' THEN 'channel-optimisation' END AS kind,
           r.product_id, r.rule, r.owner, r.detail, r.severity
    FROM r
)
SELECT p.kind, s.sku AS subject, s.product_id,
       CASE p.kind WHEN 'missing-attributes' THEN 'Complete ' WHEN 'taxonomy-error' THEN 'Fix the taxonomy of '
                   WHEN 'launch-ready' THEN 'Launch ' ELSE 'Optimise channel content of ' END
           || coalesce(s.label, s.sku) || ' (' || trim(s.sku) || ')' AS summary,
       list(DISTINCT p.owner ORDER BY p.owner) AS owners,
       CASE WHEN p.kind = 'launch-ready' THEN $launch_stage ELSE coalesce(s.workflow_stage, 'New') END AS bucket,
       list(p.rule || ': ' || coalesce(p.detail, '') ORDER BY p.rule) AS notes,
       bool_or(s.workflow_stage = 'Published' OR p.severity = 'error' AND s.status = 'Completed') AS urgent
FROM per_product p JOIN s USING (product_id)
WHERE p.kind IS NOT NULL
GROUP BY p.kind, s.product_id, s.sku, s.label, s.workflow_stage, s.status
UNION ALL
SELECT 'duplicate-sku', s.sku_key, NULL, 'Resolve duplicate SKU ' || s.sku_key,
       list(DISTINCT r.owner ORDER BY r.owner), 'New',
       list('product ' || s.product_id || ' (' || coalesce(s.label, '') || ', stage ' || coalesce(s.workflow_stage, '?')
            || ')' ORDER BY s.product_id), false
FROM r JOIN s USING (product_id) WHERE r.rule = 'duplicate_sku' GROUP BY s.sku_key
UNION ALL
SELECT 'regulated-change', t.sku, t.product_id, 'Review the change to ' || coalesce(t.label, t.sku) || ' (' || trim(t.sku) || ')',
       [$reviewer], coalesce(t.workflow_stage, 'New'),
       list(a.attribute || ' changed from "' || coalesce(json_extract_string(y.attributes, '$.' || a.attribute), '')
            || '" to "' || coalesce(json_extract_string(t.attributes, '$.' || a.attribute), '') || '"'
            ORDER BY a.attribute), false
FROM s t JOIN y USING (product_id) CROSS JOIN (SELECT unnest($regulated) AS attribute) a
WHERE $reviewer IS NOT NULL AND json_extract_string(y.attributes, '$.' || a.attribute)
      IS DISTINCT FROM json_extract_string(t.attributes, '$.' || a.attribute)
GROUP BY t.product_id, t.sku, t.label, t.workflow_stage
UNION ALL
SELECT 'catalog-refresh', c.root, NULL,
       'Catalog refresh ' || c.root || ' ' || CAST($day AS VARCHAR) || ': ' || CAST(c.clean AS VARCHAR) || ' of '
           || CAST(c.changed AS VARCHAR) || ' products ready',
       [c.root], 'Enrichment',
       ['changed on ' || CAST($day AS VARCHAR) || ': ' || CAST(c.changed AS VARCHAR) || ' products',
        'passing every error rule: ' || CAST(c.clean AS VARCHAR),
        'progress: ' || CAST(CAST(round(100.0 * c.clean / c.changed) AS INTEGER) AS VARCHAR) || '%'], false
FROM (
    SELECT s.category_root AS root, count(*) AS changed,
           count(*) FILTER (WHERE s.product_id NOT IN (SELECT product_id FROM r WHERE severity = 'error')) AS clean
    FROM s JOIN plytix_product_changes ch ON ch.id = s.product_id AND ch.partition_date = $day
    WHERE s.category_root IS NOT NULL GROUP BY s.category_root
) c
WHERE c.changed >= $refresh_min AND c.clean < c.changed
"""


def desired_tasks(con, day: date, rules: QualityRules) -> list[tuple[DesiredTask, str | None]]:
    """The tasks the day's problems need, each with the product it is about (None for groups)."""
    planner = rules.planner
    rows = con.execute(DESIRED_SQL, {
        "day": day, "missing": MISSING_RULES, "taxonomy": TAXONOMY_RULES, "launch_stage": rules.launch.stage,
        "reviewer": planner.regulated_reviewer, "regulated": planner.regulated_attributes,
        "refresh_min": planner.refresh_min_changes}).fetchall()
    tasks = []
    for kind, subject, product_id, summary, owners, bucket, notes, urgent in rows:
        parts = [subject]
        if kind == "channel-optimisation":
            parts.insert(0, _channel_of(notes, rules))
        if kind == "catalog-refresh":  # owners holds the category root: its owner runs the refresh
            owners = [rules.owners.by_category.get(subject, rules.owners.default)]
        assignees = tuple(sorted({rules.people[o].entra_id for o in owners or []
                                  if o in rules.people and rules.people[o].entra_id}))
        tasks.append((DesiredTask(
            key=mk.issue_key(kind, *map(mk.key_part, parts)), former_key=mk.former_key(kind, *parts),
            summary=summary, bucket=bucket, assignees=assignees,
            priority=3 if urgent else 5, notes=tuple(notes or ()),
            checklist=tuple(planner.launch_checklist) if kind == "launch-ready" else ()), product_id))
    return tasks


def _channel_of(notes: list[str], rules: QualityRules) -> str:
    """The channel whose attribute rule a finding's detail names (the report keeps the attribute)."""
    for channel, channel_rules in rules.channel_rules.items():
        if any(rule.attribute in note for rule in channel_rules for note in notes):
            return channel
    return "channel"


def desired_hash(task: DesiredTask) -> str:
    """What the task should look like; `former_key` only says where to find it, so it is left out."""
    wanted = {name: value for name, value in asdict(task).items() if name != "former_key"}
    return hashlib.sha256(json.dumps(wanted, sort_keys=True, default=str).encode()).hexdigest()[:16]


def claim_former_keys(desired: list[tuple[DesiredTask, str | None]]) -> list[tuple[DesiredTask, str | None]]:
    """Each task keyed the earlier way goes to one problem only: not to any while a problem still has
    that very key (`Jacket-1` keeps it from `Jacket 1`), else to the first by key (`SKU-Ä1` before
    `SKU-Ö1`); the others get tasks of their own."""
    wanted = {task.key for task, _ in desired}
    claimed: set[str] = set()
    out = []
    for task, product_id in sorted(desired, key=lambda pair: pair[0].key):
        if task.former_key in wanted or task.former_key in claimed:
            task = replace(task, former_key=None)
        elif task.former_key:
            claimed.add(task.former_key)
        out.append((task, product_id))
    return out


def known_state(con) -> dict[str, tuple[str | None, str | None, str]]:
    """key -> (task id, etag, desired hash) of the tasks this project keeps open."""
    rows = con.execute("SELECT key, task_id, etag, desired_hash FROM planner_task_state WHERE status = 'open'").fetchall()
    return {key: (task_id, etag, digest) for key, task_id, etag, digest in rows}


def remember(con, key: str, product_id: str | None, task_id: str | None, etag: str | None, digest: str | None,
             status: str) -> None:
    con.execute(
        "INSERT INTO planner_task_state VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET "
        "product_id = coalesce(excluded.product_id, product_id), task_id = coalesce(excluded.task_id, task_id), "
        "etag = excluded.etag, desired_hash = excluded.desired_hash, status = excluded.status, "
        "updated_at = excluded.updated_at",
        [key, product_id, task_id, etag, digest, status, datetime.now(UTC)])


def reconcile(con, client, audit: AuditLog, day: date, rules: QualityRules, log) -> dict[str, int]:
    desired = claim_former_keys(desired_tasks(con, day, rules))
    wanted_keys = {task.key for task, _ in desired}
    known = known_state(con)
    for task, _ in desired:  # a task re-keyed this run is kept open under its new key, not closed
        if task.former_key in known:
            known[task.key] = known.get(task.key) or (known[task.former_key][0], None, None)
            del known[task.former_key]
    index = client.load_index()
    listed = {task["id"]: task.get("@odata.etag") for task in index.tasks()}
    counts: dict[str, int] = {"desired": len(desired)}
    for task, product_id in desired:
        digest = desired_hash(task)
        task_id, etag, last_digest = known.get(task.key, (None, None, None))
        if task_id and listed.get(task_id) == etag and last_digest == digest:
            counts["skipped_unchanged"] = counts.get("skipped_unchanged", 0) + 1
            continue
        audit.record("planner", "ensure_task", task.key, summary=task.summary, bucket=task.bucket)
        if audit.dry_run:
            continue
        outcome = client.ensure_task(task, index)
        counts[outcome.action] = counts.get(outcome.action, 0) + 1
        for note in outcome.notes:
            log.warning(f"planner {task.key}: {note}")
        # The etag to compare next time: a details write may have moved the task's, so read it back.
        fresh = client.get_task(outcome.task_id) if outcome.task_id and outcome.writes else None
        found = [fresh] if fresh else index.candidates(task.key)
        remember(con, task.key, product_id, outcome.task_id, found[0].get("@odata.etag") if found else None,
                 digest if outcome.action != "deferred" else None, "open")
        if task.former_key and outcome.action != "deferred":  # the problem's task now goes by the new key
            con.execute("UPDATE planner_task_state SET status = 'rekeyed', updated_at = ? WHERE key = ? "
                        "AND status = 'open'", [datetime.now(UTC), task.former_key])
    for key in sorted(set(known) - wanted_keys):
        if key.split("/", 1)[0] in PEOPLE_CLOSE:
            continue
        audit.record("planner", "complete_task", key)
        if audit.dry_run:
            continue
        outcome = client.complete_task(key, f"no longer found in the catalog quality report of {day}", index)
        counts[f"closed_{outcome.action}"] = counts.get(f"closed_{outcome.action}", 0) + 1
        if outcome.action != "deferred":
            remember(con, key, None, outcome.task_id, None, None, "completed")
    return counts


@dg.asset(
    deps=[catalog_quality_report], partitions_def=daily_partitions, backfill_policy=dg.BackfillPolicy.single_run(),
    pool="duckdb_warehouse", group_name="actions", kinds={"duckdb"}, owners=["team:catalog-operations"],
    description="Planner tasks for the day's problems (missing attributes, launch checklists, regulated changes, "
                "channel optimisation, duplicate SKUs, taxonomy errors, catalog refreshes), created, updated and "
                "completed as problems appear and are fixed. Tasks are found again by their marker.",
)
def planner_tasks(context: dg.AssetExecutionContext, config: ActionConfig, warehouse: DuckDBResource,
                  planner: PlannerResource) -> dg.MaterializeResult:
    rules = load_rules(ProjectSettings().rules_path)
    days, skipped = acting_days(context)
    counts: dict[str, int] = {}
    with warehouse.get_connection() as con:
        ensure_tables(con)
        audit = AuditLog(con, context.run.run_id, context.asset_key.to_user_string(), config.dry_run)
        if days and rules.planner.enabled:  # the plan mirrors the latest day; earlier days are history
            counts = reconcile(con, planner.get_client(), audit, days[-1], rules, context.log)
        open_tasks = con.execute("SELECT count(*) FROM planner_task_state WHERE status = 'open'").fetchone()[0]
    return dg.MaterializeResult(metadata={**{f"tasks/{k}": v for k, v in sorted(counts.items())},
                                          "open_tasks": open_tasks, "skipped_old_days": skipped, **audit.metadata()})
