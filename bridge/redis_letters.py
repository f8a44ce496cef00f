"""The Redis ``LetterStore``: Dramatiq's ``<ns>:<q>.XQ`` sorted sets, through ``bridge.deadletters``."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import dramatiq
import redis

from . import deadletters as dl
from .keys import Keys
from .letter_store import REDIS, DeadLetter


class RedisLetters:
    """Dead letters in the Redis of ``client`` under ``keys.namespace``; the client stays the caller's."""

    broker = REDIS
    transient_errors: tuple[type[BaseException], ...] = (redis.ConnectionError, redis.TimeoutError)

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys

    def queues(self) -> list[str]:
        return dl.dead_letter_queues(self.client, self.keys)

    def check_queue(self, queue: str) -> None:
        dl.check_queue(self.client, self.keys, queue)

    def scan(self, *, queue: str | None = None, actor: str | None = None) -> Iterator[DeadLetter]:
        return dl.scan(self.client, self.keys, queue=queue, actor=actor)

    def entries(self, queue: str) -> list[tuple[str, float]]:
        return dl.entries(self.client, self.keys, queue)

    def fetch(self, queue: str, entries: list[tuple[str, float]]) -> list[DeadLetter]:
        return dl.fetch(self.client, self.keys, queue, entries)

    def get(self, queue: str, letter_id: str) -> DeadLetter | None:
        return dl.get(self.client, self.keys, queue, letter_id)

    def find_by_message_id(self, queue: str, message_id: str) -> DeadLetter | None:
        return dl.find_by_message_id(self.client, self.keys, queue, message_id)

    def remove(self, letter: DeadLetter) -> bool:
        return dl.remove(self.client, self.keys, letter)

    def move_to_queue(self, letter: DeadLetter, fresh: dramatiq.Message) -> bool:
        return dl.move_to_queue(self.client, self.keys, letter, fresh)

    def fresh_options(self) -> dict[str, Any]:
        # NOTE: a Redis id of its own, as Dramatiq's enqueue gives every enqueued copy.
        return {"redis_message_id": str(uuid.uuid4())}

    def dead_letter_name(self, queue: str) -> str:
        return self.keys.dead_letters(queue)

    def evidence(self, letter: DeadLetter) -> dict[str, Any]:
        return {"dead_letter_key": self.keys.dead_letters(letter.queue), "redis_message_id": letter.letter_id}

    def close(self) -> None:
        """Nothing to close: the client is the caller's."""

    def __enter__(self) -> RedisLetters:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
