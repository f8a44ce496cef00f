"""What the shipper writes through: the interface of the Redis and RabbitMQ writers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol


class EventWriter(Protocol):
    """Where the shipper writes: a Redis stream (``StreamWriter``) or a RabbitMQ queue (``QueueWriter``)."""

    def write(self, payloads: list[bytes]) -> None:
        """Make each payload durable, or raise (the events are kept and retried)."""

    def count(self, increments: Mapping[str, float]) -> None:
        """Add counter increments (``runwatch.counters`` fields) to the global run counters."""

    def reset(self) -> None:
        """Forget the connection without closing it (after a fork)."""
