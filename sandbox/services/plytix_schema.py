"""Plytix's attribute definitions, filter grammar and search-to-SQL translation (plytix.md §4.1, §4.6).

Pure functions: the routes module feeds them a request body and runs the SQL they return, with every
user value passed as a parameter. Field expressions are taken only from the fixed tables below, so
no request text ever becomes SQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sandbox import taxonomy

TEXT_OPS = ("exists", "!exists", "eq", "!eq", "like", "in", "!in", "text_search")
DROPDOWN_OPS = ("exists", "!exists", "eq", "!eq", "in", "!in")
DATE_OPS = ("exists", "!exists", "eq", "gt", "gte", "lt", "lte")
MULTI_OPS = ("exists", "!exists", "in", "!in")
MEDIA_OPS = ("exists", "!exists")


@dataclass(frozen=True)
class AttributeDef:
    label: str
    name: str
    type_class: str
    options: tuple[str, ...] = ()
    id: str = ""

    @property
    def operators(self) -> tuple[str, ...]:
        return {
            "DropdownAttribute": DROPDOWN_OPS, "MultiSelectAttribute": MULTI_OPS, "DateAttribute": DATE_OPS,
            "MediaAttribute": MEDIA_OPS, "MediaGalleryAttribute": MEDIA_OPS,
        }.get(self.type_class, TEXT_OPS)


def _attr(i: int, label: str, name: str, type_class: str, options=()) -> AttributeDef:
    return AttributeDef(label, name, type_class, tuple(options), f"5c6c072df7195104{i:08x}")


ATTRIBUTES: dict[str, AttributeDef] = {a.label: a for a in [
    _attr(1, "workflow_stage", "Workflow Stage", "DropdownAttribute", taxonomy.WORKFLOW_STAGES),
    _attr(2, "style_code", "Style Code", "TextAttribute"),
    _attr(3, "product_family", "Product Family", "DropdownAttribute", taxonomy.FAMILIES),
    _attr(4, "hero_image", "Hero Image", "MediaAttribute"),
    _attr(5, "alternate_images", "Alternate Images", "MediaGalleryAttribute"),
    _attr(6, "image_approval_status", "Image Approval Status", "DropdownAttribute",
          ("Pending", "Approved", "Rejected", "Expired")),
    _attr(7, "usage_rights_channels", "Usage Rights Channels", "MultiSelectAttribute", taxonomy.CHANNELS),
    _attr(8, "usage_rights_market", "Usage Rights Market", "DropdownAttribute", taxonomy.MARKETS),
    _attr(9, "license_expiration_date", "License Expiration Date", "DateAttribute"),
    _attr(10, "brand", "Brand", "DropdownAttribute", taxonomy.BRANDS),
    _attr(11, "color", "Color", "TextAttribute"),
    _attr(12, "size", "Size", "TextAttribute"),
    _attr(13, "material", "Material", "DropdownAttribute", ("Cotton", "Wool", "Recycled polyester", "Linen")),
    _attr(14, "sales_channels", "Sales Channels", "MultiSelectAttribute", taxonomy.CHANNELS),
    _attr(15, "description", "Description", "TextAreaAttribute"),
    _attr(16, "description_de", "Description (de-DE)", "TextAreaAttribute"),
    _attr(17, "description_fr", "Description (fr-FR)", "TextAreaAttribute"),
    _attr(18, "marketplace_title", "Marketplace Title", "TextAttribute"),
    _attr(19, "launch_date", "Launch Date", "DateAttribute"),
]}
MEDIA_LABELS = {"thumbnail"} | {a.label for a in ATTRIBUTES.values() if a.type_class.startswith("Media")}

# Top-level product properties: SQL expression over `products` and allowed operators.
PRODUCT_PROPERTIES: dict[str, tuple[str, tuple[str, ...], str]] = {
    # field: (sql expression, operators, kind)
    "id": ("id", TEXT_OPS, "text"),
    "sku": ("sku", TEXT_OPS, "text"),
    "label": ("label", TEXT_OPS, "text"),
    "status": ("status", ("eq", "in", "!in"), "text"),
    "modified": ("modified", DATE_OPS, "date"),
    "created": ("created", DATE_OPS, "date"),
    "categories": ("categories", MULTI_OPS, "list"),
    "thumbnail": ("thumbnail", MEDIA_OPS, "text"),
    "gtin": ("NULL", TEXT_OPS, "text"),
    "num_variations": ("num_variations", ("eq", "gt", "gte", "lt", "lte"), "number"),
    "product_family_id": ("product_family_id", TEXT_OPS, "text"),
    "_is_variation": ("(parent_id IS NOT NULL)", ("eq",), "bool"),
}
# Fields a search may request that are not filterable columns of their own.
EXTRA_PRODUCT_FIELDS = {"assets", "product_type", "product_level", "product_family_model_id", "overwritten_attributes",
                        "relationships", "_parent_id"}

ASSET_PROPERTIES: dict[str, tuple[str, tuple[str, ...], str]] = {
    "id": ("id", TEXT_OPS, "text"),
    "filename": ("filename", TEXT_OPS, "text"),
    "status": ("'ACTIVE'", ("eq", "in", "!in"), "text"),
    "file_type": ("'IMAGES'", ("eq", "in", "!in"), "text"),
    "assigned": ("assigned", ("eq",), "bool"),
    "file_size": ("file_size", ("eq", "gt", "gte", "lt", "lte"), "number"),
    "categories": ("[]::VARCHAR[]", MULTI_OPS, "list"),
    "extension": ("'jpg'", ("eq", "in", "!in"), "text"),
    "created": ("created", DATE_OPS, "date"),
    "modified": ("modified", DATE_OPS, "date"),
}
CATEGORY_PROPERTIES: dict[str, tuple[str, tuple[str, ...], str]] = {
    "id": ("id", TEXT_OPS, "text"),
    "name": ("name", TEXT_OPS, "text"),
    "slug": ("slug", TEXT_OPS, "text"),
    "modified": ("modified", DATE_OPS, "date"),
    "n_children": ("n_children", ("eq", "gt", "gte", "lt", "lte"), "number"),
    "parents_ids": ("parents_ids", MULTI_OPS, "list"),
    "path": ("path", MULTI_OPS, "list"),
}


class SearchError(Exception):
    """A request the real service rejects: carries the status and the `errors` list to render."""

    def __init__(self, status: int, errors: list[dict] | None, msg: str):
        super().__init__(msg)
        self.status, self.errors, self.msg = status, errors, msg


def unknown_field(name: str) -> SearchError:
    return SearchError(422, [{"field": name, "msg": "unknown field"},
                             {"field": "filters", "msg": "Unable to decode filters properly"}],
                       "Schema validation error")


def product_field(name: str) -> tuple[str, tuple[str, ...], str]:
    """SQL expression, operators and kind for a filterable product field (property or attribute)."""
    if name in PRODUCT_PROPERTIES:
        return PRODUCT_PROPERTIES[name]
    if name.startswith("attributes."):
        attr = ATTRIBUTES.get(name.removeprefix("attributes."))
        if attr:
            path = f"'$.{attr.label}'"
            if attr.type_class == "MultiSelectAttribute":
                return f"CAST(json_extract(attributes, {path}) AS VARCHAR[])", attr.operators, "list"
            if attr.type_class == "MediaGalleryAttribute":
                return f"json_extract(attributes, {path})", attr.operators, "json"
            kind = "date" if attr.type_class == "DateAttribute" else "text"
            return f"json_extract_string(attributes, {path})", attr.operators, kind
    raise unknown_field(name)


def parse_when(value: Any) -> datetime:
    """`YYYY-MM-DD` (the docs) or an ISO datetime with offset (accepted, compared in UTC)."""
    if not isinstance(value, str):
        raise SearchError(422, [{"field": "value", "msg": "Not a valid datetime."}], "Schema validation error")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise SearchError(422, [{"field": "value", "msg": "Not a valid datetime."}], "Schema validation error") from None
    if parsed.tzinfo:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


def _condition(expr: str, op: str, value: Any, kind: str, params: list) -> str:
    if op in ("exists", "!exists"):
        present = f"({expr} IS NOT NULL AND len({expr}) > 0)" if kind in ("list", "json") else f"({expr} IS NOT NULL)"
        return present if op == "exists" else f"NOT {present}"
    if kind == "date" and op in ("eq", "gt", "gte", "lt", "lte"):
        when = parse_when(value)
        column = f"CAST({expr} AS TIMESTAMP)"
        if op == "eq" and len(str(value)) == 10:  # a bare date means that whole day
            params += [when, when + timedelta(days=1)]
            return f"({column} >= ? AND {column} < ?)"
        params.append(when)
        return f"{column} {({'eq': '=', 'gt': '>', 'gte': '>=', 'lt': '<', 'lte': '<='})[op]} ?"
    if kind == "number":
        params.append(value)
        return f"{expr} {({'eq': '=', 'gt': '>', 'gte': '>=', 'lt': '<', 'lte': '<='})[op]} ?"
    if kind == "bool":
        params.append(bool(value))
        return f"{expr} = ?"
    if op in ("in", "!in"):
        values = value if isinstance(value, list) else [value]
        params.append([str(v) for v in values])
        test = f"list_has_any({expr}, ?)" if kind == "list" else f"list_contains(?, {expr})"
        return f"coalesce({test}, false)" if op == "in" else f"NOT coalesce({test}, false)"
    if op in ("eq", "!eq"):  # text eq ignores case (doc)
        params.append(str(value))
        test = f"lower({expr}) = lower(?)"
        return f"coalesce({test}, false)" if op == "eq" else f"NOT coalesce({test}, false)"
    if op in ("like", "text_search"):
        params.append(str(value))
        return f"coalesce(contains(lower({expr}), lower(?)), false)"
    raise unknown_field(op)


def where_clause(filters: Any, field_lookup) -> tuple[str, list]:
    """The outer list is OR, inner lists AND, `[]` matches everything."""
    if filters in (None, []):
        return "TRUE", []
    if not isinstance(filters, list) or not all(isinstance(group, list) for group in filters):
        raise SearchError(422, [{"field": "filters", "msg": "Unable to decode filters properly"}], "Schema validation error")
    params: list = []
    ors = []
    for group in filters:
        ands = []
        for item in group:
            if not isinstance(item, dict) or "field" not in item or "operator" not in item:
                raise SearchError(422, [{"field": "filters", "msg": "Unable to decode filters properly"}],
                                  "Schema validation error")
            expr, operators, kind = field_lookup(str(item["field"]))
            if item["operator"] not in operators:
                raise unknown_field(str(item["operator"]))
            ands.append(_condition(expr, item["operator"], item.get("value"), kind, params))
        ors.append("(" + (" AND ".join(ands) or "TRUE") + ")")
    return " OR ".join(ors), params


@dataclass
class Paging:
    page: int
    page_size: int
    order: str | None


def parse_paging(body: dict) -> Paging:
    raw = body.get("pagination") or {}
    if not isinstance(raw, dict):
        raise SearchError(422, [{"field": "pagination", "msg": "Not a valid mapping type."}], "Schema validation error")
    page, size, order = raw.get("page", 1), raw.get("page_size", 25), raw.get("order") or None
    if not isinstance(page, int) or page < 1:
        raise SearchError(422, [{"field": "page", "msg": "Must be greater than or equal to 1."}], "Schema validation error")
    if not isinstance(size, int) or size < 1:
        raise SearchError(422, [{"field": "page_size", "msg": "Must be greater than or equal to 1."}], "Schema validation error")
    if size > 100:
        raise SearchError(422, [{"field": "page_size", "msg": "Must be less than or equal to 100."}], "Schema validation error")
    return Paging(page, size, order)


def order_clause(order: str | None, field_lookup) -> str:
    """Sorted by the field, ties broken by insertion order; unsorted means insertion order."""
    if not order:
        return "ORDER BY seq"
    descending = order.startswith("-")
    expr, _, _ = field_lookup(order.lstrip("-"))
    direction = "DESC" if descending else "ASC"
    return f"ORDER BY {expr} {direction} NULLS LAST, seq {direction}"


def requested_fields(body: dict, known) -> list[str]:
    fields = body.get("attributes") or []
    if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
        raise SearchError(422, [{"field": "attributes", "msg": "Not a valid list."}], "Schema validation error")
    counted = [f for f in fields if f not in ("id", "sku")]
    if len(counted) > 50:
        raise SearchError(422, [{"field": "schema", "msg": "columns limit exceeded, current limit is 50"}],
                          "Schema validation error")
    for name in fields:
        known(name)
    return fields


def product_field_known(name: str) -> None:
    if name in EXTRA_PRODUCT_FIELDS:
        return
    product_field(name)
