"""Secrets never leave the process: the catalog pipeline and its actions run against a sandbox with
every secret passed the production way (environment variables, handed to Dagster as `EnvVar`), then
runs fail on purpose with wrong, distinctive passwords, and everything Dagster keeps is searched:
every file under the instance's home (event log databases, compute logs), the runs' events and asset
metadata, the failures' error text, the warehouse, and the GraphQL API the UI reads.

The sandbox accepts only its own well-known credentials, so those are searched for, together with
distinctive values for the secrets it does not check (Shopify, Threekit) and the wrong passwords.
Python logging of the project and of httpx is captured at DEBUG into the event log and onto stderr
(so into the compute logs): a deployment that turns logging up must still leak nothing.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import re
import sqlite3
import sys
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from dagster._serdes import serialize_value
from dagster_duckdb import DuckDBResource
from dagster_graphql.test.utils import define_out_of_process_context, execute_dagster_graphql

from assets.warehouse import TABLES
from orchestration.definitions import action_assets, catalog_assets
from orchestration.resource_defs import build_resources
from orchestration.settings import SECRETS, SERVICE_ENV, SERVICE_ENV_PREFIXES, warehouse_config
from tests.conftest import start_sandbox, stop_sandbox

pytestmark = pytest.mark.slow  # ~30 s: a sandbox, nine real runs and a code server for GraphQL
ROOT = Path(__file__).resolve().parents[2]
# Two days of changes: enough for every client to sign in and write, without a 114-day backfill's events.
PREVIOUS, DAY = "2026-11-21", "2026-11-22"
EXTRACTION = ["plytix_product_changes", "plytix_categories", "photoshelter_image_changes"]
DERIVED = ["catalog_snapshot", "product_images", "catalog_quality_report"]
# The project's loggers and the HTTP client's (httpcore's DEBUG lines are socket events: slow, no headers).
LOGGERS = ("catalog_ops", "httpx")
# The secrets the sandbox checks must be its own; the others get values found nowhere else.
UNCHECKED = {"SHOPIFY_ACCESS_TOKEN": "shpat_SECRETz7Qm4Lx9Tk2Vw8Rb", "SHOPIFY_WEBHOOK_SECRET": "whsec-SECRETp3Hn6Rb1Yc5Jd0",
             "THREEKIT_TOKEN": "tk-SECRETf8Gs2Nq7Uw4Ze1Ka"}
ENV = {**{name: SERVICE_ENV[name][1] for name in SECRETS}, **UNCHECKED}
# (variable, wrong value, asset, partition): each run fails on its credentials.
WRONG = [("PLYTIX_API_PASSWORD", "wrong-SECRET-plytix-9Xv4KqT", "plytix_product_changes", DAY),
         ("PHOTOSHELTER_PASSWORD", "wrong-SECRET-ps-3Lm8TzQw", "photoshelter_image_changes", DAY),
         ("MS_CLIENT_SECRET", "wrong-SECRET-ms-6Qa1WdRe", "planner_tasks", DAY),
         ("OPENTEXT_CLIENT_SECRET", "wrong-SECRET-ot-2Hj5PnYu", "catalog_notifications", PREVIOUS)]


def needles() -> dict[str, str]:
    """Every secret value, and the encoded forms a careless log line would carry."""
    values = {**ENV, **{f"{var} (wrong)": value for var, value, _, _ in WRONG}}
    found = dict(values)
    for name, value in values.items():
        found[f"{name} base64"] = base64.b64encode(value.encode()).decode().rstrip("=")
    for secret in (ENV["OPENTEXT_CLIENT_SECRET"], WRONG[3][1]):
        found[f"OpenText Basic {secret}"] = base64.b64encode(f"sandbox-ot-client:{secret}".encode()).decode()
    return found


# Issued tokens: JWTs (Plytix, Microsoft) and bearer headers of any service.
TOKEN_PATTERNS = [re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"), re.compile(r"Bearer [A-Za-z0-9._~+/-]{12,}"),
                  re.compile(r"X-PS-Auth-Token['\"]?: ?['\"]?[A-Za-z0-9]{8,}")]


def leaks(text: str) -> list[str]:
    found = [name for name, value in needles().items() if value in text]
    return found + [f"token /{p.pattern}/: {m.group(0)[:12]}…" for p in TOKEN_PATTERNS for m in p.finditer(text)]


@contextlib.contextmanager
def environment(values: dict[str, str]):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def debug_logging_to_stderr():
    """What a deployment with logging turned up does: every library's DEBUG lines on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    loggers = [logging.getLogger(name) for name in LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.removeHandler(handler)
            lg.setLevel(level)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    proc, url = start_sandbox(products=120)
    home = tmp_path_factory.mktemp("dagster_home")
    warehouse = tmp_path_factory.mktemp("warehouse") / "warehouse.duckdb"
    cleared = {name: os.environ.pop(name) for name in list(os.environ) if name.startswith(SERVICE_ENV_PREFIXES)}
    settings = {"SANDBOX_URL": url, "CATALOG_OPS_WAREHOUSE_PATH": str(warehouse), "DAGSTER_HOME": str(home),
                "CATALOG_OPS_ACTIONS_MAX_AGE_DAYS": "100000", "CATALOG_OPS_DRY_RUN": "false"}
    instance = dg.DagsterInstance.local_temp(str(home), overrides={"python_logs": {
        "managed_python_loggers": list(LOGGERS), "python_log_level": "DEBUG"}})
    runs, failures = {}, {}
    try:
        with environment({**settings, **ENV}), debug_logging_to_stderr():
            resources = build_resources()
            configured = {getattr(r, field).env_var_name for r in resources.values() if hasattr(type(r), "model_fields")
                          for field in type(r).model_fields if isinstance(getattr(r, field), dg.EnvVar)}
            run = lambda selection, **kw: dg.materialize([*catalog_assets, *action_assets], selection=selection,  # noqa: E731
                                                         resources=resources, instance=instance, raise_on_error=False,
                                                         **kw)
            runs["extraction"] = run(EXTRACTION, tags={ASSET_PARTITION_RANGE_START_TAG: PREVIOUS,
                                                       ASSET_PARTITION_RANGE_END_TAG: DAY})
            runs["derived"] = run(DERIVED, tags={ASSET_PARTITION_RANGE_START_TAG: PREVIOUS,
                                                 ASSET_PARTITION_RANGE_END_TAG: DAY})
            runs["actions"] = run(["catalog_notifications", "planner_tasks"], partition_key=DAY)
            for variable, wrong, asset, partition in WRONG:
                with environment({variable: wrong}):
                    failures[variable] = run([asset], partition_key=partition)
            with define_out_of_process_context(str(ROOT / "workspace.yaml"), None, instance) as context:
                graphql = {name: execute_dagster_graphql(context, query) for name, query in graphql_queries(
                    [r.run_id for r in [*runs.values(), *failures.values()]]).items()}
        yield {"home": home, "warehouse": warehouse, "instance": instance, "runs": runs, "failures": failures,
               "graphql": graphql, "configured": configured}
    finally:
        os.environ.update(cleared)
        instance.dispose()
        stop_sandbox(proc)


def graphql_queries(run_ids: list[str]) -> dict[str, str]:
    event_fields = """__typename ... on MessageEvent { message }
        ... on ExecutionStepFailureEvent { error { message stack causes { message stack } } }
        ... on RunFailureEvent { pipelineFailureError: error { message stack } }
        ... on MaterializationEvent { metadataEntries { label description
            ... on TextMetadataEntry { text } ... on MarkdownMetadataEntry { mdStr }
            ... on JsonMetadataEntry { jsonString } ... on IntMetadataEntry { intValue } } }"""
    queries = {
        "resources": """{ repositoriesOrError { ... on RepositoryConnection { nodes {
            allTopLevelResourceDetails { name configuredValues { key value type } } } } } }""",
        "runs": "{ runsOrError { ... on Runs { results { runId status runConfigYaml tags { key value } } } } }",
    }
    for run_id in run_ids:
        queries[f"logs {run_id}"] = f"""{{ logsForRun(runId: "{run_id}", limit: 5000) {{
            ... on EventConnection {{ events {{ {event_fields} }} }} }} }}"""
    return queries


def home_text(home: Path) -> dict[str, str]:
    """Every file under DAGSTER_HOME as text; SQLite files as a full dump, so no row split across
    overflow pages can hide a value from the search."""
    texts = {}
    for path in home.rglob("*"):
        if not path.is_file():
            continue
        texts[str(path.relative_to(home))] = path.read_bytes().decode("utf-8", "replace")
        if path.suffix == ".db":
            with contextlib.closing(sqlite3.connect(path)) as con:
                texts[f"{path.relative_to(home)} (dump)"] = "\n".join(con.iterdump())
    return texts


def written(result, asset: str, key: str) -> int:
    return result.asset_materializations_for_node(asset)[-1].metadata[key].value


def test_the_pipeline_ran_with_every_secret_from_the_environment(world):
    assert all(result.success for result in world["runs"].values())
    # Every client signed in and did real work: rows read, a message sent, tasks created.
    runs = world["runs"]
    assert written(runs["extraction"], "plytix_product_changes", "dagster/row_count") > 0
    assert written(runs["extraction"], "photoshelter_image_changes", "dagster/row_count") > 0
    assert written(runs["actions"], "catalog_notifications", "submit_accepted") > 0
    assert written(runs["actions"], "planner_tasks", "tasks/created") > 0
    # Every secret a resource holds reaches it as an EnvVar (Shopify has no resource yet).
    assert world["configured"] >= SECRETS - {"SHOPIFY_ACCESS_TOKEN", "SHOPIFY_WEBHOOK_SECRET"}
    assert not any(result.success for result in world["failures"].values())


def test_nothing_under_dagster_home_holds_a_secret(world):
    texts = home_text(world["home"])
    compute_logs = [name for name in texts if "compute_logs" in name and texts[name].strip()]
    everything = "\n".join(texts.values())
    # The search sees what it must: the runs' events, asset metadata and captured output.
    assert compute_logs and all(r.run_id in everything for r in world["runs"].values())
    assert "records_quarantined" in everything and "HTTP Request: POST" in everything
    assert {name: leaks(text) for name, text in texts.items() if leaks(text)} == {}


def test_no_event_or_asset_metadata_holds_a_secret(world):
    instance = world["instance"]
    for result in [*world["runs"].values(), *world["failures"].values()]:
        events = instance.all_logs(result.run_id)
        assert events
        assert leaks("\n".join(serialize_value(event) for event in events)) == [], result.run_id
    for key in instance.get_asset_keys():
        for record in instance.fetch_materializations(key, limit=1000).records:
            assert leaks(serialize_value(record.asset_materialization)) == [], key


def test_failed_runs_say_what_failed_without_the_secret(world):
    for variable, wrong, _, _ in WRONG:
        result = world["failures"][variable]
        errors = [event.event_specific_data.error for event in result.all_events if event.is_step_failure]
        assert errors, variable
        text = "\n".join(error.to_string() for error in errors)
        assert re.search(r"401|[Aa]uthenticat|[Uu]nauthori[sz]ed|invalid_client|Credentials", text), text[-1500:]
        assert wrong not in text and leaks(text) == [], variable


def test_the_warehouse_holds_no_secret(world):
    # Configured as the project's resource: a run that failed inside `get_connection` leaves its connection
    # open (dagster-duckdb closes it only on success), and DuckDB refuses a second, differently configured one.
    with DuckDBResource(database=str(world["warehouse"]), connection_config=warehouse_config()).get_connection() as con:
        present = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        for table in sorted(present & set(TABLES)):
            rows = con.execute(f"SELECT * FROM {table}").fetchall()  # noqa: S608 (names from TABLES)
            assert leaks("\n".join(map(str, rows))) == [], table
        assert con.execute("SELECT count(*) FROM action_audit").fetchone()[0] > 0


def test_the_graphql_api_shows_variable_names_never_values(world):
    answers = world["graphql"]
    assert all(answer.errors is None for answer in answers.values()), {k: a.errors for k, a in answers.items()}
    everything = "\n".join(str(answer.data) for answer in answers.values())
    assert leaks(everything) == []
    nodes = answers["resources"].data["repositoriesOrError"]["nodes"]
    values = {(r["name"], v["key"]): (v["type"], v["value"]) for n in nodes for r in n["allTopLevelResourceDetails"]
              for v in r["configuredValues"]}
    assert values[("plytix", "api_password")] == ("ENV_VAR", "PLYTIX_API_PASSWORD")
    assert values[("threekit", "token")] == ("ENV_VAR", "THREEKIT_TOKEN")
    assert "Failed to authenticate" in everything or "401" in everything  # the failures' errors were read

