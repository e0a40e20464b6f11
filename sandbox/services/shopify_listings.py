"""The connections the sandbox serves, as SQL listings: their tables, sort keys and the search fields
shopify.md §6 names (`orders`: updated_at created_at id status financial_status fulfillment_status
risk_level return_status tag tag_not test; `abandonedCheckouts`: updated_at created_at status
recovery_state; `inventoryLevels`: updated_at inventory_item_id). A sort key the sandbox does not
emulate falls back to the connection's default.
"""

from __future__ import annotations

from sandbox.services.shopify_search import (
    Listing,
    bool_field,
    enum_field,
    number_field,
    tag_field,
    timestamp_field,
)

ORDERS = Listing(
    "shopify_orders t",
    {"ID": ("t.id", "int"), "UPDATED_AT": ("t.updated_at", "ts"), "CREATED_AT": ("t.created_at", "ts"),
     "PROCESSED_AT": ("t.processed_at", "ts"), "ORDER_NUMBER": ("t.number", "int"), "TOTAL_PRICE": ("t.total", "num"),
     "CURRENT_TOTAL_PRICE": ("(t.total - t.total_refunded)", "num"), "FINANCIAL_STATUS": ("t.financial_status", "str"),
     "FULFILLMENT_STATUS": ("t.fulfillment_status", "str")},
    fields={
        "updated_at": timestamp_field("t.updated_at"), "created_at": timestamp_field("t.created_at"),
        "processed_at": timestamp_field("t.processed_at"), "id": number_field("t.id"),
        "status": enum_field({"open": "t.closed_at IS NULL AND t.cancelled_at IS NULL",
                              "closed": "t.closed_at IS NOT NULL", "cancelled": "t.cancelled_at IS NOT NULL",
                              "not_closed": "t.closed_at IS NULL", "any": "TRUE"}),
        "financial_status": enum_field({}, "t.financial_status"),
        "fulfillment_status": enum_field({"shipped": "t.fulfillment_status = 'FULFILLED'",
                                          "unshipped": "t.fulfillment_status = 'UNFULFILLED'",
                                          "partial": "t.fulfillment_status = 'PARTIALLY_FULFILLED'"},
                                         "t.fulfillment_status"),
        "risk_level": enum_field({}, "t.risk_level"), "return_status": enum_field({}, "t.return_status"),
        "tag": tag_field("t.tags"), "tag_not": tag_field("t.tags", negate=True), "test": bool_field("t.test"),
    },
    free_text=lambda text: ("(t.name = ? OR t.name = ? OR lower(t.email) = lower(?))", [text, f"#{text}", text]),
)
CHECKOUTS = Listing(
    "shopify_checkouts t",
    {"ID": ("t.id", "int"), "CHECKOUT_ID": ("t.id", "int"), "CREATED_AT": ("t.created_at", "ts"),
     "TOTAL_PRICE": ("t.total", "num")},
    fields={"updated_at": timestamp_field("t.updated_at"), "created_at": timestamp_field("t.created_at"),
            "status": enum_field({"open": "t.completed_at IS NULL", "closed": "t.completed_at IS NOT NULL"}),
            "recovery_state": enum_field({"recovered": "t.completed_at IS NOT NULL",
                                          "not_recovered": "t.completed_at IS NULL"})},
)
LOCATIONS = Listing("shopify_locations t", {"ID": ("t.id", "int"), "NAME": ("t.name", "str")},
                    fields={"name": enum_field({}, "upper(t.name)")})
LEVEL_FIELDS = {"updated_at": timestamp_field("t.updated_at"), "inventory_item_id": number_field("t.item_id")}
# The same levels keyed per location (id = item) or per item (id = location).
LEVELS_BY_LOCATION = Listing("(SELECT item_id AS id, * FROM shopify_inventory_levels) t", {"ID": ("t.id", "int")},
                             fields=LEVEL_FIELDS)
LEVELS_BY_ITEM = Listing("(SELECT location_id AS id, * FROM shopify_inventory_levels) t", {"ID": ("t.id", "int")},
                         fields=LEVEL_FIELDS)
CUSTOMERS = Listing(
    "shopify_customers t",
    {"ID": ("t.id", "int"), "UPDATED_AT": ("t.updated_at", "ts"), "CREATED_AT": ("t.created_at", "ts"),
     "NAME": ("(t.first_name || ' ' || t.last_name)", "str")},
    fields={"updated_at": timestamp_field("t.updated_at"), "created_at": timestamp_field("t.created_at"),
            "tag": tag_field("t.tags"), "tag_not": tag_field("t.tags", negate=True), "id": number_field("t.id"),
            "email": enum_field({}, "upper(t.email)")},
)
CHILDREN = {  # nested connections: (table, parent key, listing)
    "events": ("shopify_fulfillment_events", "fulfillment_id",
               Listing("shopify_fulfillment_events t", {"ID": ("t.id", "int"),
                                                        "HAPPENED_AT": ("t.happened_at", "ts")})),
    "returns": ("shopify_returns", "order_id", Listing("shopify_returns t", {"ID": ("t.id", "int")})),
    "lineItems": ("shopify_line_items", "order_id", Listing("shopify_line_items t", {"ID": ("t.id", "int")})),
    "checkoutLineItems": ("shopify_checkout_line_items", "checkout_id",
                          Listing("shopify_checkout_line_items t", {"ID": ("t.id", "int")})),
}
