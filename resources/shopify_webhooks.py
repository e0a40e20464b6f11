"""Shopify webhook verification (../shared/contracts/shopify.md §9.2): verify before parsing.

`X-Shopify-Hmac-Sha256` is base64 (standard alphabet, padded) of HMAC-SHA256 over the raw body bytes,
keyed with the app's client secret (`SHOPIFY_WEBHOOK_SECRET`). After a rotation the previous secret
stays valid for an hour, so more than one secret may be given.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence


def shopify_hmac(body: bytes, secret: str) -> str:
    """The header value Shopify sends for `body` signed with `secret`."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def verify_shopify_hmac(body: bytes, header: str | None, secrets: Sequence[str]) -> bool:
    """True if `header` signs the exact `body` bytes with any of `secrets` (current and previous).

    Compares the decoded digests in constant time; a missing or malformed header is simply False.
    """
    if not header or not secrets:
        return False
    try:
        received = base64.b64decode(header.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    matched = False
    for secret in secrets:
        if not secret:
            continue
        expected = hmac.new(secret.encode(), body, hashlib.sha256).digest()
        # Every secret is checked, so the time taken does not say which one matched.
        matched |= hmac.compare_digest(expected, received)
    return matched
