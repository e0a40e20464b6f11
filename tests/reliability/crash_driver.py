"""A victim for the crash tests: materialises selections of the project's real assets, one Dagster run
each, with a real instance on DAGSTER_HOME, a real DuckDB file and the sandbox at the given URL.

    python -m tests.reliability.crash_driver HOME WAREHOUSE SANDBOX_URL STEPS_JSON

STEPS_JSON is a list of {"select": [asset, ...], "partition": "YYYY-MM-DD"} or {..., "range": [first, last]}.
The test kills this process (SIGKILL) at the moment it studies; nothing in here knows about that.
"""

from __future__ import annotations

import json
import sys

import dagster as dg
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from orchestration.definitions import action_assets, catalog_assets
from tests.assets.test_actions import action_resources


def run_steps(home: str, warehouse: str, url: str, steps: list[dict]) -> bool:
    resources = action_resources(url, warehouse)
    with dg.DagsterInstance.from_config(home) as instance:
        for step in steps:
            if "range" in step:
                first, last = step["range"]
                kwargs = {"tags": {ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last}}
            else:
                kwargs = {"partition_key": step["partition"]}
            result = dg.materialize([*catalog_assets, *action_assets], selection=step["select"], resources=resources,
                                    instance=instance, raise_on_error=False, **kwargs)
            print(json.dumps({"run_id": result.run_id, "success": result.success}), flush=True)
            if not result.success:
                return False
    return True


if __name__ == "__main__":
    home, warehouse, url, steps = sys.argv[1:5]
    sys.exit(0 if run_steps(home, warehouse, url, json.loads(steps)) else 1)
