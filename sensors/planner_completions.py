"""The way back from Planner: a task a person completed moves its product to the next workflow stage.

The sensor lists the plan's marked tasks completed by people and asks for one run per completion
(the run key holds the task and its completion time, so a tick never asks twice, and a task reopened
and completed again is a new request). The op moves the product only from the stage the task was
about, so re-executing a run, or a stale completion, never moves a product two stages.
"""


import dagster as dg
from dagster_duckdb import DuckDBResource

from assets.audit import AuditLog
from assets.rules import load_rules
from assets.warehouse import ensure_tables
from orchestration.service_tags import service_run_tags
from orchestration.settings import ProjectSettings
from resources.planner import PlannerResource
from resources.plytix import PlytixResource

# Task kinds whose completion means "this product may move on", and the stage they are about.
ADVANCING_KINDS = {"launch-ready"}


class CompletedTaskConfig(dg.Config):
    task_id: str
    completed_at: str
    dry_run: bool = False


@dg.op(pool="duckdb_warehouse",  # writes the warehouse: queue behind backfills, never fail on the lock
       description="Move the product of a completed Planner task to its next workflow stage in Plytix, once.")
def advance_workflow_stage(context: dg.OpExecutionContext, config: CompletedTaskConfig, planner: PlannerResource,
                           plytix: PlytixResource, warehouse: DuckDBResource) -> dg.Output:
    rules = load_rules(ProjectSettings().rules_path)
    key = planner.get_client().task_key(config.task_id)
    kind = key.split("/", 1)[0] if key else None
    if kind not in ADVANCING_KINDS:
        context.log.info(f"task {config.task_id} ({key or 'not ours'}) does not move a product")
        return dg.Output(None, metadata={"moved": False, "reason": "not an advancing task"})
    with warehouse.get_connection() as con:
        ensure_tables(con)
        row = con.execute("SELECT product_id FROM planner_task_state WHERE key = ?", [key]).fetchone()
        if not row or not row[0]:
            context.log.warning(f"task {config.task_id} ({key}): no product recorded for it; nothing moved")
            return dg.Output(None, metadata={"moved": False, "reason": "unknown product"})
        product_id = row[0]
        from_stage = rules.launch.stage
        to_stage = rules.workflow.next_stage.get(from_stage)
        client = plytix.get_client()
        current = (client.get_product(product_id).get("attributes") or {}).get("workflow_stage")
        if to_stage is None or current != from_stage:
            context.log.info(f"product {product_id} is at {current!r}, not {from_stage!r}: left where it is")
            return dg.Output(None, metadata={"moved": False, "reason": f"stage is {current}"})
        audit = AuditLog(con, context.run.run_id, "advance_workflow_stage", config.dry_run)
        audit.record("plytix", "advance_stage", product_id, task_id=config.task_id, key=key, to_stage=to_stage,
                     from_stage=from_stage)
        if not config.dry_run:
            client.update_product_if_changed(product_id, attributes={"workflow_stage": to_stage})
    return dg.Output(None, metadata={"moved": not config.dry_run, "product_id": product_id, "from": from_stage,
                                     "to": to_stage, **audit.metadata()})


@dg.job(description="A completed Planner task moves its product to the next workflow stage in Plytix.",
        tags=service_run_tags([advance_workflow_stage]))
def advance_stage_job():
    advance_workflow_stage()


@dg.sensor(job=advance_stage_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Planner tasks completed by people: one run per completion (run key: task and time).")
def planner_completed_tasks(context: dg.SensorEvaluationContext, planner: PlannerResource):
    completed = planner.get_client().completed_by_people()
    for task in completed:
        yield dg.RunRequest(
            run_key=task.run_key,
            run_config={"ops": {"advance_workflow_stage": {"config": {"task_id": task.task_id,
                                                                       "completed_at": task.completed_at}}}},
            tags={"planner/task_id": task.task_id},
        )
    context.update_cursor(completed[-1].completed_at if completed else context.cursor)
