"""The SQL that assembles the Threekit world's rows from a chunk of numpy draws (`threekit.py`).

DuckDB builds the JSON documents (item attributes, configuration variants and metadata, order
carts) so no record exists as a Python object. Every statement reads a registered frame named
`draws`; the texts are built from this module's constants only, never from input.
"""

from __future__ import annotations

import json

from sandbox import taxonomy
from sandbox.services.threekit_render import ORG_ID, THUMBNAIL_HOST, short_id_sql, tk_uuid, uuid_sql

PB_RETAIL, PB_TRADE, PB_OLD = tk_uuid("pricebook", 1), tk_uuid("pricebook", 2), tk_uuid("pricebook", 3)
MATERIAL_IDS = [tk_uuid("material", k + 1) for k in range(len(taxonomy.COLORS))]
LINE_ITEM_GID, LINE_ITEM_BASE, SHOPIFY_ORDER_BASE = "gid://shopify/LineItem/", 15872390000000, 6214737500000
SIZES_SQL = "[" + ", ".join(f"'{s}'" for s in taxonomy.SIZES) + "]"
MATERIALS_SQL = "[" + ", ".join(f"'{m}'" for m in MATERIAL_IDS) + "]"
# Every variant has one option, its size: the same few JSON documents.
SIZE_OPTIONS_SQL = "[" + ", ".join(
    "'" + json.dumps([{"attribute": {"id": tk_uuid("option", 1), "customId": "size"},
                       "option": {"id": tk_uuid("option", 100 + j), "customId": size.lower()}}]) + "'"
    for j, size in enumerate(taxonomy.SIZES)) + "]"


def at(age_us_column: str) -> str:
    """The instant `age` microseconds before the world's now ($1), at Threekit's millisecond precision."""
    return f"date_trunc('millisecond', CAST($1 AS TIMESTAMP) - to_microseconds({age_us_column}))"


SCHEMA = """
CREATE TABLE threekit_pricebooks (seq INTEGER, id VARCHAR PRIMARY KEY, name VARCHAR, currencies VARCHAR[],
    created_at TIMESTAMP, created_by VARCHAR, deleted_at TIMESTAMP);
CREATE TABLE threekit_assets (seq BIGINT, id VARCHAR PRIMARY KEY, name VARCHAR, type VARCHAR, description VARCHAR,
    tags VARCHAR[], keywords VARCHAR[], categories VARCHAR[], metadata JSON, proxy_id VARCHAR, branch VARCHAR,
    imported_file_id VARCHAR, attributes JSON, created_at TIMESTAMP, updated_at TIMESTAMP, published_at TIMESTAMP);
CREATE TABLE threekit_variants (seq BIGINT, id VARCHAR PRIMARY KEY, custom_id VARCHAR, item_id VARCHAR,
    status VARCHAR, options JSON, created_at TIMESTAMP, updated_at TIMESTAMP);
CREATE TABLE threekit_configurations (seq BIGINT, id VARCHAR PRIMARY KEY, short_id VARCHAR, product_id VARCHAR,
    product_version VARCHAR, variant JSON, metadata JSON, customer_id VARCHAR, thumbnail VARCHAR,
    created_at TIMESTAMP);
CREATE TABLE threekit_orders (seq BIGINT, id VARCHAR PRIMARY KEY, short_id VARCHAR, name VARCHAR,
    customer_id VARCHAR, origin_org_id VARCHAR, platform JSON, metadata JSON, cart JSON, derivative JSON,
    status VARCHAR, created_at TIMESTAMP, updated_at TIMESTAMP);
-- What a configuration needs to know about the item it picks (priced items only); dropped after the build.
CREATE TABLE threekit_item_facts (priced_no BIGINT, item_id VARCHAR, usd DOUBLE, eur DOUBLE, trade DOUBLE,
    colors VARCHAR[], not_offered VARCHAR[], monogram BOOLEAN, width BOOLEAN);
"""

# The Plytix parent of every style in a range, its leaf category and the style's first image.
STYLE_ROWS = """
SELECT p.seq, p.id, trim(p.sku) AS sku, p.label, coalesce(c.name, 'Unsorted') AS leaf,
       json_extract_string(p.attributes, '$.color') AS color, i.image_id
FROM products p
LEFT JOIN categories c ON c.id = p.categories[1]
LEFT JOIN (SELECT style_code, min(id) AS image_id FROM images
           WHERE sku IS NULL AND seq >= ? AND seq < ? GROUP BY style_code) i
       ON i.style_code = json_extract_string(p.attributes, '$.style_code')
WHERE p.parent_id IS NULL AND p.seq >= ? AND p.seq < ?
ORDER BY p.seq
"""

# `missing_mode`: 0 no Pricing attribute at all, 1 no entry for the retail pricebook, 2 retail without EUR.
_PRICING = f"""json('[' || concat_ws(',',
        CASE WHEN NOT (missing AND missing_mode = 1) THEN json_object('pricebook', '{PB_RETAIL}', 'currencies',
            CASE WHEN missing AND missing_mode = 2 THEN json_object('USD', usd)
                 ELSE json_object('USD', usd, 'EUR', eur) END) END,
        json_object('pricebook', '{PB_TRADE}', 'currencies', json_object('USD', trade)),
        CASE WHEN has_old_price THEN json_object('pricebook', '{PB_OLD}', 'currencies',
            json_object('USD', old_usd, 'EUR', old_eur)) END) || ']')"""

_ATTRIBUTES = f"""json('[' || concat_ws(',',
    json_object('name', 'Color', 'type', 'Asset', 'values', to_json(list_transform(colors, lambda c: {{'assetId': c}})),
                'defaultValue', json_object('assetId', colors[1])),
    json_object('name', 'Size', 'type', 'String', 'values', {SIZES_SQL}, 'defaultValue', 'M'),
    CASE WHEN monogram THEN '{{"name":"Monogram","type":"String","values":[],"defaultValue":""}}' END,
    CASE WHEN width THEN '{{"name":"Width","type":"Number","values":[],"defaultValue":200}}' END,
    CASE WHEN NOT (missing AND missing_mode = 0) THEN json_object('name', 'Price', 'type', 'Pricing',
        'values', {_PRICING}) END) || ']')"""

ITEMS_SQL = f"""
INSERT INTO threekit_assets BY NAME
SELECT 100 + 2 * s AS seq, {uuid_sql("item", "s")} AS id, label AS name, 'item' AS type,
    'Configurable ' || lower(split_part(label, ' - ', 1)) AS description, [lower(replace(leaf, ' ', '-'))] AS tags,
    string_split(lower(split_part(label, ' - ', 1)), ' ') AS keywords, [leaf] AS categories,
    json_object('sku', sku, 'plytixProductId', product_id, 'photoshelterImageId', image_id) AS metadata,
    {uuid_sql("model", "s")} AS proxy_id, 'main' AS branch, NULL AS imported_file_id, {_ATTRIBUTES} AS attributes,
    {at("created_us")} AS created_at, {at("updated_us")} AS updated_at, {at("published_us")} AS published_at
FROM draws
"""  # noqa: S608

MODELS_SQL = f"""
INSERT INTO threekit_assets BY NAME
SELECT 101 + 2 * s AS seq, {uuid_sql("model", "s")} AS id,
    regexp_replace(lower(label), '[^a-z0-9]', '_', 'g') || '.glb' AS name, 'model' AS type, NULL AS description,
    [lower(replace(leaf, ' ', '-'))] AS tags, CAST([] AS VARCHAR[]) AS keywords, CAST([] AS VARCHAR[]) AS categories,
    '{{}}' AS metadata, NULL AS proxy_id, 'main' AS branch, {uuid_sql("file", "s")} AS imported_file_id,
    '[]' AS attributes, {at("model_created_us")} AS created_at, {at("model_updated_us")} AS updated_at,
    CASE WHEN model_published_us >= 0 THEN {at("model_published_us")} END AS published_at
FROM draws
"""  # noqa: S608

VARIANTS_SQL = f"""
INSERT INTO threekit_variants BY NAME
SELECT 3 * s + j AS seq, {uuid_sql("variant", "3 * s + j")} AS id, sku || '-' || {SIZES_SQL}[j + 1] AS custom_id,
    {uuid_sql("item", "s")} AS item_id, variant_status[j + 1] AS status, {SIZE_OPTIONS_SQL}[j + 1] AS options,
    {at("created_us")} AS created_at, {at("updated_us")} AS updated_at
FROM draws, range(3) t(j)
"""  # noqa: S608

# $1 is the number of priced items in earlier chunks, so `priced_no` runs densely over the world.
FACTS_SQL = f"""
INSERT INTO threekit_item_facts
SELECT $1 + row_number() OVER (ORDER BY s) - 1, {uuid_sql("item", "s")}, usd, eur, trade, colors,
    list_filter({MATERIALS_SQL}, lambda m: NOT list_contains(colors, m)), monogram, width
FROM draws WHERE NOT missing
"""  # noqa: S608

ITEM_TRUTH_SQL = f"""
INSERT INTO ground_truth
SELECT 'threekit_missing_price', {uuid_sql("item", "s")} FROM draws WHERE missing
UNION ALL SELECT 'threekit_broken_sku_ref', {uuid_sql("item", "s")} FROM draws WHERE broken_sku
UNION ALL SELECT 'threekit_broken_image_ref', {uuid_sql("item", "s")} FROM draws WHERE broken_image
UNION ALL SELECT 'threekit_unpublished_model_change', {uuid_sql("model", "s")} FROM draws WHERE unpublished
"""  # noqa: S608

# $1: configurations below this number were ordered; $2: the world's now.
CONFIGURATIONS_SQL = f"""
INSERT INTO threekit_configurations BY NAME
SELECT d.seq, {uuid_sql("configuration", "d.seq")} AS id, {short_id_sql("configuration", "d.seq")} AS short_id,
    f.item_id AS product_id, 'v1' AS product_version,
    json_merge_patch(
        json_object('Color', json_object('assetId', CASE WHEN d.invalid AND NOT d.invalid_size
                        THEN f.not_offered[1 + CAST(floor(d.not_offered_pick * len(f.not_offered)) AS INTEGER)]
                        ELSE f.colors[1 + CAST(floor(d.color_pick * len(f.colors)) AS INTEGER)] END),
                    'Size', CASE WHEN d.invalid AND d.invalid_size THEN 'XL' ELSE d.size END),
        json_object('Monogram', CASE WHEN f.monogram THEN d.monogram END),
        json_object('Width', CASE WHEN f.width THEN d.width END)) AS variant,
    json_merge_patch(
        json_object('price', printf('%.2f', CASE WHEN d.trade THEN f.trade WHEN d.euro THEN f.eur ELSE f.usd END),
                    'currency', CASE WHEN d.euro AND NOT d.trade THEN 'EUR' ELSE 'USD' END,
                    'pricebookId', CASE WHEN d.trade THEN '{PB_TRADE}' ELSE '{PB_RETAIL}' END,
                    'shopifyLineItemId', CASE WHEN d.seq < $1 THEN '{LINE_ITEM_GID}' || ({LINE_ITEM_BASE} + d.seq) END),
        CASE WHEN d.missing THEN '{{"price":null}}' ELSE '{{}}' END) AS metadata,
    CASE WHEN d.customer > 0 THEN {uuid_sql("customer", "d.customer")} END AS customer_id,
    CASE WHEN d.thumbnail THEN '{THUMBNAIL_HOST}/api/files/' || {uuid_sql("thumbnail", "d.seq")} || '/content'
         END AS thumbnail,
    date_trunc('millisecond', CAST($2 AS TIMESTAMP) - to_microseconds(d.age_us)) AS created_at
FROM draws d JOIN threekit_item_facts f USING (priced_no)
"""  # noqa: S608

# A configuration priced above the threshold ($1) needs review; one without a price is a finding of its own.
CONFIGURATION_TRUTH_SQL = """
INSERT INTO ground_truth
SELECT CASE WHEN d.missing THEN 'threekit_config_missing_price' ELSE 'threekit_config_needs_review' END, c.id
FROM draws d JOIN threekit_configurations c USING (seq)
WHERE d.missing OR CAST(json_extract_string(c.metadata, '$.price') AS DOUBLE) > $1
UNION ALL
SELECT 'threekit_config_invalid_option', c.id FROM draws d JOIN threekit_configurations c USING (seq) WHERE d.invalid
"""

ORDERS_SQL = f"""
INSERT INTO threekit_orders BY NAME
SELECT o.seq, {uuid_sql("order", "o.seq")} AS id, {short_id_sql("order", "o.seq")} AS short_id,
    'Shopify #' || (1001 + o.seq) AS name,
    CASE WHEN o.customer > 0 THEN {uuid_sql("customer", "o.customer")} END AS customer_id,
    '{ORG_ID}' AS origin_org_id,
    json_object('id', CAST({SHOPIFY_ORDER_BASE} + o.seq AS VARCHAR), 'platform', 'shopify',
                'storeName', 'sandbox.myshopify.com') AS platform,
    json_object('shopifyOrderId', CAST({SHOPIFY_ORDER_BASE} + o.seq AS VARCHAR),
                'statusNote', CASE WHEN o.noted THEN 'Shipped from the warehouse' END,
                'statusNoteAt', CASE WHEN o.noted THEN strftime(o.updated_at, '%Y-%m-%dT%H:%M:%S.%gZ') END) AS metadata,
    to_json(list_transform(range(o.size), lambda j: {{
        'configurationId': {uuid_sql("configuration", "o.first + j")}, 'count': o.counts[j + 1],
        'metadata': {{'shopifyLineItemId': '{LINE_ITEM_GID}' || ({LINE_ITEM_BASE} + o.first + j)}}}})) AS cart,
    '{{}}' AS derivative, o.status, o.created_at, o.updated_at
FROM (SELECT *, date_trunc('millisecond', created_at + to_microseconds(later_us)) AS updated_at
      FROM (SELECT *, {at("age_us")} AS created_at FROM draws)) o
"""  # noqa: S608
