"""The generic webhook: the notification's JSON as the body, signed with HMAC-SHA256.

Signature: ``X-Phasegate-Signature: sha256=<hex>`` over ``<timestamp>.<body>``, where the
timestamp (Unix seconds) is also sent as ``X-Phasegate-Timestamp``: a receiver recomputes
it with the shared key and refuses old timestamps, so a captured request cannot be replayed.
"""

from __future__ import annotations

import hashlib
import hmac


def signature(key: bytes, timestamp: int, body: bytes) -> str:
    """The value of ``X-Phasegate-Signature`` for ``body`` sent at ``timestamp``."""
    mac = hmac.new(key, str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def request(
    body: str, key: str, event: str, signing_key: bytes | None, timestamp: int
) -> tuple[bytes, dict[str, str]]:
    """The body and headers of one delivery."""
    data = body.encode()
    headers = {
        "Content-Type": "application/json",
        "Idempotency-Key": key,
        "X-Phasegate-Event": event,
        "X-Phasegate-Timestamp": str(timestamp),
    }
    if signing_key is not None:
        headers["X-Phasegate-Signature"] = signature(signing_key, timestamp, data)
    return data, headers
