"""The extraction tables for N products, straight from the sandbox's world generator.

Extracting 100k products over HTTP takes ~17 minutes; the transforms only need the tables the
extraction writes. So the world is generated into DuckDB (the same generator, seed and anchor the
sandbox serves) and mapped with SQL to the layouts in `assets/warehouse.py`, as the extraction's
row builders would write them (`plytix_rows`, `photoshelter_rows`, `plytix_categories`).
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd

from assets.warehouse import ensure_tables
from sandbox.options import SandboxOptions
from sandbox.world import SCHEMA, WorldGenerator

# The tests' anchor. In the SQL below: changes before 2026-08-01 (CATALOG_OPS_PARTITIONS_START's default)
# join the first partition, and every row is "extracted" at the anchor.
WORLD_NOW = "2026-11-22T12:00:00Z"

PRODUCTS_SQL = """
INSERT INTO plytix_product_changes BY NAME
SELECT greatest(CAST(p.modified AS DATE), DATE '2026-08-01') AS partition_date, p.id, p.sku, p.label, p.status,
       CAST(p.modified AS TIMESTAMPTZ) AS modified, p.parent_id, p.num_variations, p.categories, p.thumbnail,
       p.attributes, TIMESTAMPTZ '2026-11-22 12:00:00+00' AS extracted_at
FROM world.products p
"""

IMAGES_SQL = """
INSERT INTO photoshelter_image_changes BY NAME
SELECT greatest(CAST(i.updated_at AS DATE), DATE '2026-08-01') AS partition_date, i.id AS image_id, i.gallery_id,
       i.file_name, CAST(i.updated_at AS TIMESTAMPTZ) AS updated_at,
       list_filter(list_transform(string_split(coalesce(i.keyword, ''), ','), lambda k: trim(k)), lambda k: k <> '')
           AS keywords,
       NULL AS link, i.sku, i.style_code, i.product_family, i.approval AS approval_status, i.usage_ecommerce,
       i.usage_social, i.usage_print, i.usage_marketplaces, i.licensed_market,
       CAST(i.license_expiration AS DATE) AS license_expiration_date, TIMESTAMPTZ '2026-11-22 12:00:00+00' AS extracted_at
FROM world.images i
"""

CATEGORIES_SQL = """
INSERT INTO plytix_categories BY NAME
SELECT id, name, path, TIMESTAMPTZ '2026-11-22 12:00:00+00' AS refreshed_at FROM world.categories
"""


def generate_world(path: Path, products: int) -> None:
    """Categories, products, images and orphans as the sandbox builds them (its other services' worlds left out)."""
    generator = WorldGenerator(SandboxOptions(products=products, seed=7, world_now=WORLD_NOW))
    con = duckdb.connect(str(path))
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute(SCHEMA)
        generator._build_categories(con)
        generator._build_collections(con)
        for chunk in generator._chunks():
            for table, rows in (("products", chunk.products), ("images", chunk.images),
                                ("galleries", chunk.galleries)):
                if rows:
                    con.register("chunk_frame", pd.DataFrame(rows))
                    con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM chunk_frame")  # noqa: S608 (fixed names)
                    con.unregister("chunk_frame")
        generator._build_orphans(con)
        con.execute("CHECKPOINT")
    finally:
        con.close()


def extraction_tables(folder: Path, products: int) -> Path:
    """A warehouse file holding only the three extraction tables for `products` products (cached per size)."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"extraction-{products}.duckdb"
    if target.exists():
        return target
    world = folder / f"world-{products}.duckdb"
    world.unlink(missing_ok=True)
    generate_world(world, products)
    partial = target.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    con = duckdb.connect(str(partial))
    try:
        con.execute("SET TimeZone = 'UTC'")
        ensure_tables(con)
        con.execute(f"ATTACH '{world}' AS world (READ_ONLY)")  # noqa: S608 (our own path)
        for sql in (PRODUCTS_SQL, IMAGES_SQL, CATEGORIES_SQL):
            con.execute(sql)
        con.execute("DETACH world")
        con.execute("CHECKPOINT")
    finally:
        con.close()
    world.unlink()
    partial.rename(target)
    return target
