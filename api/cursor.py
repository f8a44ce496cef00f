"""Opaque, tamper-proof pagination cursors: an HMAC-signed keyset position.

A cursor carries the last run of a page (``created_at``, ``id``) and a fingerprint of the
filters it was issued for, signed with a key every API process shares. A client can neither
forge a position nor reuse a cursor with other filters; either is a 400, never a 500.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct
from datetime import UTC, datetime, timedelta

from runwatch.queries import Position

#: Cursor layout version; bump when the payload changes so old cursors fail cleanly.
VERSION = 1
_PAYLOAD = struct.Struct(">Bqq8s")  # version, created_at in µs since the epoch, id, filter fingerprint
_MAC_BYTES = 16  # 128-bit truncated HMAC-SHA256: forgery is out of reach, the cursor stays short
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class InvalidCursor(ValueError):
    """The cursor was not issued by this API for these filters."""


def fingerprint(filters: object) -> bytes:
    """8 bytes that change whenever the filters do (``filters`` has a stable ``repr``)."""
    return hashlib.sha256(repr(filters).encode()).digest()[:8]


def encode(position: Position, *, filters_fingerprint: bytes, key: bytes) -> str:
    micros = (position.created_at - _EPOCH) // timedelta(microseconds=1)
    payload = _PAYLOAD.pack(VERSION, micros, position.id, filters_fingerprint)
    mac = hmac.new(key, payload, hashlib.sha256).digest()[:_MAC_BYTES]
    return base64.urlsafe_b64encode(payload + mac).rstrip(b"=").decode("ascii")


def decode(cursor: str, *, filters_fingerprint: bytes, key: bytes) -> Position:
    """The position inside ``cursor``; ``InvalidCursor`` if it is garbage, forged or for other filters."""
    if not cursor.isascii() or len(cursor) > 100:
        raise InvalidCursor("not a cursor")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError):
        raise InvalidCursor("not a cursor") from None
    # NOTE: the decoder skips stray characters and slack bits; only the canonical spelling is accepted.
    if len(raw) != _PAYLOAD.size + _MAC_BYTES or base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != cursor:
        raise InvalidCursor("not a cursor")
    payload, mac = raw[: _PAYLOAD.size], raw[_PAYLOAD.size :]
    if not hmac.compare_digest(mac, hmac.new(key, payload, hashlib.sha256).digest()[:_MAC_BYTES]):
        raise InvalidCursor("signature mismatch")
    version, micros, run_id, fp = _PAYLOAD.unpack(payload)
    if version != VERSION:
        raise InvalidCursor("unsupported cursor version")
    if not hmac.compare_digest(fp, filters_fingerprint):
        raise InvalidCursor("issued for other filters")
    try:
        return Position(_EPOCH + timedelta(microseconds=micros), run_id)
    except OverflowError:  # only reachable with a leaked key; still no 500
        raise InvalidCursor("position out of range") from None
