"""Redis replies typed as Runwatch's clients receive them: bytes, never str.

redis-py types a reply for both settings of ``decode_responses`` (``bytes | str``) and for both
shapes of a command (``ZRANGE`` with or without scores); Runwatch's clients never decode, and
each call site knows the shape it asked for. These helpers say so in one place, at no cost.
"""

from __future__ import annotations

from typing import Any, cast

ScoredMembers = list[tuple[bytes, float]]
StreamEntries = list[tuple[bytes, dict[bytes, bytes]]]


def scored_members(reply: Any) -> ScoredMembers:
    """A ``withscores=True`` range (``ZRANGE``, ``ZREVRANGEBYSCORE``): ``(member, score)`` pairs."""
    return cast(ScoredMembers, reply)


def values(reply: Any) -> list[bytes | None]:
    """An ``HMGET``: one value per field asked for, None where the field is missing."""
    return cast(list[bytes | None], reply)


def value(reply: Any) -> bytes | None:
    """An ``HGET`` or ``GET``: the value, or None."""
    return cast(bytes | None, reply)


def stream_entries(reply: Any) -> StreamEntries:
    """An ``XRANGE``, or one stream's entries in an ``XREADGROUP``: ``(entry id, fields)`` pairs."""
    return cast(StreamEntries, reply)


def read_entries(reply: Any) -> StreamEntries:
    """An ``XREADGROUP`` of one stream (``[[stream, entries]]``): its entries; none when the read timed out."""
    return cast(StreamEntries, reply[0][1]) if reply else []
