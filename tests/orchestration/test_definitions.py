"""The code location as Dagster loads it: it validates, and it holds what the UI must show."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from orchestration.definitions import defs

ROOT = Path(__file__).resolve().parents[2]


def test_dagster_definitions_validate_passes():
    result = subprocess.run([str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-w",
                             "workspace.yaml"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "DAGSTER_HOME": ""})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "passed validation" in result.stderr + result.stdout


def test_the_three_public_assets_and_their_groups():
    graph = defs.resolve_asset_graph()
    groups = {key.to_user_string(): graph.get(key).group_name for key in graph.get_all_asset_keys()}
    assert {k: groups[k] for k in ("catalog_snapshot", "product_images", "catalog_quality_report")} == {
        "catalog_snapshot": "catalog", "product_images": "images", "catalog_quality_report": "quality"}


def test_catalog_assets_are_daily_partitioned_and_single_run_backfillable():
    graph = defs.resolve_asset_graph()
    for name in ("plytix_product_changes", "photoshelter_image_changes", "catalog_snapshot", "product_images",
                 "catalog_quality_report"):
        node = graph.get(dg.AssetKey(name))
        assert isinstance(node.partitions_def, dg.DailyPartitionsDefinition), name
        assert node.backfill_policy == dg.BackfillPolicy.single_run(), name


def test_blocking_checks_are_the_ones_that_make_downstream_wrong():
    specs = {spec.name: spec.blocking for a in defs.resolve_asset_graph().assets_defs for spec in a.check_specs}
    # A quarantine share above the limit alerts (ERROR) but blocks nothing: the good records are fine.
    assert specs == {"sku_unique": False, "matches_source_total": False, "join_does_not_fan_out": True,
                     "not_empty_when_snapshot_is_not": True, "quarantine_share_below_limit": False}


def test_secrets_set_in_the_environment_reach_dagster_as_env_vars(monkeypatch):
    monkeypatch.setenv("PLYTIX_API_PASSWORD", "s3cret-from-env")
    from orchestration.resource_defs import build_resources

    plytix = build_resources()["plytix"]
    assert isinstance(plytix.api_password, dg.EnvVar) and plytix.api_password.env_var_name == "PLYTIX_API_PASSWORD"
    assert plytix.api_key == "sandbox-plytix-key"  # unset: the sandbox's public default


def test_every_warehouse_writer_is_in_the_serialising_pool():
    """DuckDB has one writer: runs in parallel (a backfill) must queue on the pool, not fail on the lock."""
    assets = defs.resolve_asset_graph().assets_defs
    writers = [a for a in assets if "warehouse" in a.required_resource_keys]
    assert len(writers) == len(assets) == 21  # every asset keeps its state in the warehouse
    assert {node.pool for a in writers for node in [a.node_def]} == {"duckdb_warehouse"}


def test_warehouse_connections_open_with_the_memory_limit_from_the_environment(tmp_path, monkeypatch):
    from orchestration.resource_defs import build_resources

    monkeypatch.setenv("CATALOG_OPS_WAREHOUSE_PATH", str(tmp_path / "warehouse.duckdb"))

    def limit() -> str:
        with build_resources()["warehouse"].get_connection() as con:
            return con.execute("SELECT current_setting('memory_limit')").fetchone()[0]

    monkeypatch.setenv("CATALOG_OPS_WAREHOUSE_MEMORY_LIMIT", "300MB")
    capped = limit()
    monkeypatch.delenv("CATALOG_OPS_WAREHOUSE_MEMORY_LIMIT")
    default = limit()
    monkeypatch.setenv("CATALOG_OPS_WAREHOUSE_MEMORY_LIMIT", "")
    duckdb_own = limit()
    assert capped == "286.1 MiB" and default == "1.1 GiB"  # DuckDB reports the byte count in binary units
    assert duckdb_own not in (capped, default)  # 80 % of this machine's memory
