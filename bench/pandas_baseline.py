"""The baseline: the snapshot, the image join and the quality rules in plain pandas.

The same inputs (the three extraction tables, read whole from the warehouse file), the same join
order (SKU, else style code, else family) and the same rules as `assets/snapshot.py`,
`assets/images.py` and `assets/quality.py`, written the way a team would without DuckDB: frames,
merges, groupby and `json.loads` per product. `make bench` checks that it finds the same
(product_id, rule) pairs as the project's SQL before comparing their speed and memory.
"""

from __future__ import annotations

import json
from datetime import date, timedelta

import duckdb
import pandas as pd

from assets.rules import QualityRules

CHANNEL_COLUMNS = (("usage_ecommerce", "E-commerce"), ("usage_social", "Social"), ("usage_print", "Print"),
                   ("usage_marketplaces", "Marketplaces"))


def _text(value) -> str:
    """What `coalesce(json_extract_string(fields, '$.x'), '')` gives."""
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def _str_or_none(value):
    return value if isinstance(value, str) else None


def snapshot(changes: pd.DataFrame, categories: pd.DataFrame, deleted: set[str], day: date) -> pd.DataFrame:
    latest = changes[changes["partition_date"] <= pd.Timestamp(day)]
    latest = latest.sort_values(["modified", "extracted_at"], ascending=False).drop_duplicates("id")
    latest = latest[~latest["id"].isin(deleted)].reset_index(drop=True)
    attributes = [json.loads(a) if a else {} for a in latest["attributes"]]
    paths = dict(zip(categories["id"], categories["path"], strict=True))
    category_path = [paths.get(c[0]) if c is not None and len(c) else None for c in latest["categories"]]
    fields = []
    for attrs, label in zip(attributes, latest["label"], strict=True):
        merged = dict(attrs)
        if label is None:
            merged.pop("label", None)
        else:
            merged["label"] = label
        fields.append(merged)
    return pd.DataFrame({
        "product_id": latest["id"], "sku": latest["sku"], "sku_key": latest["sku"].str.strip(" ").str.upper(),
        "status": latest["status"], "workflow_stage": [_str_or_none(a.get("workflow_stage")) for a in attributes],
        "category_path": [list(p) if p is not None else None for p in category_path],
        "category_root": [p[0] if p is not None and len(p) else None for p in category_path],
        "style_code": [_str_or_none(a.get("style_code")) for a in attributes],
        "product_family": [_str_or_none(a.get("product_family")) for a in attributes],
        "sales_channels": [list(a.get("sales_channels") or []) for a in attributes],
        "hero_image_id": [(a.get("hero_image") or {}).get("id") for a in attributes],
        "fields": fields,
    })


def images_as_of(images: pd.DataFrame, day: date) -> pd.DataFrame:
    current = images[images["partition_date"] <= pd.Timestamp(day)]
    current = current.sort_values(["updated_at", "extracted_at"], ascending=False).drop_duplicates("image_id")
    current = current.copy()
    current["sku_key"] = current["sku"].str.strip(" ").str.upper()
    return current


def product_images(products: pd.DataFrame, images: pd.DataFrame, day: date) -> pd.DataFrame:
    """One row per (product, matched image), or one row with no image: the SQL's product_images."""
    keys = products[["product_id", "sku_key", "style_code", "product_family"]]
    with_sku = images[images["sku_key"].notna()]
    by_sku = keys.merge(with_sku[["image_id", "sku_key"]], on="sku_key")
    by_sku["match_type"] = "sku"
    rest = keys[~keys["product_id"].isin(by_sku["product_id"])]
    style_shots = images[images["sku"].isna() & images["style_code"].notna()]
    by_style = rest[rest["style_code"].notna()].merge(style_shots[["image_id", "style_code"]], on="style_code")
    by_style["match_type"] = "style_code"
    rest = rest[~rest["product_id"].isin(by_style["product_id"])]
    family_shots = images[images["sku"].isna() & images["style_code"].isna() & images["product_family"].notna()]
    by_family = rest[rest["product_family"].notna()].merge(family_shots[["image_id", "product_family"]],
                                                          on="product_family")
    by_family["match_type"] = "product_family"
    matches = pd.concat([m[["product_id", "image_id", "match_type"]] for m in (by_sku, by_style, by_family)])
    detail = images[["image_id", "approval_status", "license_expiration_date", "licensed_market",
                     *(c for c, _ in CHANNEL_COLUMNS)]]
    matched = matches.merge(detail, on="image_id")
    expiry = pd.to_datetime(matched["license_expiration_date"])
    approved = matched["approval_status"].eq("Approved")
    matched["usable"] = approved & (expiry.isna() | (expiry >= pd.Timestamp(day)))
    allowed = matched[[c for c, _ in CHANNEL_COLUMNS]].eq("Allowed").to_numpy()
    matched["allowed_channels"] = [[name for (_, name), ok in zip(CHANNEL_COLUMNS, row, strict=True) if ok]
                                   for row in allowed]
    matched["shared_by_duplicate_sku"] = matched.groupby("image_id")["image_id"].transform("size") > 1
    matched = matched.sort_values(["product_id", "usable", "image_id"], ascending=[True, False, True])
    position = matched.groupby("product_id").cumcount()
    matched["image_role"] = "alternate"
    matched.loc[position == 0, "image_role"] = "hero"
    matched.loc[~matched["usable"], "image_role"] = "unusable"
    return products[["product_id", "sku"]].merge(matched, on="product_id", how="left")


def image_facts(joined: pd.DataFrame, day: date, expiring_days: int) -> pd.DataFrame:
    """Per product: any image, any approved, expired/expiring approved images and their channels."""
    expiry = pd.to_datetime(joined["license_expiration_date"])
    approved = joined["approval_status"].eq("Approved")
    start, end = pd.Timestamp(day), pd.Timestamp(day + timedelta(days=expiring_days))
    frame = pd.DataFrame({
        "product_id": joined["product_id"], "has_image": joined["image_id"].notna(), "approved": approved,
        "expired": approved & (expiry < start), "expiring": approved & (expiry >= start) & (expiry < end),
    })
    facts = frame.groupby("product_id").agg(has_images=("has_image", "any"), has_approved=("approved", "any"))
    for kind in ("expired", "expiring"):
        rows = joined[frame[kind].to_numpy()]
        ids = rows.groupby("product_id")["image_id"].agg(lambda s: sorted(set(s)))
        channels = rows.groupby("product_id")["allowed_channels"].agg(lambda s: {c for cs in s for c in cs})
        facts[kind] = ids
        facts[f"{kind}_channels"] = channels
    return facts


def findings(products: pd.DataFrame, facts: pd.DataFrame, rules: QualityRules) -> pd.DataFrame:
    rows: list[tuple] = []
    add = rows.append
    required = rules.required_attributes
    channel_rules = [(ch, r.attribute, r.max_length) for ch, rs in rules.channel_rules.items() for r in rs]
    prefixes = [(family, list(prefix)) for family, ps in rules.taxonomy.families.items() for prefix in ps]
    hero_stages = set(rules.images.stages_needing_hero)
    sku_counts = products["sku_key"].value_counts()
    facts = facts.reindex(products["product_id"])
    for p, f in zip(products.itertuples(index=False), facts.itertuples(index=False), strict=True):
        pid, fields = p.product_id, p.fields
        for attribute in required.global_:
            if _text(fields.get(attribute)) == "":
                add((pid, "missing_required_attribute", attribute))
        for attribute in required.by_category.get(p.category_root, []):
            if _text(fields.get(attribute)) == "":
                add((pid, "missing_category_attribute", attribute))
        for channel, attribute, max_length in channel_rules:
            if channel in p.sales_channels:
                value = _text(fields.get(attribute))
                if value == "" or (max_length is not None and len(value) > max_length):
                    add((pid, "channel_attribute_invalid", f"{channel}: {attribute}", channel))
        if not f.has_images:
            add((pid, "missing_images", ""))
        elif not f.has_approved:
            add((pid, "unapproved_images", ""))
        if p.workflow_stage in hero_stages and not isinstance(p.hero_image_id, str):  # pandas: NaN, not None
            add((pid, "no_hero_image", p.workflow_stage))
        channels = set(p.sales_channels)
        if isinstance(f.expired, list) and f.expired and channels & f.expired_channels:
            add((pid, "usage_rights_expired", ", ".join(f.expired)))
        if isinstance(f.expiring, list) and f.expiring and channels & f.expiring_channels:
            add((pid, "usage_rights_expiring", ", ".join(f.expiring)))
        if sku_counts[p.sku_key] > 1:
            add((pid, "duplicate_sku", p.sku_key))
        path = p.category_path
        matching = [family for family, prefix in prefixes if path is not None and path[:len(prefix)] == prefix]
        if not matching:
            add((pid, "unknown_category", " > ".join(path) if path else "no category"))
        elif p.product_family not in matching:
            add((pid, "family_mismatch", p.product_family or "(none)"))
        for locale, attribute in rules.locales.items():
            if _text(fields.get(attribute)) == "":
                add((pid, "missing_translation", locale))
    raw = pd.DataFrame([(*r, None)[:4] for r in rows], columns=["product_id", "rule", "detail", "channel"])
    raw = raw.groupby(["product_id", "rule"], as_index=False, dropna=False).agg(
        detail=("detail", lambda d: "; ".join(sorted(d))), channel=("channel", "first"))
    raw["severity"] = raw["rule"].map(rules.severity)
    errors = raw[raw["severity"] == "error"].groupby("product_id")["rule"].agg(lambda r: ", ".join(sorted(r)))
    blocking = set(raw.loc[raw["severity"].isin(["error", "warning"]), "product_id"])
    published = products[(products["status"] == "Completed") | (products["workflow_stage"] == "Published")]
    blocked = published[published["product_id"].isin(errors.index)]
    ready = products[(products["workflow_stage"] == rules.launch.stage) & ~products["product_id"].isin(blocking)]
    derived = pd.concat([
        pd.DataFrame({"product_id": blocked["product_id"], "rule": "publish_blocked",
                      "detail": "published with failing rules: " + errors.reindex(blocked["product_id"]).values}),
        pd.DataFrame({"product_id": ready["product_id"], "rule": "launch_ready",
                      "detail": "all launch checklist rules pass"}),
    ])
    derived["severity"] = derived["rule"].map(rules.severity)
    report = pd.concat([raw, derived], ignore_index=True).merge(
        products[["product_id", "sku", "category_root"]], on="product_id")
    owners = rules.owners
    report["owner"] = [owners.by_rule.get(rule) or owners.by_channel.get(channel) or owners.by_category.get(root)
                       or owners.default for rule, channel, root in
                       zip(report["rule"], report["channel"], report["category_root"], strict=True)]
    return report


def run(warehouse: str, day: date, rules: QualityRules) -> pd.DataFrame:
    """The quality report for `day` from the extraction tables in `warehouse`."""
    with duckdb.connect(warehouse, read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        changes = con.execute("SELECT * FROM plytix_product_changes").df()
        images = con.execute("SELECT * FROM photoshelter_image_changes").df()
        categories = con.execute("SELECT id, path FROM plytix_categories").df()
        deleted = {r[0] for r in con.execute(
            "SELECT id FROM plytix_deletions WHERE detected_at < ?", [day + timedelta(days=1)]).fetchall()}
    for frame in (changes, images):
        frame["partition_date"] = pd.to_datetime(frame["partition_date"])
    products = snapshot(changes, categories, deleted, day)
    joined = product_images(products, images_as_of(images, day), day)
    facts = image_facts(joined, day, rules.images.expiring_within_days)
    return findings(products, facts, rules)
