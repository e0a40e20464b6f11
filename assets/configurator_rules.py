"""The `configurator:` section of the rules file, and the rules it drives, written in SQL.

Every rule yields *items*: what (kind), about which record, for whom, in one line, with a key that
names the item on its own (`config-review/<id>/<recipient>`). `configurator_notifications` plans
the items no earlier run carried, so each is told once. The rules read the Threekit tables
(`configurator_extraction`) and join the catalog's: an item is checked against the Plytix snapshot
of day D (`catalog_snapshot`) and the PhotoShelter images (`photoshelter_image_changes`,
`product_images`).

Kinds and who hears about them (the recipients are rules-file addresses):
- data steward: `missing_price` (no price for an active pricebook and currency), `missing_attributes`,
  `broken_sku_ref` (Plytix product id or SKU not in the snapshot), `broken_image_ref` (image id not in
  PhotoShelter), `image_not_usable` (the referenced image is not approved or its rights expired, per
  `product_images`), `variant_unavailable` (a Threekit variant not active for a size Plytix has);
- approvers: `config_needs_review` (price above the threshold, or a restricted component),
  `config_invalid_option` (a value the item does not offer, an attribute it does not have, or a
  number outside the manufacturing limits), `config_missing_price`; then `config_escalation` by age,
  level by level, while no order has taken the configuration into production;
- product managers and content operations: `published` (a model or item published), `new_model`,
  `new_variant`; content operations: `unpublished_model_change` (edited since its last publish);
- customer-facing team: `order_milestone` (order status mapped to a milestone, plus "design
  validated" for a new order whose every configuration passes the review rules);
- localisation: `localisation_needed` (the item's Plytix product lacks a configured locale);
  regional marketing and content operations: `localisation_completed` (that locale arrived since);
- IT: `sync_stale` (a Threekit read that has not completed for too long), `sync_failure` (a
  write-back Threekit refused).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Limit(_Strict):
    min: float | None = None
    max: float | None = None


class EscalationLevel(_Strict):
    after_days: int = Field(ge=0)
    to: list[str] = Field(min_length=1)


class ReviewRules(_Strict):
    # A configuration priced above this (in its own currency) needs review; per-currency overrides.
    price_threshold: float = Field(2500.0, gt=0)
    price_threshold_by_currency: dict[str, float] = {}
    # Asset ids or option values that always need a review (a licensed fabric, a custom engraving).
    restricted_components: list[str] = []
    # Manufacturing limits of numeric attributes (e.g. Width: {min: 120, max: 280}).
    manufacturing_limits: dict[str, Limit] = {}
    # Configurations saved within this many days are reviewed; older ones are history.
    within_days: int = Field(60, ge=1)
    approvers: list[str] = []
    # Still unreviewed (no order in production) this many days after it was saved: up one level.
    escalation: list[EscalationLevel] = []

    @model_validator(mode="after")
    def _ascending(self) -> ReviewRules:
        days = [level.after_days for level in self.escalation]
        if days != sorted(days):
            raise ValueError("escalation levels must be in ascending after_days")
        return self


class CatalogRules(_Strict):
    required_item_attributes: list[str] = ["Color", "Size"]
    required_item_metadata: list[str] = ["sku", "plytixProductId"]
    data_steward: list[str] = []


class PublishingRules(_Strict):
    notify: list[str] = []  # told about publishes, new models and new variants
    unpublished_changes_to: list[str] = []


class OrderRules(_Strict):
    # Threekit's order status -> the milestone the customer-facing team hears about.
    milestones: dict[str, str] = {"New": "Order received", "In Progress": "Production started",
                                  "Complete": "Shipment ready", "Cancelled": "Order cancelled"}
    design_validated: str = "Design validated"
    notify: list[str] = []
    # Write the design-review outcome back to the order as a status note (read, merge, PUT).
    write_back: bool = True

    @field_validator("milestones")
    @classmethod
    def _known_statuses(cls, milestones: dict[str, str]) -> dict[str, str]:
        from resources.threekit import STATUSES

        unknown = sorted(set(milestones) - set(STATUSES))
        if unknown:
            raise ValueError(f"unknown order status(es) {', '.join(unknown)}; Threekit's are {', '.join(STATUSES)}")
        return milestones


class LocalisationRules(_Strict):
    needed_to: list[str] = []
    completed_to: list[str] = []


class SyncRules(_Strict):
    notify: list[str] = []
    stale_after_hours: float = Field(26, gt=0)


class ConfiguratorRules(_Strict):
    review: ReviewRules = ReviewRules()
    catalog: CatalogRules = CatalogRules()
    publishing: PublishingRules = PublishingRules()
    orders: OrderRules = OrderRules()
    localisation: LocalisationRules = LocalisationRules()
    sync: SyncRules = SyncRules()
    # Publishes, new models and variants, order milestones this recent are news; older ones are not.
    news_within_days: int = Field(3, ge=1)

    def recipients(self) -> set[str]:
        return {*self.review.approvers, *(p for level in self.review.escalation for p in level.to),
                *self.catalog.data_steward, *self.publishing.notify, *self.publishing.unpublished_changes_to,
                *self.orders.notify, *self.localisation.needed_to, *self.localisation.completed_to,
                *self.sync.notify}


def unknown_recipients(rules) -> list[str]:
    """Configurator recipients without a `people` entry (every recipient needs one)."""
    return sorted(rules.configurator.recipients() - set(rules.people)) if rules.people else []


# ---------- the rules, in SQL ----------
# Tables of day D ($day). Items, prices, pricebooks and variants are Threekit's current state;
# configurations, orders and assets as of the end of D (every version is kept by day of change).
VIEWS_SQL = """
CREATE OR REPLACE TEMP TABLE tk_snapshot AS SELECT * FROM catalog_snapshot WHERE snapshot_date = $day;
CREATE OR REPLACE TEMP TABLE tk_images AS
    SELECT DISTINCT image_id FROM photoshelter_image_changes WHERE partition_date <= $day;
CREATE OR REPLACE TEMP TABLE tk_orders AS
    SELECT * FROM threekit_orders WHERE partition_date <= $day
    QUALIFY row_number() OVER (PARTITION BY id ORDER BY updated_at DESC, extracted_at DESC) = 1;
CREATE OR REPLACE TEMP TABLE tk_assets AS
    SELECT * FROM threekit_asset_changes WHERE partition_date <= $day
    QUALIFY row_number() OVER (PARTITION BY id ORDER BY updated_at DESC, published_at DESC NULLS LAST) = 1;
CREATE OR REPLACE TEMP TABLE tk_configs AS
    SELECT * FROM threekit_configurations
    WHERE partition_date <= $day AND partition_date > $day - CAST($review_days AS INTEGER);
"""

# One row per (configuration, chosen attribute): its value as text or an asset id.
CONFIG_VALUES_SQL = """
CREATE OR REPLACE TEMP TABLE tk_config_values AS
WITH pairs AS (
    SELECT id AS config_id, product_id, unnest(json_keys(variant)) AS attribute, variant FROM tk_configs
)
SELECT config_id, product_id, attribute,
       json_extract(variant, '$."' || attribute || '"') AS value
FROM pairs
"""

# One row per (item, attribute, offered value); an attribute with no listed values is free input.
ITEM_OPTIONS_SQL = """
CREATE OR REPLACE TEMP TABLE tk_item_options AS
WITH attrs AS (
    SELECT i.id AS item_id, unnest(CAST(json_extract(i.attributes, '$[*]') AS JSON[])) AS attribute
    FROM threekit_items i
)
SELECT item_id, json_extract_string(attribute, '$.name') AS attribute,
       json_extract_string(attribute, '$.type') AS type,
       CAST(json_extract(attribute, '$.values') AS JSON[]) AS offered
FROM attrs
"""

# `text` of a chosen or offered value: the asset id of {"assetId"}, else the scalar as text.
_TEXT = "coalesce(json_extract_string({v}, '$.assetId'), json_extract_string({v}, '$'))"

CONFIG_PROBLEMS_SQL = f"""
CREATE OR REPLACE TEMP TABLE tk_config_problems AS
WITH chosen AS (
    SELECT v.*, {_TEXT.format(v="v.value")} AS text, o.offered, o.attribute IS NOT NULL AS known
    FROM tk_config_values v LEFT JOIN tk_item_options o ON o.item_id = v.product_id AND o.attribute = v.attribute
),
invalid AS (
    SELECT config_id, string_agg(
        CASE WHEN NOT known THEN attribute || ' (the item has no such attribute)'
             WHEN coalesce(len(offered), 0) > 0 THEN attribute || ' = ' || coalesce(text, 'null') || ' (not offered)'
             ELSE attribute || ' = ' || coalesce(text, 'null') || ' (outside the manufacturing limits)' END,
        '; ' ORDER BY attribute) AS detail
    FROM chosen c LEFT JOIN cfg_limits l USING (attribute)
    WHERE NOT known
       OR (coalesce(len(offered), 0) > 0
           AND NOT coalesce(list_contains(list_transform(offered, lambda x: {_TEXT.format(v="x")}), text), false))
       OR (coalesce(len(offered), 0) = 0 AND l.attribute IS NOT NULL AND (TRY_CAST(text AS DOUBLE) IS NULL
           OR TRY_CAST(text AS DOUBLE) < coalesce(l.min, -1e308) OR TRY_CAST(text AS DOUBLE) > coalesce(l.max, 1e308)))
    GROUP BY config_id
),
unknown_items AS (
    SELECT c.id AS config_id, 'item ' || coalesce(c.product_id, 'null') || ' is not in the Threekit catalog' AS detail
    FROM tk_configs c LEFT JOIN threekit_items i ON i.id = c.product_id WHERE i.id IS NULL
),
restricted AS (
    SELECT config_id, string_agg(attribute || ' = ' || text, '; ' ORDER BY attribute) AS detail
    FROM chosen WHERE list_contains($restricted, text) GROUP BY config_id
)
SELECT 'config_missing_price' AS kind, c.id AS config_id, 'no price saved with the configuration' AS detail
FROM tk_configs c WHERE c.price IS NULL
UNION ALL
SELECT 'config_needs_review', c.id, concat_ws('; ',
    CASE WHEN c.price > coalesce(t.threshold, $threshold)
         THEN 'price ' || CAST(c.price AS VARCHAR) || ' ' || coalesce(c.currency, '') || ' above '
              || CAST(coalesce(t.threshold, $threshold) AS VARCHAR) END,
    CASE WHEN r.config_id IS NOT NULL THEN 'restricted: ' || r.detail END)
FROM tk_configs c LEFT JOIN cfg_thresholds t ON t.currency = c.currency
LEFT JOIN restricted r ON r.config_id = c.id
WHERE c.price > coalesce(t.threshold, $threshold) OR r.config_id IS NOT NULL
UNION ALL
SELECT 'config_invalid_option', config_id, string_agg(detail, '; ')
FROM (SELECT * FROM invalid UNION ALL SELECT * FROM unknown_items) GROUP BY config_id
"""  # noqa: S608 (built from this module's constants only)

ITEM_PROBLEMS_SQL = """
CREATE OR REPLACE TEMP TABLE tk_item_problems AS
WITH active_prices AS (
    SELECT b.id AS pricebook_id, b.name, unnest(b.currencies) AS currency
    FROM threekit_pricebooks b WHERE b.deleted_at IS NULL
),
missing_price AS (
    SELECT i.id, string_agg(a.name || ' ' || a.currency, ', ' ORDER BY a.name, a.currency) AS detail
    FROM threekit_items i CROSS JOIN active_prices a
    LEFT JOIN threekit_item_prices p ON p.item_id = i.id AND p.pricebook_id = a.pricebook_id
         AND p.currency = a.currency
    WHERE p.amount IS NULL GROUP BY i.id
),
missing_attributes AS (
    SELECT id, concat_ws(', ',
        nullif(array_to_string(list_filter($required_attributes, lambda a: NOT list_contains(attribute_names, a)), ', '), ''),
        nullif(array_to_string(list_filter($required_metadata,
            lambda k: coalesce(json_extract_string(metadata, '$."' || k || '"'), '') = ''), ', '), '')) AS detail
    FROM threekit_items
),
products AS (SELECT DISTINCT product_id FROM tk_snapshot),
skus AS (SELECT DISTINCT sku_key FROM tk_snapshot WHERE sku_key IS NOT NULL),
broken_sku AS (
    SELECT i.id, concat_ws('; ',
        CASE WHEN i.plytix_product_id IS NOT NULL AND p.product_id IS NULL
             THEN 'Plytix product ' || i.plytix_product_id || ' not in the catalog' END,
        CASE WHEN i.sku IS NOT NULL AND s.sku_key IS NULL THEN 'SKU ' || i.sku || ' not in the catalog' END) AS detail
    FROM threekit_items i
    LEFT JOIN products p ON p.product_id = i.plytix_product_id
    LEFT JOIN skus s ON s.sku_key = upper(trim(i.sku))
    WHERE $have_snapshot AND ((i.plytix_product_id IS NOT NULL AND p.product_id IS NULL)
                              OR (i.sku IS NOT NULL AND s.sku_key IS NULL))
),
broken_image AS (
    SELECT i.id, 'PhotoShelter image ' || i.image_id || ' not found' AS detail
    FROM threekit_items i LEFT JOIN tk_images m ON m.image_id = i.image_id
    WHERE $have_images AND i.image_id IS NOT NULL AND m.image_id IS NULL
),
image_not_usable AS (
    SELECT DISTINCT i.id, 'PhotoShelter image ' || i.image_id || ' is ' || coalesce(pi.approval_status, 'unknown')
        || CASE WHEN pi.license_expiration_date < $day THEN ', rights expired '
                || CAST(pi.license_expiration_date AS VARCHAR) ELSE '' END AS detail
    FROM threekit_items i JOIN product_images pi
      ON pi.snapshot_date = $day AND pi.product_id = i.plytix_product_id AND pi.image_id = i.image_id
    WHERE NOT pi.usable
),
variant_unavailable AS (
    SELECT i.id, string_agg(DISTINCT v.custom_id || ' is ' || v.status, ', ') AS detail
    FROM threekit_variants v JOIN threekit_items i ON i.id = v.item_id
    JOIN tk_snapshot s ON s.parent_id = i.plytix_product_id
     AND list_contains(list_transform(v.option_values, lambda o: upper(o)),
                       upper(json_extract_string(s.attributes, '$.size')))
    WHERE v.status <> 'active'
    GROUP BY i.id
)
SELECT 'missing_price' AS kind, id, 'no price in ' || detail AS detail FROM missing_price
UNION ALL SELECT 'missing_attributes', id, 'missing ' || detail FROM missing_attributes WHERE detail <> ''
UNION ALL SELECT 'broken_sku_ref', id, detail FROM broken_sku
UNION ALL SELECT 'broken_image_ref', id, detail FROM broken_image
UNION ALL SELECT 'image_not_usable', id, detail FROM image_not_usable
UNION ALL SELECT 'variant_unavailable', id, detail FROM variant_unavailable
"""

# Every candidate item of day D: kind, recipient, record, reference, line, item key, level.
ITEMS_SQL = """
CREATE OR REPLACE TEMP TABLE tk_items AS
WITH steward AS (SELECT unnest($data_steward) AS recipient),
approvers AS (SELECT unnest($approvers) AS recipient),
publishing AS (SELECT unnest($publishing) AS recipient),
unpublished_to AS (SELECT unnest($unpublished_to) AS recipient),
customer AS (SELECT unnest($customer) AS recipient),
needed_to AS (SELECT unnest($needed_to) AS recipient),
completed_to AS (SELECT unnest($completed_to) AS recipient),
it AS (SELECT unnest($it) AS recipient),
items AS (SELECT id, name, sku, plytix_product_id FROM threekit_items),
config_open AS (  -- configurations no order has taken into production (or cancelled) by D
    SELECT c.*, $day - c.partition_date AS age_days FROM tk_configs c
    WHERE c.id NOT IN (SELECT unnest(configuration_ids) FROM tk_orders
                       WHERE status IN ('In Progress', 'Complete', 'Cancelled'))
),
news_orders AS (SELECT * FROM tk_orders WHERE partition_date > $day - CAST($news_days AS INTEGER)),
models AS (SELECT * FROM tk_assets WHERE type = 'model'),
locales AS (SELECT unnest($locales) AS locale),
lacking AS (
    SELECT i.id, i.sku, i.name, l.locale FROM items i JOIN tk_snapshot s ON s.product_id = i.plytix_product_id
    CROSS JOIN locales l WHERE NOT list_contains(s.locales, l.locale)
),
completed AS (
    SELECT DISTINCT c.record_id AS id, split_part(c.item_key, '/', 3) AS locale
    FROM configurator_items c WHERE c.kind = 'localisation_needed'
      AND NOT EXISTS (SELECT 1 FROM lacking l WHERE l.id = c.record_id AND l.locale = split_part(c.item_key, '/', 3))
      AND c.record_id IN (SELECT i.id FROM items i JOIN tk_snapshot s ON s.product_id = i.plytix_product_id)
)
SELECT p.kind, r.recipient, p.id AS record_id, coalesce(i.sku, p.id) AS ref,
       coalesce(i.name, '') || ': ' || p.detail AS line, p.kind || '/' || p.id || '/' || r.recipient AS item_key,
       1 AS level
FROM tk_item_problems p LEFT JOIN items i USING (id) CROSS JOIN steward r
UNION ALL
SELECT p.kind, r.recipient, p.config_id, coalesce(c.short_id, p.config_id),
       'configuration ' || coalesce(c.short_id, p.config_id) || ' of ' || coalesce(i.name, c.product_id, '?') || ': '
           || p.detail,
       p.kind || '/' || p.config_id || '/' || r.recipient, 1
FROM tk_config_problems p JOIN tk_configs c ON c.id = p.config_id LEFT JOIN items i ON i.id = c.product_id
CROSS JOIN approvers r
UNION ALL
SELECT 'config_escalation', e.recipient, c.id, coalesce(c.short_id, c.id),
       'configuration ' || coalesce(c.short_id, c.id) || ' waiting for review since ' || CAST(c.partition_date AS VARCHAR)
           || ' (level ' || CAST(e.level AS VARCHAR) || '): ' || string_agg(p.detail, '; ' ORDER BY p.kind),
       'config-escalation/' || c.id || '/L' || CAST(e.level AS VARCHAR) || '/' || e.recipient, e.level
FROM config_open c JOIN tk_config_problems p ON p.config_id = c.id
JOIN cfg_escalation e ON c.age_days >= e.after_days
GROUP BY c.id, c.short_id, c.partition_date, e.level, e.recipient
UNION ALL
SELECT 'unpublished_model_change', r.recipient, m.id, m.name,
       m.name || ': edited ' || strftime(m.updated_at, '%Y-%m-%d %H:%M') || ' UTC, '
           || coalesce('last published ' || strftime(m.published_at, '%Y-%m-%d %H:%M') || ' UTC', 'never published'),
       'unpublished/' || m.id || '/' || strftime(m.updated_at, '%Y%m%dT%H%M%S.%g') || '/' || r.recipient, 1
FROM models m CROSS JOIN unpublished_to r
WHERE m.published_at IS NULL OR m.published_at < m.updated_at
UNION ALL
SELECT 'published', r.recipient, a.id, coalesce(i.sku, a.name),
       a.type || ' ' || coalesce(a.name, a.id) || ' published ' || strftime(a.published_at, '%Y-%m-%d %H:%M') || ' UTC',
       'published/' || a.id || '/' || strftime(a.published_at, '%Y%m%dT%H%M%S.%g') || '/' || r.recipient, 1
FROM tk_assets a LEFT JOIN items i ON i.id = a.id CROSS JOIN publishing r
WHERE a.published_at IS NOT NULL AND CAST(a.published_at AS DATE) > $day - CAST($news_days AS INTEGER)
  AND CAST(a.published_at AS DATE) <= $day
UNION ALL
SELECT 'new_model', r.recipient, m.id, m.name, 'new 3D model ' || m.name,
       'new-model/' || m.id || '/' || r.recipient, 1
FROM models m CROSS JOIN publishing r
WHERE CAST(m.created_at AS DATE) > $day - CAST($news_days AS INTEGER) AND CAST(m.created_at AS DATE) <= $day
UNION ALL
SELECT 'new_variant', r.recipient, v.id, v.custom_id,
       'new variant ' || v.custom_id || ' (' || v.status || ') of ' || coalesce(i.name, v.item_id),
       'new-variant/' || v.id || '/' || r.recipient, 1
FROM threekit_variants v LEFT JOIN items i ON i.id = v.item_id CROSS JOIN publishing r
WHERE CAST(v.created_at AS DATE) > $day - CAST($news_days AS INTEGER) AND CAST(v.created_at AS DATE) <= $day
UNION ALL
SELECT 'order_milestone', r.recipient, o.id, coalesce(o.name, o.short_id),
       coalesce(o.name, o.short_id) || ': ' || m.milestone || ' (Threekit status ' || o.status || ')',
       'order-milestone/' || o.id || '/' || m.milestone || '/' || r.recipient, m.rank
FROM news_orders o JOIN cfg_milestones m ON m.status = o.status CROSS JOIN customer r
UNION ALL
SELECT 'order_milestone', r.recipient, o.id, coalesce(o.name, o.short_id),
       coalesce(o.name, o.short_id) || ': ' || $design_validated || ' (every configuration passes review)',
       'order-milestone/' || o.id || '/' || $design_validated || '/' || r.recipient, 0
FROM news_orders o JOIN tk_order_review v ON v.id = o.id AND v.outcome = 'validated' CROSS JOIN customer r
UNION ALL
SELECT 'localisation_needed', r.recipient, l.id, l.sku, l.name || ': no ' || l.locale || ' copy in Plytix',
       'localisation-needed/' || l.id || '/' || l.locale || '/' || r.recipient, 1
FROM lacking l CROSS JOIN needed_to r
UNION ALL
SELECT 'localisation_completed', r.recipient, c.id, i.sku, i.name || ': ' || c.locale || ' copy completed in Plytix',
       'localisation-completed/' || c.id || '/' || c.locale || '/' || r.recipient, 1
FROM completed c JOIN items i USING (id) CROSS JOIN completed_to r
UNION ALL
SELECT 'sync_stale', r.recipient, k.resource, k.resource,
       'Threekit ' || k.resource || ' last read completely at ' || strftime(k.mark, '%Y-%m-%d %H:%M') || ' UTC',
       'sync-stale/' || k.resource || '/' || strftime(k.mark, '%Y%m%dT%H%M%S') || '/' || r.recipient, 1
FROM threekit_marks k CROSS JOIN it r WHERE k.mark < CAST($stale_before AS TIMESTAMPTZ)
"""

# New orders of the news window and the outcome of their design review: `validated` (every
# configuration passes the review rules), `review` (some need review) or `unknown` (a configuration
# not extracted yet). The outcome is the "design validated" milestone and the note written back.
ORDER_REVIEW_SQL = """
CREATE OR REPLACE TEMP TABLE tk_order_review AS
WITH news_orders AS (SELECT * FROM tk_orders WHERE partition_date > $day - CAST($news_days AS INTEGER)
                     AND status = 'New' AND len(configuration_ids) > 0),
problems AS (
    SELECT o.id, string_agg(DISTINCT p.kind, ', ' ORDER BY p.kind) AS kinds, count(DISTINCT p.config_id) AS n
    FROM news_orders o JOIN tk_config_problems p ON list_contains(o.configuration_ids, p.config_id) GROUP BY o.id
),
unknown AS (
    SELECT DISTINCT o.id FROM news_orders o, unnest(o.configuration_ids) t(cid)
    WHERE cid NOT IN (SELECT id FROM threekit_configurations)
)
SELECT o.id, o.short_id, o.name,
       CASE WHEN p.id IS NOT NULL THEN 'review' WHEN u.id IS NOT NULL THEN 'unknown' ELSE 'validated' END AS outcome,
       CASE WHEN p.id IS NOT NULL THEN 'Design review pending: ' || CAST(p.n AS VARCHAR)
                 || ' configuration(s) need review (' || replace(p.kinds, 'config_', '') || ')'
            ELSE $design_validated || ': every configuration passes the catalog-ops review' END AS note
FROM news_orders o LEFT JOIN problems p USING (id) LEFT JOIN unknown u USING (id)
"""
