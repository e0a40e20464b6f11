"""Alerts on failed materialisations, failed checks and stale assets, through the outbox.

One sensor reads finished runs in order (a backlog is worked off, `RUNS_PER_TICK` at a time, never
skipped) and keeps, in its cursor, which (asset, partition) pairs are broken and with which error
class. A failure alerts only for pairs not already broken with that class; a later success of a
broken pair sends one recovery message. Alerts are sent by a run of `run_alert_job`, requested with
the failed run's id as run key: a sensor that crashes before saving its cursor asks again, and the
run key and the outbox's dedupe key make sure nothing is sent twice.
"""

import json
from datetime import UTC, datetime, timedelta

import dagster as dg
from dagster_duckdb import DuckDBResource

from assets.audit import AuditLog
from assets.notifications import deliver
from assets.outbox import Planned, enqueue
from assets.rules import load_rules
from assets.warehouse import ensure_tables
from orchestration.service_tags import service_run_tags
from orchestration.settings import ProjectSettings
from resources.opentext import OpenTextResource

RUNS_PER_TICK = 25
ALERT_JOB = "run_alert_job"
# Assets whose latest materialisation older than this is stale (a delayed import).
STALE_AFTER = {"plytix_product_changes": timedelta(hours=26), "catalog_quality_report": timedelta(hours=26)}
Event = dg.DagsterEventType


class RunAlertConfig(dg.Config):
    kind: str  # failure | recovery | check_failed | stale
    run_id: str
    job_name: str
    pairs: list[str]  # "asset|partition"
    error_class: str = ""
    message: str = ""


def _innermost(error):
    while error is not None and getattr(error, "cause", None) is not None:
        error = error.cause
    return error


def _partition_label(data) -> str:
    subset = getattr(data, "partitions_subset", None)
    if subset is not None:
        keys = sorted(subset.get_partition_keys())
        return keys[0] if len(keys) == 1 else f"{keys[0]}..{keys[-1]}"
    return getattr(data, "partition", None) or "-"


def run_pairs(instance: dg.DagsterInstance, run_id: str) -> tuple[set[str], set[str]]:
    """(planned, materialised) `asset|partition` pairs of a run."""
    planned, done = set(), set()
    for entry in instance.all_logs(run_id, of_type={Event.ASSET_MATERIALIZATION_PLANNED, Event.ASSET_MATERIALIZATION}):
        event = entry.dagster_event
        if event.event_type == Event.ASSET_MATERIALIZATION_PLANNED:
            data = event.event_specific_data
            planned.add(f"{data.asset_key.to_user_string()}|{_partition_label(data)}")
        else:
            materialization = event.event_specific_data.materialization
            done.add(f"{materialization.asset_key.to_user_string()}|{materialization.partition or '-'}")
    # A range run materialises day by day; a planned range counts as done when its last day is.
    done |= {p for p in planned if ".." in p and f"{p.split('|')[0]}|{p.split('..')[-1]}" in done}
    return planned, done


def failure_of(instance: dg.DagsterInstance, run_id: str) -> tuple[str, str]:
    """The error class and a one-line message: the root cause of the first failed step."""
    for entry in instance.all_logs(run_id, of_type={Event.STEP_FAILURE, Event.RUN_FAILURE}):
        error = _innermost(getattr(entry.dagster_event.event_specific_data, "error", None))
        if error is not None:
            first_line = (error.message or "").strip().splitlines()[0] if error.message else ""
            return error.cls_name or "Error", first_line[:300]
    return "RunFailure", "the run failed without a step error (see the run's logs)"


def failed_checks(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """`asset|check` of checks that failed with ERROR severity in a run that otherwise succeeded."""
    failed = []
    for entry in instance.all_logs(run_id, of_type=Event.ASSET_CHECK_EVALUATION):
        data = entry.dagster_event.event_specific_data
        if not data.passed and data.severity == dg.AssetCheckSeverity.ERROR:
            failed.append(f"{data.asset_key.to_user_string()}|{data.check_name}")
    return failed


def run_link(run_id: str) -> str:
    return f"{ProjectSettings().dagster_ui_url.rstrip('/')}/runs/{run_id}"


@dg.op(pool="duckdb_warehouse",  # writes the warehouse: queue behind backfills, never fail on the lock
       description="Plan one alert into the notification outbox for the integration owners, then deliver it.")
def send_run_alert(context: dg.OpExecutionContext, config: RunAlertConfig, warehouse: DuckDBResource,
                   opentext: OpenTextResource) -> dg.Output:
    rules = load_rules(ProjectSettings().rules_path)
    listing = "\n".join(f"- {pair.replace('|', ', partition ')}" for pair in config.pairs)
    subject, body = {
        "failure": (f"Failed: {config.job_name}: {config.error_class}",
                    f"These assets failed to materialise:\n{listing}\n\n{config.error_class}: {config.message}"),
        "recovery": (f"Recovered: {config.job_name}", f"These assets materialised again:\n{listing}"),
        "check_failed": (f"Check failed: {config.job_name}", f"These checks failed with severity ERROR:\n{listing}"),
        "stale": (f"Stale: {config.job_name}", f"No fresh materialisation:\n{listing}\n\n{config.message}"),
    }[config.kind]
    body += f"\n\nRun: {run_link(config.run_id)}"
    rows = [Planned(f"{config.kind}/{config.run_id}/{owner}|email", f"run_{config.kind}", "email", owner, owner,
                    subject[:200], body, config.run_id, datetime.now(UTC).date())
            for owner in rules.notifications.integration_owners]
    with warehouse.get_connection() as con:
        ensure_tables(con)
        planned = enqueue(con, rows, context.run.run_id)
        delivered = deliver(con, opentext.get_client(), AuditLog(con, context.run.run_id, ALERT_JOB, False))
    return dg.Output(None, metadata={"planned_new": planned, **delivered})


@dg.job(name=ALERT_JOB, description="Sends one alert (failure, recovery, failed check, stale asset) through OpenText.",
        tags=service_run_tags([send_run_alert]))
def run_alert_job():
    send_run_alert()


def _request(kind: str, run_id: str, job_name: str, pairs, error_class: str = "", message: str = "",
             key: str | None = None) -> dg.RunRequest:
    config = {"kind": kind, "run_id": run_id, "job_name": job_name, "pairs": sorted(pairs),
              "error_class": error_class, "message": message}
    return dg.RunRequest(run_key=key or f"{kind}:{run_id}", run_config={"ops": {"send_run_alert": {"config": config}}},
                         tags={"catalog-ops/alert-for": run_id})


@dg.sensor(job=run_alert_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Alerts the integration owners about failed materialisations (once per asset, partition and "
                       "error class while broken), recoveries, failed ERROR checks and stale assets.")
def materialisation_alerts(context: dg.SensorEvaluationContext):
    state = json.loads(context.cursor) if context.cursor else {"after": None, "broken": {}, "stale": {}}
    after = datetime.fromtimestamp(state["after"], UTC) if state["after"] else None
    records = context.instance.get_run_records(
        filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.SUCCESS], updated_after=after),
        order_by="update_timestamp", ascending=True, limit=RUNS_PER_TICK)
    broken: dict[str, str] = state["broken"]
    for record in records:
        run = record.dagster_run
        state["after"] = record.update_timestamp.timestamp()
        if run.job_name == ALERT_JOB:
            continue
        planned, done = run_pairs(context.instance, run.run_id)
        if run.status == dg.DagsterRunStatus.FAILURE:
            if run.tags.get("dagster/will_retry") == "true":
                continue  # Dagster retries it: alert on the retry's outcome, not on this attempt
            error_class, message = failure_of(context.instance, run.run_id)
            new = {p for p in planned - done if broken.get(p) != error_class}
            broken.update(dict.fromkeys(planned - done, error_class))
            if new:
                yield _request("failure", run.run_id, run.job_name, new, error_class, message)
        else:
            recovered = {p for p in done if p in broken}
            for pair in recovered:
                broken.pop(pair)
            if recovered:
                yield _request("recovery", run.run_id, run.job_name, recovered)
            checks = failed_checks(context.instance, run.run_id)
            if checks:
                yield _request("check_failed", run.run_id, run.job_name, checks)
    yield from _stale(context, state)
    context.update_cursor(json.dumps(state))


def _stale(context: dg.SensorEvaluationContext, state: dict):
    now = datetime.now(UTC)
    for asset, limit in STALE_AFTER.items():
        event = context.instance.get_latest_materialization_event(dg.AssetKey(asset))
        if event is None:
            continue  # never materialised: not stale, just new
        age = now - datetime.fromtimestamp(event.timestamp, UTC)
        if age > limit and state["stale"].get(asset) != event.run_id:
            state["stale"][asset] = event.run_id  # once per stale stretch
            yield _request("stale", event.run_id, asset, [f"{asset}|latest"], key=f"stale:{asset}:{event.run_id}",
                           message=f"last materialised {age.total_seconds() / 3600:.1f} h ago (limit "
                                   f"{limit.total_seconds() / 3600:.0f} h)")
