"""World extensions: each service beyond the catalog adds its records on the same seed.

An extension is `build(con, gen)`, called once the catalog (products, images) is in `con`, so it can
tie its records to SKUs and image ids with SQL. It draws only from `gen.rng(kind, index)` with its
own `kind` numbers and writes its planted defects to `ground_truth`, like the catalog does.
"""

from __future__ import annotations

from collections.abc import Callable


def extensions() -> list[Callable]:
    # Imported here, not at module level: the extensions use helpers from `sandbox.world`.
    from sandbox.worlds import planner, shopify, threekit

    return [shopify.build, threekit.build, planner.build]
