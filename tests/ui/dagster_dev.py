"""Run the project's `dagster dev` for a test, and talk to it the way its users' tools do.

`dagster dev` ignores SIGTERM, so it is stopped with SIGINT to its process group (it then shuts its
webserver, daemon and code server down) and killed only if it does not exit in time.

`DagsterGraphQLClient` launches and watches runs through its public methods; it has no method for
backfills, so those go through the client's own transport (`_execute`) with the webserver's
`launchPartitionBackfill` mutation, the one the UI's "Launch backfill" button sends.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import httpx
from dagster_graphql import DagsterGraphQLClient

from orchestration.demo import DAGSTER_YAML
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
LOCATION = "catalog_ops"
REPOSITORY = "__repository__"
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}

LOCATION_STATUS = """
query { workspaceOrError { ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""
PARTITION_KEYS = """
query ($key: AssetKeyInput!) { assetNodes(assetKeys: [$key]) { partitionKeys } }
"""
LAUNCH_BACKFILL = """
mutation ($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
  __typename ... on LaunchBackfillSuccess { backfillId } ... on Error { message } } }
"""
BACKFILL = """
query ($id: String!) { partitionBackfillOrError(backfillId: $id) { __typename
  ... on PartitionBackfill { status numPartitions error { message }
    runs { runId status tags { key value } } }
  ... on Error { message } } }
"""
MATERIALIZED_PARTITIONS = """
query ($keys: [AssetKeyInput!]) { assetNodes(assetKeys: $keys) { assetKey { path }
  assetPartitionStatuses { ... on TimePartitionStatuses { ranges { status startKey endKey } } } } }
"""


@dataclass
class DagsterDev:
    proc: subprocess.Popen
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self) -> DagsterGraphQLClient:
        return DagsterGraphQLClient("127.0.0.1", port_number=self.port, timeout=60)

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


def start_dagster_dev(home: Path, env: dict[str, str], timeout_s: float = 240) -> DagsterDev:
    """`dagster dev -w workspace.yaml` on a free port with a fresh instance in `home` (configured as the
    demo's); returns once the code location has loaded, or raises with the end of its log."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(DAGSTER_YAML)
    port = free_port()
    log_path = home / "dagster-dev.log"
    env = {**env, "DAGSTER_HOME": str(home), "DAGSTER_UI_URL": f"http://127.0.0.1:{port}"}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "dagster"), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1",
             "-p", str(port)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=_default_sigint)
    dev = DagsterDev(proc, port, log_path)
    try:
        _wait_loaded(dev, timeout_s)
    except BaseException:
        stop_dagster_dev(dev)
        raise
    return dev


def _default_sigint() -> None:
    # Started from a shell's background job, SIGINT arrives ignored and children inherit that; then
    # `dagster dev` could not be stopped the way it wants. Restore the default.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _wait_loaded(dev: DagsterDev, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if dev.proc.poll() is not None:
            raise RuntimeError(f"dagster dev exited with code {dev.proc.returncode}:\n{dev.log_tail()}")
        try:
            response = httpx.post(f"{dev.url}/graphql", json={"query": LOCATION_STATUS}, timeout=5)
            entries = response.json()["data"]["workspaceOrError"]["locationEntries"]
        except (httpx.TransportError, ValueError, KeyError, TypeError):
            entries = []
        for entry in entries:
            if entry["name"] == LOCATION and entry["loadStatus"] == "LOADED":
                located = entry["locationOrLoadError"] or {}
                if located.get("__typename") == "PythonError":
                    raise RuntimeError(f"code location {LOCATION} failed to load: {located['message']}")
                return
        time.sleep(0.5)
    raise RuntimeError(f"code location {LOCATION} did not load within {timeout_s:.0f} s:\n{dev.log_tail()}")


def stop_dagster_dev(dev: DagsterDev, grace_s: float = 30) -> None:
    if dev.proc.poll() is not None:
        return
    try:
        os.killpg(dev.proc.pid, signal.SIGINT)
        dev.proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(dev.proc.pid, signal.SIGKILL)
        dev.proc.wait()
    except ProcessLookupError:
        pass


def partition_keys(client: DagsterGraphQLClient, asset: str) -> list[str]:
    """The asset's partition keys as the running code location defines them (oldest first)."""
    nodes = client._execute(PARTITION_KEYS, {"key": {"path": [asset]}})["assetNodes"]
    return nodes[0]["partitionKeys"]


def wait_for_run(client: DagsterGraphQLClient, run_id: str, timeout_s: float = 300) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = client.get_run_status(run_id).value
        if status in FINISHED:
            return status
        time.sleep(1)
    raise TimeoutError(f"run {run_id} did not finish within {timeout_s:.0f} s")


def launch_backfill(client: DagsterGraphQLClient, assets: list[str], partitions: list[str]) -> str:
    result = client._execute(LAUNCH_BACKFILL, {"params": {
        "assetSelection": [{"path": [asset]} for asset in assets], "partitionNames": partitions,
        "title": "catalog backfill from the GraphQL API"}})["launchPartitionBackfill"]
    if result["__typename"] != "LaunchBackfillSuccess":
        raise RuntimeError(f"backfill not launched: {result}")
    return result["backfillId"]


def wait_for_backfill(client: DagsterGraphQLClient, backfill_id: str, timeout_s: float = 300) -> dict:
    """The backfill once the daemon has finished with it (no longer requested or winding down)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        backfill = client._execute(BACKFILL, {"id": backfill_id})["partitionBackfillOrError"]
        if backfill["__typename"] != "PartitionBackfill":
            raise RuntimeError(f"backfill {backfill_id}: {backfill}")
        if backfill["status"] not in {"REQUESTED", "CANCELING", "FAILING"}:
            return backfill
        time.sleep(1)
    raise TimeoutError(f"backfill {backfill_id} did not finish within {timeout_s:.0f} s")


def materialized_partitions(client: DagsterGraphQLClient, assets: list[str], keys: list[str]) -> dict[str, set[str]]:
    """Per asset, the partitions Dagster's asset status says are materialised (ranges expanded over `keys`)."""
    nodes = client._execute(MATERIALIZED_PARTITIONS, {"keys": [{"path": [a]} for a in assets]})["assetNodes"]
    found = {}
    for node in nodes:
        days = set()
        for span in node["assetPartitionStatuses"]["ranges"]:
            if span["status"] == "MATERIALIZED":
                days |= set(keys[keys.index(span["startKey"]):keys.index(span["endKey"]) + 1])
        found[node["assetKey"]["path"][0]] = days
    return found


def query_warehouse(path: Path, sql: str, params: list | None = None, timeout_s: float = 60) -> list[tuple]:
    """Read the DuckDB warehouse read-only, waiting while a run (DuckDB's single writer) holds its lock."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with duckdb.connect(str(path), read_only=True) as con:
                return con.execute(sql, params or []).fetchall()
        except duckdb.IOException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
