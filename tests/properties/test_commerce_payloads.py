"""Threekit and Shopify payload helpers (`resources.threekit`, `resources.shopify`,
`resources.shopify_webhooks`): prices are exact Decimals or None and never raise, orders read as the
contract says, a wrong field is refused by name, and a webhook signature check never raises."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from resources.shopify import decimal_money
from resources.shopify_webhooks import shopify_hmac, verify_shopify_hmac
from resources.threekit import STATUSES, Asset, Configuration, Order, format_time, to_decimal, variant_value
from tests.properties.junk import json_values, nasty_text, unicode_text, wrong

moments = st.datetimes(datetime(1971, 1, 1), datetime(2999, 1, 1), timezones=st.just(UTC)).map(
    lambda m: m.replace(microsecond=m.microsecond // 1000 * 1000))
decimal_strings = st.decimals(allow_nan=False, allow_infinity=False, places=2, min_value=-10**9, max_value=10**9).map(str)


@given(value=json_values)
def test_to_decimal_never_raises(value):
    amount = to_decimal(value)
    assert amount is None or (isinstance(amount, Decimal) and amount.is_finite())
    if isinstance(value, int | float) and not isinstance(value, bool) and amount is not None:
        assert amount == Decimal(str(value))


@given(value=json_values)
def test_variant_value_never_raises(value):
    variant_value(value)


@st.composite
def orders(draw) -> dict:
    return {"id": draw(unicode_text.filter(bool)), "shortId": draw(st.none() | unicode_text),
            "name": draw(st.none() | nasty_text), "status": draw(st.sampled_from(STATUSES)),
            "platform": draw(st.none() | st.builds(dict, id=unicode_text, platform=st.just("shopify"))),
            "metadata": draw(st.dictionaries(unicode_text, json_values, max_size=3)),
            "cart": draw(st.lists(st.builds(dict, configurationId=unicode_text.filter(bool), count=st.integers(1, 99)),
                                  max_size=3)),
            "customerId": draw(st.none() | unicode_text), "createdAt": format_time(draw(moments)),
            "updatedAt": format_time(draw(moments))}


@given(raw=orders())
def test_an_order_reads_as_the_contract_says(raw):
    order = Order.from_api(raw)
    assert (order.id, order.status, order.name) == (raw["id"], raw["status"], raw["name"])
    assert [(line.configuration_id, line.count) for line in order.cart] == [
        (line["configurationId"], line["count"]) for line in raw["cart"]]
    assert format_time(order.created_at) == raw["createdAt"] and format_time(order.updated_at) == raw["updatedAt"]


@given(raw=orders(), field=st.sampled_from(["id", "status", "name", "metadata", "platform", "customerId"]),
       value=wrong, drop=st.booleans())
def test_a_wrong_order_field_is_refused_by_name(raw, field, value, drop):
    item = {k: v for k, v in raw.items() if k != field} if drop else {**raw, field: value}
    try:
        Order.from_api(item)
    except ValidationError as error:
        named = {"customerId": "customer_id"}.get(field, field)
        assert all(named in ".".join(map(str, e["loc"])) for e in error.errors())
    except KeyError as error:
        assert error.args == (field,)


@given(amount=decimal_strings, currency=st.sampled_from(["EUR", "USD", "JPY"]), extra=json_values)
def test_money_amounts_become_exact_decimals_at_any_depth(amount, currency, extra):
    money = {"amount": amount, "currencyCode": currency}
    out = decimal_money({"order": {"totals": [money, {"shop": money}], "extra": extra}})
    assert out["order"]["totals"][0] == {"amount": Decimal(amount), "currencyCode": currency}
    assert out["order"]["totals"][1]["shop"]["amount"] == Decimal(amount)


@given(body=st.binary(max_size=200), header=st.none() | unicode_text | nasty_text
       | st.binary(max_size=40).map(lambda b: base64.b64encode(b).decode()),
       secrets=st.lists(unicode_text, max_size=3))
def test_a_webhook_signature_check_never_raises_and_accepts_only_the_real_signature(body, header, secrets):
    try:
        sent = base64.b64decode((header or "").strip(), validate=True) if header else None
    except ValueError:
        sent = None
    expected = any(s and sent == base64.b64decode(shopify_hmac(body, s)) for s in secrets)
    assert verify_shopify_hmac(body, header, secrets) == expected


@given(body=st.binary(min_size=1, max_size=200), secret=unicode_text.filter(bool), flip=st.integers(0, 199))
def test_a_signature_does_not_survive_a_changed_byte(body, secret, flip):
    signature = shopify_hmac(body, secret)
    assert verify_shopify_hmac(body, signature, ["old-secret", secret])
    changed = bytearray(body)
    changed[flip % len(body)] ^= 0x01
    assert not verify_shopify_hmac(bytes(changed), signature, [secret])


@pytest.mark.parametrize("parse, raw, field", [
    (Order.from_api, {"id": "o", "status": "New", "createdAt": 5}, "createdAt"),
    (Asset.from_api, {"id": "a", "attributes": ["x"]}, "attributes"),
    (Configuration.from_api, {"id": "c", "createdAt": ["x"]}, "createdAt"),
    (decimal_money, {"amount": "12,50", "currencyCode": "EUR"}, "amount"),
    (Asset.from_api, {"id": "a", "type": "item", "attributes": [
        {"name": "Price", "type": "Pricing", "values": [{"pricebook": "p", "currencies": ["EUR"]}]}]},
     "attributes.Price.currencies"),
    (Order.from_api, {"id": "o", "status": "New", "updatedAt": "last Tuesday"}, "updatedAt"),
], ids=["order-time", "asset-attributes", "configuration-time", "money", "asset-prices", "order-updated"])
def test_a_value_of_the_wrong_type_is_refused_naming_its_field(parse, raw, field):
    with pytest.raises(ValueError) as refused:
        parse(raw)
    assert str(refused.value).startswith(f"{field}: ") and not isinstance(refused.value, InvalidOperation)
