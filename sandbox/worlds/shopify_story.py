"""One Shopify order's story: what was bought, how it was paid, how far its fulfillment got, and
whether it carries a planted case. Every instant is whole epoch seconds at or before the anchor.

Speed matters here (50 000 orders at 100 000 products): draws come from one numpy block per chunk
(a row of uniforms per record, read through `Draws`), instants are ints and money is integer cents, and rows are
tuples in `COLUMNS` order. The inserter turns ints into TIMESTAMPs and cent strings into DECIMALs.

Ids follow Shopify's shapes: orders around 6.2e12, line items and inventory items above 2^53 as in
the webhook samples, so a client that parses ids as floats is caught.
"""

from __future__ import annotations

import json
from collections.abc import Callable

CUSTOMER_BASE = 7410289900000
ORDER_BASE = 6214737500000
LINE_ITEM_BASE = 487817672276000000  # above 2^53
FULFILLMENT_BASE = 5398765400000
EVENT_BASE = 4123456700000
TRANSACTION_BASE = 7812345600000
REFUND_BASE = 948573600000
RETURN_BASE = 11883900000
CHECKOUT_BASE = 3701234500000
CHECKOUT_LINE_BASE = 52011223300000
LOCATION_BASE = 76543210986
INVENTORY_ITEM_BASE = 271878346596000000  # above 2^53
VARIANT_BASE = 45678901200000
PRODUCT_BASE = 8790123400000
SHOP_ID = 64512345678
DRAWS_PER_RECORD = 64

COLUMNS = {
    "shopify_orders": (
        "id", "seq", "number", "name", "email", "customer_id", "created_at", "processed_at", "updated_at", "closed_at",
        "cancelled_at", "cancel_reason", "test", "tags", "financial_status", "fulfillment_status", "return_status",
        "presentment_currency", "presentment_rate", "subtotal", "shipping", "tax", "total", "total_refunded",
        "total_outstanding", "risk_level", "risk_recommendation", "risk_assessments", "gateway", "discount_codes",
        "ship_first_name", "ship_last_name", "ship_address1", "ship_city", "ship_province", "ship_province_code",
        "ship_country", "ship_country_code", "ship_zip", "address_validation"),
    "shopify_line_items": ("id", "order_id", "pos", "product_seq", "quantity", "unit_price"),
    "shopify_fulfillments": (
        "id", "order_id", "pos", "name", "status", "display_status", "created_at", "updated_at", "in_transit_at",
        "delivered_at", "estimated_delivery_at", "tracking_company", "tracking_number", "tracking_url", "location_id"),
    "shopify_fulfillment_events": (
        "id", "fulfillment_id", "order_id", "status", "happened_at", "created_at", "message", "city", "province",
        "country", "zip", "estimated_delivery_at"),
    "shopify_transactions": ("id", "order_id", "parent_id", "kind", "status", "error_code", "gateway", "created_at",
                             "processed_at", "test", "amount"),
    "shopify_refunds": ("id", "order_id", "return_id", "created_at", "note", "amount"),
    "shopify_returns": ("id", "order_id", "name", "status", "created_at", "closed_at", "total_quantity",
                        "decline_reason", "decline_note"),
    "shopify_checkouts": ("id", "token", "created_at", "updated_at", "completed_at", "customer_id", "email",
                          "discount_codes", "subtotal", "tax", "total", "gateway", "after_failed_payment"),
    "shopify_checkout_line_items": ("id", "checkout_id", "pos", "product_seq", "quantity", "unit_price"),
}
ORDER_TABLES = ("shopify_orders", "shopify_line_items", "shopify_fulfillments", "shopify_fulfillment_events",
                "shopify_transactions", "shopify_refunds", "shopify_returns")
CASES = ("high_risk", "payment_pending", "large", "declined_payment", "returned", "fulfillment_exception",
         "address_review", "abandoned_after_failed_payment")
FULFILLED_CASES = (None, "large", "declined_payment", "returned", "fulfillment_exception")
MINUTE, HOUR, DAY = 60, 3600, 86400
# The youngest an order of each case can be so that its whole story fits before the anchor.
MIN_AGE_S = {"returned": 11 * DAY, "fulfillment_exception": int(3.5 * DAY)}
EXCEPTIONS = ("DELAYED", "ATTEMPTED_DELIVERY", "FAILURE")
EVENT_MESSAGES = {"DELAYED": "Shipment delayed due to weather", "FAILURE": "Package damaged in transit",
                  "ATTEMPTED_DELIVERY": "Delivery attempted, no one available", "IN_TRANSIT": "Departed facility"}
DECLINES = (("FAILURE", "CARD_DECLINED"), ("FAILURE", "CARD_DECLINED"), ("FAILURE", "EXPIRED_CARD"),
            ("FAILURE", "INCORRECT_CVC"), ("ERROR", "PROCESSING_ERROR"))
FIRST_NAMES = ("Dana", "Lee", "Sam", "Ava", "Noah", "Maya", "Kofi", "Ines", "Yuki", "Omar", "Lena", "Ravi",
               "Chloe", "Mateo", "Zara", "Finn")
LAST_NAMES = ("Whitfield", "Okafor", "Lindqvist", "Moreau", "Tanaka", "Haddad", "Novak", "Reyes", "Patel",
              "Schmidt", "Osei", "Kowalski", "Murphy", "Silva")
# (city, province, province code, country, country code, zip)
ADDRESSES = (("Portland", "Oregon", "OR", "United States", "US", "97209"),
             ("Louisville", "Kentucky", "KY", "United States", "US", "40209"),
             ("Austin", "Texas", "TX", "United States", "US", "73301"),
             ("Brooklyn", "New York", "NY", "United States", "US", "11201"),
             ("Toronto", "Ontario", "ON", "Canada", "CA", "M5V 2T6"),
             ("Vancouver", "British Columbia", "BC", "Canada", "CA", "V6B 1A1"))
STREETS = ("Oak St", "Pine St", "Main St", "Elm St", "Cedar Ave")
CARRIERS = (("UPS", "1Z999AA1{:010d}", "https://www.ups.com/track?tracknum={}"),
            ("USPS", "9400111{:015d}", "https://tools.usps.com/go/TrackConfirmAction?tLabels={}"),
            ("FedEx", "7{:011d}", "https://www.fedex.com/fedextrack/?trknbr={}"))
# (name, active, street, city, province, country, zip)
LOCATIONS = (("Portland Warehouse", True, "2200 NW Front Ave", "Portland", "Oregon", "US", "97209"),
             ("Louisville DC", True, "4501 Produce Rd", "Louisville", "Kentucky", "US", "40218"),
             ("Toronto Store", True, "381 Queen St W", "Toronto", "Ontario", "CA", "M5V 2A5"),
             ("Closed Pop-up", False, "88 Market St", "San Francisco", "California", "US", "94105"))
RETURN_NOTES = ("Damaged on arrival", "Wrong size", "Not as pictured", "Changed my mind")
PRICES_CENTS = tuple(p * 100 + 99 for p in (19, 29, 39, 49, 59, 79, 89, 119, 149, 189, 239))
FREE_SHIPPING_FROM, SHIPPING_CENTS = 10_000, 995
DECLINE_NOTE = "As discussed on the phone, the 30-day return window has ended."


def _assessment(level: str, provider: str | None, facts: list[tuple[str, str]]) -> str:
    return json.dumps([{"riskLevel": level, "provider": provider,
                        "facts": [{"description": d, "sentiment": s} for d, s in facts]}])


RISKS = {  # (risk level, recommendation, assessments JSON) rendered once
    "none": ("NONE", "NONE", "[]"),
    "low": ("LOW", "ACCEPT", _assessment("LOW", None, [("Payment passed CVV and address checks", "POSITIVE")])),
    "low_app": ("LOW", "ACCEPT", _assessment("LOW", "Signifyd", [("Guaranteed by Signifyd", "POSITIVE")])),
    "medium": ("MEDIUM", "INVESTIGATE", _assessment("MEDIUM", None, [("Order placed from a new device", "NEUTRAL")])),
    "high": ("HIGH", "CANCEL", _assessment("HIGH", None, [
        ("Card verification value (CVV) doesn't match", "NEGATIVE"),
        ("Billing and shipping addresses are in different countries", "NEGATIVE")])),
    "high_investigate": ("HIGH", "INVESTIGATE", _assessment("HIGH", None, [
        ("Too many payment attempts", "NEGATIVE")])),
}


def cents(value: int) -> str:
    return f"{value // 100}.{value % 100:02d}"


def tax_of(subtotal: int) -> int:
    return (subtotal * 8 + 50) // 100  # 8 %, rounded half up


# A record's draws: `d = iter(row).__next__` over its row of uniforms in [0, 1), read in order.
Draws = Callable[[], float]


def below(d: Draws, n: int) -> int:
    return int(d() * n)


def pick(d: Draws, seq):
    return seq[int(d() * len(seq))]


def between(d: Draws, lo: float, hi: float) -> float:
    return lo + (hi - lo) * d()


class World:
    """What every story needs to know about the world."""

    def __init__(self, gen, now_s: int, n_customers: int):
        o = gen.o
        self.gen, self.o, self.n, self.now = gen, o, gen.n, now_s
        self.n_customers = n_customers
        self.history_s = o.history_days * DAY
        self.threshold_cents = int(round(o.shopify_large_order_threshold * 100))
        self.shares = [(case, getattr(o, f"share_shopify_{case}")) for case in CASES]

    def price(self, seq: int) -> int:
        """A style's price in cents, the same for its sizes (a hash of seed and style, no draw)."""
        style = seq // 4
        return PRICES_CENTS[((style * 2654435761) ^ (self.o.seed * 40503)) % len(PRICES_CENTS)]

    def sellable(self, seq: int) -> int:
        """A style's parent is not sold; its first size is."""
        return seq + 1 if seq % 4 == 0 and seq + 1 < self.n else seq


def tell(world: World, i: int, d: Draws, out: dict[str, list], checkouts: list) -> None:
    """Append order `i`'s rows to `out` (table -> tuples); a planted failed payment adds to `checkouts`."""
    now, oid = world.now, ORDER_BASE + i
    roll, case = d(), None
    for name, share in world.shares:
        if roll < share:
            case = name
            break
        roll -= share
    youngest = MIN_AGE_S.get(case, 0) + MINUTE
    created = now - int(between(d, youngest, max(world.history_s, youngest + HOUR)))
    customer = None if d() < 0.05 else CUSTOMER_BASE + below(d, world.n_customers)
    lines = _lines(world, d, case)
    subtotal = sum(p * q for _, q, p in lines)
    shipping = 0 if subtotal >= FREE_SHIPPING_FROM else SHIPPING_CENTS
    tax = tax_of(subtotal)
    total = subtotal + shipping + tax
    first, last, where = pick(d, FIRST_NAMES), pick(d, LAST_NAMES), pick(d, ADDRESSES)
    street = f"{10 + below(d, 9990)} {pick(d, STREETS)}"
    test, eur = d() < 0.005, d() < 0.12
    tags = [t for t, share in (("gift", 0.12), ("wholesale", 0.04), ("subscription", 0.06)) if d() < share]
    codes = ["WELCOME10"] if d() < 0.05 else []
    gateway = "paypal" if d() < 0.15 else "shopify_payments"
    risk = RISKS[_risk(d, case)]
    validation = ("WARNING" if d() < 0.5 else "ERROR") if case == "address_review" else "NO_ISSUES"
    name = f"#{1001 + i}"
    state = {"financial": "PAID", "fulfillment": "UNFULFILLED", "returned": "NO_RETURN", "closed": None,
             "cancelled": None, "reason": None, "refunded": 0, "outstanding": 0, "gateway": gateway,
             "stamps": [created]}
    for pos, (seq, qty, price) in enumerate(lines):
        out["shopify_line_items"].append((LINE_ITEM_BASE + i * 8 + pos, oid, pos, seq, qty, cents(price)))
    _payment(world, i, d, case, created, total, test, state, out)
    if state.pop("left_checkout", False):
        checkouts.append((customer, None if customer else f"{first}.{last}{i}@example.com".lower(),
                          state["cancelled"] + 60 + below(d, 1800), [(s, q, p) for s, q, p in lines]))
    delivered = None
    if case in FULFILLED_CASES:
        delivered = _fulfil(world, i, d, case, created, name, state, out)
    if case == "returned" and delivered:
        _return(world, i, d, delivered, lines[0], total, name, state, out)
    _cancel_some(world, i, d, case, created, total, test, state, out)
    out["shopify_orders"].append((
        oid, i, 1001 + i, name, None if customer else f"{first}.{last}{i}@example.com".lower(), customer,
        created, created - 1, max(s for s in state["stamps"] if s is not None), state["closed"], state["cancelled"],
        state["reason"], test, tags, state["financial"], state["fulfillment"], state["returned"],
        "EUR" if eur else "USD", "0.9260" if eur else "1", cents(subtotal), cents(shipping), cents(tax), cents(total),
        cents(state["refunded"]), cents(state["outstanding"]), risk[0], risk[1], risk[2], state["gateway"], codes,
        first, last, street, *where[:6], validation))


def _lines(world: World, d: Draws, case: str | None) -> list[tuple[int, int, int]]:
    count = 1 + (d() < 0.45) + (d() < 0.15)
    lines = []
    for _ in range(count):
        seq = world.sellable(below(d, world.n))
        lines.append((seq, 1 + (d() < 0.15), world.price(seq)))
    if case == "large":  # enough units of the first line to pass the threshold
        seq, _, price = lines[0]
        lines[0] = (seq, world.threshold_cents // price + 1 + below(d, 4), price)
    else:  # everything else stays clear of it
        while len(lines) > 1 and (sum(p * q for _, q, p in lines) * 108) // 100 + SHIPPING_CENTS >= world.threshold_cents:
            lines.pop()
    return lines


def _risk(d: Draws, case: str | None) -> str:
    roll = d()
    if case == "high_risk":
        return "high" if roll < 0.7 else "high_investigate"
    if roll < 0.1:
        return "none"
    if roll < 0.15:
        return "medium"  # worth a look, not a planted case
    return "low_app" if roll < 0.25 else "low"


def _txn(i: int, k: int, kind: str, status: str, at: int, amount: int, test: bool, state: dict, out: dict,
         error: str | None = None, parent: int | None = None) -> None:
    out["shopify_transactions"].append((TRANSACTION_BASE + i * 8 + k, ORDER_BASE + i, parent, kind, status, error,
                                        state["gateway"], at, at, test, cents(amount)))
    state["stamps"].append(at)


def _payment(world: World, i: int, d: Draws, case, created: int, total: int, test: bool, state: dict,
             out: dict) -> None:
    if case == "payment_pending":
        state.update(financial="PENDING", outstanding=total, gateway="bank_deposit")
        _txn(i, 0, "SALE", "PENDING", created, total, test, state, out)
        return
    if case in ("declined_payment", "abandoned_after_failed_payment"):
        status, code = pick(d, DECLINES) if case == "declined_payment" else ("FAILURE", "CARD_DECLINED")
        state["gateway"] = "shopify_payments"
        _txn(i, 0, "SALE", status, created - 60 - below(d, 540), total, test, state, out, code)
        if case == "abandoned_after_failed_payment":
            cancelled = min(world.now, created + 300 + below(d, 1500))
            state.update(financial="VOIDED", cancelled=cancelled, closed=cancelled, reason="DECLINED",
                         left_checkout=True)
            state["stamps"].append(cancelled)
            return
    _txn(i, 1, "SALE", "SUCCESS", created - 20, total, test, state, out)


def _cancel_some(world: World, i: int, d: Draws, case, created: int, total: int, test: bool, state: dict,
                 out: dict) -> None:
    """A few plain cancellations: refunded in full, never fulfilled."""
    if case is not None or state["fulfillment"] != "UNFULFILLED" or d() >= 0.02:
        return
    at = min(world.now - 1, created + int(between(d, HOUR, 20 * HOUR)))
    _txn(i, 2, "REFUND", "SUCCESS", at, total, test, state, out, parent=TRANSACTION_BASE + i * 8 + 1)
    state.update(cancelled=at, closed=at, reason="CUSTOMER", financial="REFUNDED", refunded=total)
    state["stamps"].append(at)


def _fulfil(world: World, i: int, d: Draws, case, created: int, name: str, state: dict, out: dict) -> int | None:
    """One fulfillment whose tracking events got as far as the order's age allows; returns when it was delivered."""
    now = world.now
    start = created + int(between(d, 2 * HOUR, 20 * HOUR))
    if start > now - MINUTE:
        return None  # too young to have shipped
    carrier, number_format, url_format = pick(d, CARRIERS)
    number = number_format.format(i)
    fid = FULFILLMENT_BASE + i * 4
    estimate = (start + 3 * DAY) // DAY * DAY + DAY - 1  # end of the third day
    plan = [("CONFIRMED", start, None), ("IN_TRANSIT", start + int(between(d, 6 * HOUR, 18 * HOUR)), estimate)]
    if case == "fulfillment_exception":
        plan.append((pick(d, EXCEPTIONS), start + int(between(d, 30 * HOUR, 60 * HOUR)), estimate + 2 * DAY))
    else:
        out_at = start + int(between(d, 48 * HOUR, 60 * HOUR))
        plan += [("OUT_FOR_DELIVERY", out_at, estimate), ("DELIVERED", out_at + int(between(d, 2 * HOUR, 8 * HOUR)), None)]
    where = pick(d, ADDRESSES)
    last, seen = None, {}
    for k, (status, happened, eta) in enumerate(plan):
        recorded = happened + 10 + below(d, 110)
        if recorded > now:
            break
        hub = status not in ("CONFIRMED", "DELIVERED")
        out["shopify_fulfillment_events"].append((
            EVENT_BASE + i * 16 + k, fid, ORDER_BASE + i, status, happened, recorded, EVENT_MESSAGES.get(status),
            where[0] if hub else None, where[1] if hub else None, where[3] if hub else None,
            where[5] if hub else None, eta))
        last, seen[status] = (status, recorded, eta), happened
    updated = last[1] if last else start
    out["shopify_fulfillments"].append((
        fid, ORDER_BASE + i, 0, f"{name}.1", "SUCCESS", last[0] if last else "FULFILLED", start, updated,
        seen.get("IN_TRANSIT"), seen.get("DELIVERED"), last[2] if last else None, carrier, number,
        url_format.format(number), LOCATION_BASE + below(d, 2)))
    state["fulfillment"] = "FULFILLED"
    state["stamps"].append(updated)
    delivered = seen.get("DELIVERED")
    if delivered and case is None and d() < 0.5 and delivered + DAY <= now:
        state["closed"] = delivered + DAY  # archived a day after delivery
        state["stamps"].append(state["closed"])
    return delivered


def _return(world: World, i: int, d: Draws, delivered: int, line: tuple[int, int, int], total: int, name: str,
            state: dict, out: dict) -> None:
    requested = delivered + int(between(d, DAY, 4 * DAY))
    status = pick(d, ("CLOSED", "CLOSED", "OPEN", "REQUESTED", "DECLINED"))
    closed = requested + int(between(d, 2 * DAY, 4 * DAY))
    if status == "CLOSED" and closed > world.now:
        status = "OPEN"
    _, qty, price = line
    rid = RETURN_BASE + i * 2
    decline = pick(d, ("RETURN_PERIOD_ENDED", "FINAL_SALE", "OTHER")) if status == "DECLINED" else None
    out["shopify_returns"].append((rid, ORDER_BASE + i, f"{name}-R1", status, requested,
                                   closed if status == "CLOSED" else None, qty, decline,
                                   DECLINE_NOTE if decline else None))
    state["stamps"] += [requested, closed if status == "CLOSED" else None]
    state["returned"] = {"CLOSED": "RETURNED", "OPEN": "IN_PROGRESS", "REQUESTED": "RETURN_REQUESTED",
                         "DECLINED": "NO_RETURN"}[status]
    if status != "CLOSED":
        return
    amount = price * qty
    out["shopify_refunds"].append((REFUND_BASE + i * 2, ORDER_BASE + i, rid, closed - 3, pick(d, RETURN_NOTES),
                                   cents(amount)))
    _txn(i, 3, "REFUND", "SUCCESS", closed - 3, amount, False, state, out, parent=TRANSACTION_BASE + i * 8 + 1)
    state.update(refunded=amount, financial="REFUNDED" if amount >= total else "PARTIALLY_REFUNDED")
    if state["closed"] is None:
        state["closed"] = closed


def checkout(world: World, j: int, d: Draws, planted: tuple | None, out: dict[str, list]) -> None:
    """Abandoned checkout `j`; `planted` is (customer, email, created, lines) left after a declined card."""
    now, cid = world.now, CHECKOUT_BASE + j
    if planted:
        customer, email, created, picks = planted
    else:
        created = now - int(between(d, 10 * MINUTE, world.history_s))
        known = d() < 0.7
        customer = CUSTOMER_BASE + below(d, world.n_customers) if known else None
        email = None if known else f"guest{j}@example.com"
        picks = []
        for _ in range(1 + (d() < 0.4) + (d() < 0.1)):
            seq = world.sellable(below(d, world.n))
            picks.append((seq, 1 + (d() < 0.2), world.price(seq)))
    created = min(created, now - 2 * MINUTE)
    updated = min(created + MINUTE + below(d, 1740), now - MINUTE)
    completed = None
    if not planted and d() < 0.12:
        recovered = updated + int(between(d, HOUR, 48 * HOUR))
        completed = recovered if recovered <= now else None
    codes = ["WELCOME10"] if d() < 0.2 else []
    subtotal = sum(p * q for _, q, p in picks)
    if codes:
        subtotal = (subtotal * 9 + 5) // 10
    tax = tax_of(subtotal)
    token = "".join(f"{int(d() * 2**32):08x}" for _ in range(4))
    out["shopify_checkouts"].append((
        cid, token, created, max(updated, completed or 0), completed, customer, email, codes, cents(subtotal),
        cents(tax), cents(subtotal + tax), "shopify_payments" if planted else None, planted is not None))
    for pos, (seq, qty, price) in enumerate(picks):
        out["shopify_checkout_line_items"].append((CHECKOUT_LINE_BASE + j * 8 + pos, cid, pos, seq, qty,
                                                   cents(price)))
