"""The Redis keys Dramatiq's Redis broker uses (``dispatch.lua``), named in one place."""

from __future__ import annotations

from dataclasses import dataclass

#: Dramatiq's default namespace for the Redis broker.
DEFAULT_NAMESPACE = "dramatiq"


@dataclass(frozen=True)
class Keys:
    namespace: str = DEFAULT_NAMESPACE

    def queue(self, queue: str) -> str:
        """List of pending redis message ids."""
        return f"{self.namespace}:{queue}"

    def messages(self, queue: str) -> str:
        """Hash redis_message_id -> payload, for pending and in-flight messages."""
        return f"{self.namespace}:{queue}.msgs"

    def delay_queue(self, queue: str) -> str:
        return f"{self.namespace}:{queue}.DQ"

    def delay_messages(self, queue: str) -> str:
        return f"{self.namespace}:{queue}.DQ.msgs"

    def dead_letters(self, queue: str) -> str:
        """Sorted set redis_message_id -> nack time (ms)."""
        return f"{self.namespace}:{queue}.XQ"

    def dead_letter_messages(self, queue: str) -> str:
        return f"{self.namespace}:{queue}.XQ.msgs"

    def heartbeats(self) -> str:
        """Sorted set worker (broker) id -> last heartbeat (ms)."""
        return f"{self.namespace}:__heartbeats__"

    def acks(self, worker_id: str, queue: str) -> str:
        """Set of redis message ids a worker holds in flight."""
        return f"{self.namespace}:__acks__.{worker_id}.{queue}"

    def dead_letter_pattern(self) -> str:
        return f"{self.namespace}:*.XQ"

    def queue_of_dead_letter_key(self, key: str) -> str:
        return key[len(self.namespace) + 1 : -len(".XQ")]
