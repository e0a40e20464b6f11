"""The code location the production-instance test serves over gRPC: a real project asset with the
project's resources, and a job that carries the service run tags the run queue limits.

Only this asset and job, not the whole code location: the daemon would otherwise start the
project's sensors against the test's sandbox and launch runs of its own.
"""

from __future__ import annotations

import dagster as dg

from assets.extraction import plytix_categories
from orchestration.resource_defs import build_resources
from orchestration.service_tags import service_run_tags

# `tags=`, not `run_tags=`: `dagster job launch` and the GraphQL launch (the UI's) copy a job's `tags`
# onto its runs, while schedules and sensors use `run_tags`, which default to `tags`.
# In-process: one step, so no step subprocess (and its imports) per run; the test is about the instance.
plytix_categories_job = dg.define_asset_job(
    "plytix_categories_job", selection=[plytix_categories], tags=service_run_tags([plytix_categories]),
    executor_def=dg.in_process_executor)

defs = dg.Definitions(assets=[plytix_categories], jobs=[plytix_categories_job], resources=build_resources())
