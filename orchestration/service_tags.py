"""Which outside services a run talks to, as the run tags the production run queue limits.

`deploy/dagster.yaml` lets at most one run at a time carry `catalog-ops/service.<name>`, so two
runs never share (and exceed) one API's rate limit. The queue sees *run* tags only: asset tags and
op tags never reach it. So whatever launches a run gives it `service_run_tags(...)` of what it will
execute: a job through `tags=` (not `run_tags=`: `dagster job launch` and the GraphQL/UI launch copy
a job's `tags` onto its runs, schedules and sensors use `run_tags`, which default to `tags`), a
sensor's `RunRequest` or a schedule targeting an asset selection through its own `tags=`.

A run talking to Plytix and PhotoShelter carries both keys: one key per service, not one
`service` key with one value, because one run often uses several services.

The services are read from the resources each asset or op requires (the resource keys are the
service names), so a new asset that takes `plytix: PlytixResource` is covered without a list to
keep up to date.
"""

from __future__ import annotations

from collections.abc import Iterable

import dagster as dg

SERVICES = ("plytix", "photoshelter", "shopify", "threekit", "planner", "opentext")
TAG_PREFIX = "catalog-ops/service."


def service_tag_key(service: str) -> str:
    if service not in SERVICES:
        raise ValueError(f"unknown service {service!r}; known: {', '.join(SERVICES)}")
    return TAG_PREFIX + service


def services_of(definition: dg.AssetsDefinition | dg.OpDefinition | dg.JobDefinition) -> frozenset[str]:
    """The outside services an asset, op or op job calls (its required resources that are services)."""
    if isinstance(definition, dg.JobDefinition):
        keys: set[str] = set()
        for op_def in definition.graph.iterate_op_defs():
            keys |= op_def.required_resource_keys
    else:
        keys = set(definition.required_resource_keys)
    return frozenset(keys) & frozenset(SERVICES)


def service_run_tags(definitions: Iterable[dg.AssetsDefinition | dg.OpDefinition | dg.JobDefinition]
                     ) -> dict[str, str]:
    """Run tags for a run that executes these definitions: one `catalog-ops/service.<name>` per service."""
    services: set[str] = set()
    for definition in definitions:
        services |= services_of(definition)
    return {service_tag_key(service): "true" for service in sorted(services)}


def asset_services(defs: dg.Definitions) -> dict[dg.AssetKey, frozenset[str]]:
    """Every materialisable asset of the code location and the services it calls."""
    graph = defs.resolve_asset_graph()
    return {key: services_of(graph.get(key).assets_def) for key in graph.materializable_asset_keys}


def tag_concurrency_limits(limit: int = 1) -> list[dict]:
    """The run queue limits `deploy/dagster.yaml` must hold, one per service."""
    return [{"key": service_tag_key(service), "limit": limit} for service in SERVICES]
