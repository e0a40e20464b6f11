"""Production deployment: deploy/dagster.yaml and the Helm values checked by Dagster's own config
validation, and a real PostgreSQL-backed instance that queues, limits and runs a materialisation.
"""

from __future__ import annotations

import importlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._config import process_config
from dagster._core.instance.config import dagster_instance_config
from dagster._core.instance.ref import InstanceRef
from dagster._core.storage.dagster_run import DagsterRun
from dagster._utils.tags import TagConcurrencyLimitsCounter

from orchestration.definitions import advance_stage_job, defs
from orchestration.service_tags import (
    SERVICES,
    asset_services,
    service_run_tags,
    services_of,
    tag_concurrency_limits,
)
from orchestration.settings import SERVICE_ENV_PREFIXES
from tests.conftest import free_port, start_sandbox, stop_sandbox
from tests.deploy import prod_location

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PG_ENV = {"DAGSTER_PG_HOST": "db.internal", "DAGSTER_PG_PORT": "6543", "DAGSTER_PG_USERNAME": "dagster",
          "DAGSTER_PG_PASSWORD": "not-a-real-password", "DAGSTER_PG_DB": "dagster_prod"}


def _by_key(limits: list[dict]) -> dict[str, dict]:
    return {limit["key"]: limit for limit in limits}


@pytest.fixture
def prod_config(monkeypatch) -> dict:
    for name, value in PG_ENV.items():
        monkeypatch.setenv(name, value)
    config, instance_class = dagster_instance_config(str(DEPLOY))
    assert instance_class is None
    return config


# --- deploy/dagster.yaml, offline ------------------------------------------------------------------


def test_every_configured_class_accepts_its_config(prod_config, tmp_path):
    """The top-level schema only checks `module`/`class`/`config` shapes: each class's own schema
    (Postgres storage, queued coordinator, launcher) is checked here as the instance would."""
    ref = InstanceRef.from_dir(str(tmp_path), config_dir=str(DEPLOY))
    assert ref.storage_data.module_name == "dagster_postgres" and ref.storage_data.class_name == "DagsterPostgresStorage"
    resolved = {}
    for data in (ref.storage_data, ref.run_coordinator_data, ref.run_launcher_data):
        klass = getattr(importlib.import_module(data.module_name), data.class_name)
        result = process_config(klass.config_type(), yaml.safe_load(data.config_yaml) or {})
        assert result.success, (data.class_name, [e.message for e in result.errors])
        resolved[data.class_name] = result.value
    # Every connection setting comes from the environment: nothing secret is in the file.
    assert resolved["DagsterPostgresStorage"]["postgres_db"] == {
        "hostname": "db.internal", "port": 6543, "username": "dagster", "password": "not-a-real-password",
        "db_name": "dagster_prod", "params": {}, "scheme": "postgresql+psycopg2"}
    assert "not-a-real-password" not in (DEPLOY / "dagster.yaml").read_text()
    assert ref.run_coordinator_data.class_name == "QueuedRunCoordinator"


def test_storage_run_queue_retries_and_telemetry_are_as_documented(prod_config):
    assert set(prod_config["storage"]) == {"postgres"}
    connection = dict(prod_config["storage"]["postgres"]["postgres_db"])
    assert connection.pop("scheme") == "postgresql+psycopg2"  # the installed driver, whatever SQLAlchemy's default
    assert all(set(value) == {"env"} for value in connection.values())
    assert prod_config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert prod_config["concurrency"]["pools"]["default_limit"] == 1
    assert prod_config["run_retries"] == {"enabled": True, "max_retries": 2, "retry_on_asset_or_op_failure": False}
    assert prod_config["telemetry"] == {"enabled": False}


def test_the_workspace_loads_the_project_code_location_from_one_code_server():
    (entry,) = yaml.safe_load((DEPLOY / "workspace.yaml").read_text())["load_from"]
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["dagster"]
    assert entry["grpc_server"]["location_name"] == pyproject["code_location_name"]
    assert f"-m {pyproject['module_name']} -h 127.0.0.1 -p {entry['grpc_server']['port']}" in (
        DEPLOY / "README.md").read_text()


def test_one_run_limit_for_every_service_the_code_tags_runs_with(prod_config):
    limits = prod_config["concurrency"]["runs"]["tag_concurrency_limits"]
    assert _by_key(limits) == _by_key(tag_concurrency_limits(1))
    assert len(limits) == len(SERVICES)


def test_the_limits_hold_back_a_second_run_on_the_same_service_only(prod_config):
    """The run queue's own counter, fed the production limits and the tags our code gives runs."""
    limits = prod_config["concurrency"]["runs"]["tag_concurrency_limits"]
    by_name = {key.to_user_string(): key for key in asset_services(defs)}
    graph = defs.resolve_asset_graph()

    def run_of(*names: str) -> DagsterRun:
        tags = service_run_tags(graph.get(by_name[name]).assets_def for name in names)
        return DagsterRun(job_name="__ASSET_JOB", tags=tags)

    counter = TagConcurrencyLimitsCounter(limits, [run_of("plytix_product_changes")])
    assert counter.is_blocked(run_of("plytix_categories"))
    assert counter.is_blocked(run_of("plytix_image_sync"))  # Plytix and PhotoShelter: Plytix is busy
    assert not counter.is_blocked(run_of("photoshelter_image_changes"))
    assert not counter.is_blocked(run_of("catalog_notifications"))
    assert not counter.is_blocked(run_of("product_images"))  # warehouse only: the pool serialises it


# --- which runs carry which tags -------------------------------------------------------------------


def test_services_are_read_from_the_resources_each_asset_and_op_needs():
    services = {key.to_user_string(): set(found) for key, found in asset_services(defs).items()}
    assert services["plytix_product_changes"] == {"plytix"}
    assert services["photoshelter_image_changes"] == {"photoshelter"}
    assert services["plytix_image_sync"] == {"plytix", "photoshelter"}
    assert services["catalog_notifications"] == {"opentext"}
    assert services["planner_tasks"] == {"planner"}
    assert services["product_images"] == set()
    # The Planner completion job reads the task's plan and moves the product in Plytix.
    assert services_of(advance_stage_job) == {"planner", "plytix"}
    assert service_run_tags([advance_stage_job]) == {"catalog-ops/service.planner": "true",
                                                     "catalog-ops/service.plytix": "true"}


def test_an_asset_job_built_with_the_tags_gives_them_to_its_runs():
    job = prod_location.defs.resolve_job_def(prod_location.plytix_categories_job.name)
    assert job.tags == job.run_tags == {"catalog-ops/service.plytix": "true"}


# --- deploy/helm/values.yaml, offline --------------------------------------------------------------

# Keys of the chart's values (helm/dagster/schema in the Dagster repository, chart 1.13): the
# sections we use forbid unknown keys, so a typo would make `helm install` fail.
CHART_TOP_LEVEL = {"dagsterWebserver", "dagster-user-deployments", "postgresql", "generatePostgresqlPasswordSecret",
                   "generateCeleryConfigSecret", "rabbitmq", "redis", "flower", "ingress", "imagePullSecrets",
                   "computeLogManager", "scheduler", "runLauncher", "pythonLogs", "dagsterDaemon", "busybox",
                   "migrate", "telemetry", "serviceAccount", "global", "retention", "additionalInstanceConfig",
                   "concurrency"}
USER_DEPLOYMENT_KEYS = {"name", "image", "dagsterApiGrpcArgs", "codeServerArgs", "includeConfigInLaunchedRuns",
                        "deploymentNamespace", "port", "replicaCount", "env", "envConfigMaps", "envSecrets",
                        "annotations", "nodeSelector", "affinity", "tolerations", "podSecurityContext",
                        "securityContext", "resources", "livenessProbe", "readinessProbe", "startupProbe", "labels",
                        "volumeMounts", "volumes", "schedulerName", "initContainers", "sidecarContainers",
                        "deploymentStrategy", "service"}
K8S_RUN_LAUNCHER_KEYS = {"image", "imagePullPolicy", "jobNamespace", "loadInclusterConfig", "kubeconfigFile",
                         "envConfigMaps", "envSecrets", "envVars", "volumeMounts", "volumes", "labels",
                         "failPodOnRunFailure", "resources", "schedulerName", "securityContext", "runK8sConfig"}
K8S_RUN_LAUNCHER_REQUIRED = {"imagePullPolicy", "loadInclusterConfig", "envConfigMaps", "envSecrets", "envVars",
                             "volumeMounts", "volumes"}
POSTGRESQL_KEYS = {"image", "enabled", "postgresqlHost", "postgresqlUsername", "postgresqlPassword",
                   "postgresqlDatabase", "postgresqlParams", "postgresqlScheme", "service"}
QUEUED_COORDINATOR_KEYS = {"maxConcurrentRuns", "tagConcurrencyLimits", "dequeueIntervalSeconds",
                           "dequeueNumWorkers", "dequeueUseThreads", "blockOpConcurrencyLimitedRuns"}
RUN_RETRIES_KEYS = {"enabled", "maxRetries", "retryOnAssetOrOpFailure"}
CONCURRENCY_KEYS = {"enabled": None, "pools": {"defaultLimit", "granularity", "opGranularityRunBuffer"},
                    "runs": {"maxConcurrentRuns", "tagConcurrencyLimits"}}
PULL_POLICIES = {"Always", "IfNotPresent", "Never"}


@pytest.fixture(scope="module")
def helm_values() -> dict:
    return yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())


def test_helm_values_use_only_keys_the_chart_knows(helm_values):
    assert set(helm_values) <= CHART_TOP_LEVEL
    (deployment,) = helm_values["dagster-user-deployments"]["deployments"]
    assert set(deployment) <= USER_DEPLOYMENT_KEYS
    assert {"name", "image", "port"} <= set(deployment)
    assert set(deployment["image"]) == {"repository", "tag", "pullPolicy"}
    assert deployment["image"]["pullPolicy"] in PULL_POLICIES and deployment["image"]["tag"] != "latest"
    assert all(set(secret) == {"name"} for secret in deployment["envSecrets"] + deployment["envConfigMaps"])
    assert set(helm_values["postgresql"]) <= POSTGRESQL_KEYS
    daemon = helm_values["dagsterDaemon"]
    assert set(daemon["runCoordinator"]["config"]["queuedRunCoordinator"]) <= QUEUED_COORDINATOR_KEYS
    assert set(daemon["runRetries"]) <= RUN_RETRIES_KEYS
    concurrency = helm_values["concurrency"]
    assert set(concurrency) <= set(CONCURRENCY_KEYS)
    for section in ("pools", "runs"):
        assert set(concurrency[section]) <= CONCURRENCY_KEYS[section]
    for limit in concurrency["runs"]["tagConcurrencyLimits"]:
        assert set(limit) <= {"key", "value", "limit"} and isinstance(limit["limit"], int)


def test_helm_path_runs_every_run_in_its_own_pod_from_the_user_code_image(helm_values):
    launcher = helm_values["runLauncher"]
    assert launcher["type"] == "K8sRunLauncher"
    config = launcher["config"]["k8sRunLauncher"]
    assert K8S_RUN_LAUNCHER_REQUIRED <= set(config) <= K8S_RUN_LAUNCHER_KEYS
    assert config["imagePullPolicy"] in PULL_POLICIES
    (deployment,) = helm_values["dagster-user-deployments"]["deployments"]
    module = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["dagster"]["module_name"]
    assert deployment["dagsterApiGrpcArgs"] == ["-m", module]
    assert helm_values["dagster-user-deployments"]["enabled"] is True
    assert helm_values["postgresql"]["enabled"] is False and helm_values["postgresql"]["postgresqlHost"]


def test_helm_instance_settings_match_deploy_dagster_yaml(helm_values, prod_config, tmp_path):
    """Render the instance settings the chart derives from these values (as its templates do) and
    validate them with Dagster: the Kubernetes instance behaves like the single-machine one."""
    daemon, concurrency = helm_values["dagsterDaemon"], helm_values["concurrency"]
    qrc = daemon["runCoordinator"]["config"]["queuedRunCoordinator"]
    # The chart fails when limits are set both on the coordinator and under `concurrency`.
    assert not (qrc.get("tagConcurrencyLimits") and concurrency["runs"].get("tagConcurrencyLimits"))
    assert not (qrc.get("maxConcurrentRuns") is not None and concurrency["runs"].get("maxConcurrentRuns") is not None)
    assert daemon["runCoordinator"]["enabled"] and daemon["runCoordinator"]["type"] == "QueuedRunCoordinator"
    assert concurrency["enabled"] is True
    rendered = {
        "run_coordinator": {"module": "dagster.core.run_coordinator", "class": "QueuedRunCoordinator"},
        "concurrency": {
            "pools": {"default_limit": concurrency["pools"]["defaultLimit"]},
            "runs": {"max_concurrent_runs": concurrency["runs"]["maxConcurrentRuns"],
                     "tag_concurrency_limits": concurrency["runs"]["tagConcurrencyLimits"]}},
        "run_retries": {"enabled": daemon["runRetries"]["enabled"], "max_retries": daemon["runRetries"]["maxRetries"],
                        "retry_on_asset_or_op_failure": daemon["runRetries"]["retryOnAssetOrOpFailure"]},
        "telemetry": {"enabled": helm_values["telemetry"]["enabled"]},
    }
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(rendered))
    helm_config, _ = dagster_instance_config(str(tmp_path))
    for section in ("concurrency", "run_retries", "telemetry"):
        assert helm_config[section] == prod_config[section], section


# --- a real PostgreSQL server, daemon, code server and runs ------------------------------------------


def _stop(proc: subprocess.Popen, sig: int = signal.SIGINT) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _wait_for_port(port: int, proc: subprocess.Popen, log: Path, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"code server exited: {log.read_text()[-2000:]}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.3)
    raise RuntimeError(f"code server not listening on {port} after {seconds:.0f} s: {log.read_text()[-2000:]}")


def _timeline(instance: dg.DagsterInstance, records) -> str:
    lines = []
    for record in records:
        for entry in instance.all_logs(record.dagster_run.run_id):
            if entry.dagster_event:
                lines.append((entry.timestamp, record.dagster_run.run_id[:8], entry.dagster_event_type.value))
    return "\n".join(f"{t:.2f} {run} {kind}" for t, run, kind in sorted(lines))


@pytest.mark.postgres
def test_queued_runs_materialise_on_a_postgres_instance_one_per_service(postgres_server, tmp_path, monkeypatch):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(DEPLOY / "dagster.yaml", home / "dagster.yaml")  # the production file, unchanged
    sandbox, sandbox_url = start_sandbox(products=200)
    env = {name: value for name, value in os.environ.items() if not name.startswith(SERVICE_ENV_PREFIXES)}
    env.update(postgres_server.env(), DAGSTER_HOME=str(home), SANDBOX_URL=sandbox_url,
               CATALOG_OPS_WAREHOUSE_PATH=str(tmp_path / "warehouse.duckdb"), PYTHONPATH=str(ROOT))
    bin_dir = Path(sys.executable).parent
    grpc_port = free_port()
    # deploy/workspace.yaml, on a free port.
    workspace = tmp_path / "workspace.yaml"
    entry = yaml.safe_load((DEPLOY / "workspace.yaml").read_text())
    entry["load_from"][0]["grpc_server"]["port"] = grpc_port
    workspace.write_text(yaml.safe_dump(entry))
    server_log, daemon_log = tmp_path / "code-server.log", tmp_path / "daemon.log"
    procs: list[subprocess.Popen] = []
    try:
        with server_log.open("w") as log:
            procs.append(subprocess.Popen(
                [str(bin_dir / "dagster"), "code-server", "start", "-m", "tests.deploy.prod_location", "-h",
                 "127.0.0.1", "-p", str(grpc_port)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True))
        _wait_for_port(grpc_port, procs[0], server_log)
        # Two runs that both call Plytix, queued before the daemon starts: its first dequeue sees both.
        for _ in range(2):
            launched = subprocess.run([str(bin_dir / "dagster"), "job", "launch", "-w", str(workspace), "-j",
                                       "plytix_categories_job"], cwd=ROOT, env=env, capture_output=True, text=True,
                                      timeout=120)
            assert launched.returncode == 0, launched.stderr[-2000:]

        for name, value in postgres_server.env().items():
            monkeypatch.setenv(name, value)
        with dg.DagsterInstance.from_config(str(home)) as instance:
            runs = instance.get_runs()
            assert [run.status for run in runs] == [dg.DagsterRunStatus.QUEUED] * 2
            with daemon_log.open("w") as log:
                procs.append(subprocess.Popen([str(bin_dir / "dagster-daemon"), "run", "-w", str(workspace)],
                                              cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                              start_new_session=True))
            deadline = time.monotonic() + 150
            while time.monotonic() < deadline:
                records = instance.get_run_records(dg.RunsFilter(run_ids=[run.run_id for run in runs]))
                if all(record.dagster_run.is_finished for record in records):
                    break
                time.sleep(1)
            assert all(record.dagster_run.status == dg.DagsterRunStatus.SUCCESS for record in records), \
                daemon_log.read_text()[-3000:]
            first, second = sorted(records, key=lambda record: record.start_time)
            # The tag limit held the second Plytix run in the queue until the first had finished.
            assert second.start_time >= first.end_time, _timeline(instance, [first, second])
            latest = instance.get_latest_materialization_event(dg.AssetKey("plytix_categories"))
            assert latest.run_id == second.dagster_run.run_id
            assert latest.asset_materialization.metadata["dagster/row_count"].value > 0  # real categories
            assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
            assert instance.run_retries_max_retries == 2

        run_ids = tuple(record.dagster_run.run_id for record in records)
        con = postgres_server.connect()
        try:
            cur = con.cursor()
            cur.execute("SELECT run_id, status FROM runs WHERE run_id IN %s", (run_ids,))
            assert dict(cur.fetchall()) == dict.fromkeys(run_ids, "SUCCESS")
            cur.execute("SELECT run_id, value FROM run_tags WHERE key = 'catalog-ops/service.plytix' AND run_id IN %s",
                        (run_ids,))
            assert dict(cur.fetchall()) == dict.fromkeys(run_ids, "true")
            cur.execute("SELECT run_id, asset_key FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'")
            assert sorted(cur.fetchall()) == sorted((run_id, '["plytix_categories"]') for run_id in run_ids)
        finally:
            con.close()
    finally:
        for proc in reversed(procs):
            _stop(proc)
        stop_sandbox(sandbox)
