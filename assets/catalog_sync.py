"""Plytix and PhotoShelter in step: approved images and usage rights into Plytix, product attributes
into PhotoShelter as keywords. Planned in SQL from the day's changes, written only where they differ.

Cost follows the change, not the catalog: image sync looks only at products whose images changed on
D, keyword sync only at images whose product or image changed on D. Each write is read-before-write
on the service (the clients diff against the record as it stands), so a re-run writes nothing.
"""

from __future__ import annotations

from datetime import date

import duckdb

# What Plytix should say about each product whose images changed on D, against what it says.
# Products touched by a duplicate SKU are left alone: their images cannot be told apart until the
# duplicate-SKU finding is fixed.
IMAGE_SYNC_SQL = """
CREATE OR REPLACE TEMP TABLE image_sync_plan AS
WITH candidates AS (
    SELECT DISTINCT pi.product_id FROM product_images pi
    JOIN photoshelter_image_changes c ON c.image_id = pi.image_id AND c.partition_date = $day
    WHERE pi.snapshot_date = $day
),
rows AS (
    SELECT pi.* FROM product_images pi JOIN candidates USING (product_id) WHERE pi.snapshot_date = $day
),
blocked AS (SELECT DISTINCT product_id FROM rows WHERE shared_by_duplicate_sku),
usable AS (SELECT * FROM rows WHERE usable AND product_id NOT IN (SELECT product_id FROM blocked)),
channel_counts AS (
    SELECT product_id, channel, count(*) AS n FROM usable, unnest(rights_valid_channels) AS t(channel) GROUP BY ALL
),
desired AS (
    SELECT u.product_id,
           max(u.image_id) FILTER (WHERE u.image_role = 'hero') AS hero,
           coalesce(list(u.image_id ORDER BY u.image_id) FILTER (WHERE u.image_role = 'alternate'), []) AS alternates,
           coalesce(min(u.licensed_market) FILTER (WHERE u.licensed_market <> 'Worldwide'), 'Worldwide') AS market,
           CAST(min(u.license_expiration_date) AS VARCHAR) AS expiry,
           count(*) AS n_usable
    FROM usable u GROUP BY u.product_id
),
desired_channels AS (
    SELECT d.product_id, coalesce(list(c.channel ORDER BY c.channel) FILTER (WHERE c.n = d.n_usable), []) AS channels
    FROM desired d LEFT JOIN channel_counts c USING (product_id) GROUP BY d.product_id
),
current AS (  -- media attributes are `{"id"}` refs: identity is checked against the product's assets on apply
    SELECT s.product_id, s.workflow_stage,
           json_extract_string(s.attributes, '$.hero_image.id') AS hero,
           coalesce(json_array_length(json_extract(s.attributes, '$.alternate_images')), 0) AS n_alternates,
           json_extract_string(s.attributes, '$.image_approval_status') AS approval,
           coalesce(list_sort(CAST(json_extract(s.attributes, '$.usage_rights_channels') AS VARCHAR[])), []) AS channels,
           json_extract_string(s.attributes, '$.usage_rights_market') AS market,
           json_extract_string(s.attributes, '$.license_expiration_date') AS expiry
    FROM catalog_snapshot s JOIN candidates USING (product_id)
    WHERE s.snapshot_date = $day AND list_contains($sync_stages, s.workflow_stage)
)
SELECT c.product_id, d.hero AS want_hero, d.alternates AS want_alternates, 'Approved' AS want_approval,
       dc.channels AS want_channels, d.market AS want_market, d.expiry AS want_expiry
FROM current c JOIN desired d USING (product_id) JOIN desired_channels dc USING (product_id)
WHERE c.hero IS NULL OR c.n_alternates <> len(d.alternates) OR c.approval IS DISTINCT FROM 'Approved'
   OR c.channels <> dc.channels OR c.market IS DISTINCT FROM d.market OR c.expiry IS DISTINCT FROM d.expiry
ORDER BY c.product_id
"""

# Keywords each image should carry from its product: SKU, name, category, color, size, launch status.
KEYWORD_SYNC_SQL = """
CREATE OR REPLACE TEMP TABLE keyword_sync_plan AS
WITH changed AS (
    SELECT product_id FROM catalog_snapshot s
    JOIN plytix_product_changes c ON c.id = s.product_id AND c.partition_date = $day WHERE s.snapshot_date = $day
    UNION
    SELECT pi.product_id FROM product_images pi
    JOIN photoshelter_image_changes c ON c.image_id = pi.image_id AND c.partition_date = $day
    WHERE pi.snapshot_date = $day
),
pairs AS (  -- SKU matches only: a style or family shot serves many products and takes none's keywords
    SELECT pi.image_id, s.sku, s.label, s.category_path, s.workflow_stage,
           json_extract_string(s.attributes, '$.color') AS color, json_extract_string(s.attributes, '$.size') AS size
    FROM product_images pi JOIN changed USING (product_id)
    JOIN catalog_snapshot s ON s.product_id = pi.product_id AND s.snapshot_date = $day
    WHERE pi.snapshot_date = $day AND pi.match_type = 'sku' AND NOT pi.shared_by_duplicate_sku
),
wanted AS (
    SELECT image_id, list_filter([trim(sku), label, category_path[-1], color, size, workflow_stage],
                                 lambda k: k IS NOT NULL AND k <> '') AS keywords
    FROM pairs
),
have AS (
    SELECT image_id, coalesce(keywords, []) AS keywords FROM photoshelter_image_changes
    WHERE partition_date <= $day AND image_id IN (SELECT image_id FROM wanted)
    QUALIFY row_number() OVER (PARTITION BY image_id ORDER BY updated_at DESC, extracted_at DESC) = 1
)
SELECT w.image_id, w.keywords,
       list_filter(w.keywords, lambda k: NOT list_contains(list_transform(h.keywords, lambda x: lower(x)), lower(k)))
           AS missing
FROM wanted w LEFT JOIN have h USING (image_id)
WHERE len(list_filter(w.keywords, lambda k: NOT list_contains(list_transform(coalesce(h.keywords, []),
          lambda x: lower(x)), lower(k)))) > 0
ORDER BY w.image_id
"""


def plan_image_sync(con: duckdb.DuckDBPyConnection, day: date, sync_stages: list[str]) -> list[dict]:
    con.execute(IMAGE_SYNC_SQL, {"day": day, "sync_stages": sync_stages})
    cursor = con.execute("SELECT * FROM image_sync_plan")
    columns = [c[0] for c in cursor.description]
    return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def plan_keyword_sync(con: duckdb.DuckDBPyConnection, day: date) -> list[tuple[str, list[str]]]:
    con.execute(KEYWORD_SYNC_SQL, {"day": day})
    return [(image_id, keywords) for image_id, keywords, _ in con.execute("SELECT * FROM keyword_sync_plan").fetchall()]


def apply_image_sync(plytix, photoshelter, audit, change: dict) -> int:
    """Bring one Plytix product in line with its approved PhotoShelter images, writing only what
    differs from the product as it stands now. Returns the number of writes."""
    pid = change["product_id"]
    product = plytix.get_product(pid)
    files = {asset["id"]: asset.get("filename", "") for asset in plytix.product_assets(pid)}
    image_of = lambda ref: files.get(ref.get("id") if isinstance(ref, dict) else ref, "").rsplit(".", 1)[0]  # noqa: E731
    attrs = product.get("attributes") or {}
    have_hero = image_of(attrs["hero_image"]) if attrs.get("hero_image") else None
    have_alternates = [image_of(ref) for ref in attrs.get("alternate_images") or []]
    wanted = {"image_approval_status": change["want_approval"], "usage_rights_channels": change["want_channels"],
              "usage_rights_market": change["want_market"], "license_expiration_date": change["want_expiry"]}
    attributes = {k: v for k, v in wanted.items()
                  if (sorted(attrs.get(k) or []) if isinstance(v, list) else attrs.get(k)) != v}
    link = [(change["want_hero"], "hero_image")] if change["want_hero"] != have_hero else []
    link += [(image_id, "alternate_images") for image_id in change["want_alternates"] if image_id not in have_alternates]
    # Alternates that are no longer usable (rights expired, approval withdrawn) come off the product.
    unlink = [image_id for image_id in have_alternates if image_id and image_id not in change["want_alternates"]]
    if not (attributes or link or unlink):
        return 0
    audit.record("plytix", "sync_images", pid, attributes=attributes, link=[m[0] for m in link], unlink=unlink)
    if audit.dry_run:
        return 0
    for asset_id, filename in files.items():
        if filename.rsplit(".", 1)[0] in unlink:
            plytix.unlink_asset(pid, asset_id)
    for image_id, label in link:
        filename = f"{image_id}.jpg"  # the convention that ties a Plytix asset to its PhotoShelter image
        found = plytix.find_asset(filename)
        asset_id = found["id"] if found else plytix.create_asset(photoshelter.rendition_link(image_id), filename)
        plytix.link_asset(pid, asset_id, label)
    if attributes:
        plytix.patch_product(pid, {"attributes": attributes})
    return len(unlink) + len(link) + bool(attributes)


def apply_keyword_sync(photoshelter, audit, image_id: str, keywords: list[str]) -> bool:
    """Merge the product's keywords into the image's; True if PhotoShelter was written."""
    audit.record("photoshelter", "add_keywords", image_id, keywords=keywords)
    return False if audit.dry_run else photoshelter.add_keywords(image_id, keywords)
