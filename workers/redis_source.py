"""The drainer's Redis side: a consumer group on the event stream (``Drainer``'s ``EventSource``).

A Redis consumer group makes draining at-least-once and shareable: any number of drainers split
the stream; an entry is acknowledged and deleted only after its transaction committed, and
entries a dead drainer held are claimed by the others after ``claim_idle_ms``. The ledger dedupes
by event id, so a redelivered entry changes nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Mapping

import redis
from runwatch.bridge import replies

from runwatch import counters
from runwatch.settings import DEFAULT_DRAIN_CLAIM_IDLE_MS

logger = logging.getLogger("runwatch.drainer")

GROUP = "runwatch-ledger"
#: A consumer that holds nothing and has not read for this long belonged to a drainer that died:
#: it is removed from the group, which would otherwise list every drainer that ever ran.
DEFAULT_FORGET_IDLE_MS = 3_600_000
_SWEEP_INTERVAL_SECONDS = 60.0
#: One read entry: its id and its payload (None: the entry has no payload field).
Entry = tuple[bytes, bytes | None]


class RedisEventSource:
    """Entries of ``stream`` for one consumer of the drainers' group."""

    errors: tuple[type[BaseException], ...] = (redis.RedisError,)
    name = "Redis"

    def __init__(
        self,
        client: redis.Redis,
        stream: str,
        *,
        batch_entries: int,
        consumer: str | None = None,
        claim_idle_ms: int = DEFAULT_DRAIN_CLAIM_IDLE_MS,
        forget_idle_ms: int = DEFAULT_FORGET_IDLE_MS,
    ) -> None:
        self.client = client
        self.stream = stream
        self._batch = batch_entries
        self._consumer = consumer or f"{socket.gethostname()}-{os.getpid()}-{threading.get_ident()}"
        self._claim_idle_ms = claim_idle_ms
        self._forget_idle_ms = forget_idle_ms
        self._last_sweep = float("-inf")
        self._last_claim = float("-inf")
        self._group_ready = False
        self._backlog_checked = False

    def read(self, block_ms: int | None) -> list[Entry]:
        """First entries this consumer already holds, then stale ones, then new."""
        self._ensure_group()
        try:
            entries = self._read("0", None) if not self._backlog_checked else []
            if not entries:
                self._backlog_checked = True
                entries = self._claim_due() or self._read(">", block_ms)
        except redis.ResponseError as exc:
            if "NOGROUP" in str(exc):
                # NOTE: Redis restarted without persistence (or the stream was deleted): the group
                # went with it. Create it again, or no drainer would ever read another event.
                self._group_ready = False
            raise
        if not entries:
            self._forget_dead_consumers()
        return [(entry_id, fields.get(b"e")) for entry_id, fields in entries]

    def settle(self, ids: list[bytes], increments: Mapping[str, float]) -> None:
        """Acknowledge and delete applied entries; the run counters ride on the same round trip."""
        with self.client.pipeline(transaction=False) as pipe:
            pipe.xack(self.stream, GROUP, *ids)
            pipe.xdel(self.stream, *ids)
            counters.send(pipe, self.stream, increments)  # PERF: no extra round trip for /metrics
            pipe.execute()

    def reject(self, entry_id: bytes, payload: bytes | str, reason: str) -> None:
        self.client.xadd(f"{self.stream}:rejected", {"entry": entry_id, "reason": reason, "payload": payload},
                         maxlen=10_000)  # fmt: skip

    def reset(self) -> None:
        """After a failed write: read again what this consumer holds once the database is back."""
        self._backlog_checked = False

    def close(self) -> None:
        """Nothing to release: held entries are claimed by other drainers after ``claim_idle_ms``."""

    def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            self.client.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    def _forget_dead_consumers(self) -> None:
        """Remove consumers of drainers that died, once their entries were claimed (nothing is lost:
        only consumers with no pending entries go; a live one idle that long is re-created on its next read)."""
        now = time.monotonic()
        if now - self._last_sweep < _SWEEP_INTERVAL_SECONDS:
            return
        self._last_sweep = now
        for consumer in self.client.xinfo_consumers(self.stream, GROUP):
            name = consumer["name"].decode() if isinstance(consumer["name"], bytes) else consumer["name"]
            if name != self._consumer and consumer["pending"] == 0 and consumer["idle"] >= self._forget_idle_ms:
                self.client.xgroup_delconsumer(self.stream, GROUP, name)
                logger.info("removed the idle consumer %s of a drainer that is gone", name)

    def _read(self, start: str, block_ms: int | None) -> list[tuple[bytes, dict[bytes, bytes]]]:
        reply = self.client.xreadgroup(GROUP, self._consumer, {self.stream: start}, count=self._batch, block=block_ms)
        return replies.read_entries(reply)

    def _claim_due(self) -> list[tuple[bytes, dict[bytes, bytes]]]:
        """Claim stale entries, at most every ``claim_idle_ms`` / 4 (PERF: not one XAUTOCLAIM per batch)."""
        now = time.monotonic()
        if now - self._last_claim < self._claim_idle_ms / 4000:
            return []
        reply = self.client.xautoclaim(
            self.stream, GROUP, self._consumer, self._claim_idle_ms, start_id="0-0", count=self._batch
        )
        entries = [entry for entry in reply[1] if entry[1]]
        if not entries:  # NOTE: while there are stale entries, keep claiming them batch after batch
            self._last_claim = now
        return entries
