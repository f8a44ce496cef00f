"""An in-memory ``LetterStore`` for unit tests: dead letters and queued messages in plain lists."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dramatiq

from .letter_store import DeadLetter, UnknownQueue

MEMORY = "memory"


class MemoryLetters:
    """Dead letters per queue, oldest first; ``queued`` holds what requeues enqueued."""

    broker = MEMORY
    transient_errors: tuple[type[BaseException], ...] = (ConnectionError,)

    def __init__(self) -> None:
        self.letters: dict[str, list[DeadLetter]] = {}
        self.queued: dict[str, list[dramatiq.Message]] = {}
        self.closed = False

    def add(
        self, queue: str, message: dramatiq.Message | None, *, dead_at: float, letter_id: str | None = None
    ) -> DeadLetter:
        """Dead-letter ``message`` (None: an undecodable payload) in ``queue``."""
        letter_id = letter_id or (message.message_id if message else f"undecodable-{len(self.letters.get(queue, []))}")
        error = None if message else "DecodeError: not a message"
        letter = DeadLetter(queue, letter_id, dead_at, message, error, MEMORY)
        self.letters.setdefault(queue, []).append(letter)
        return letter

    def queues(self) -> list[str]:
        return sorted(q for q, letters in self.letters.items() if letters)

    def check_queue(self, queue: str) -> None:
        if queue not in self.letters and queue not in self.queued:
            raise UnknownQueue(f"unknown queue {queue!r}")

    def scan(self, *, queue: str | None = None, actor: str | None = None) -> Iterator[DeadLetter]:
        for name in [queue] if queue else self.queues():
            yield from [d for d in self.letters.get(name, []) if actor is None or d.actor_name == actor]

    def entries(self, queue: str) -> list[tuple[str, float]]:
        return [(d.letter_id, d.dead_at) for d in self.letters.get(queue, [])]

    def fetch(self, queue: str, entries: list[tuple[str, float]]) -> list[DeadLetter]:
        wanted = {letter_id for letter_id, _ in entries}
        return [d for d in self.letters.get(queue, []) if d.letter_id in wanted]

    def get(self, queue: str, letter_id: str) -> DeadLetter | None:
        return next((d for d in self.letters.get(queue, []) if d.letter_id == letter_id), None)

    def find_by_message_id(self, queue: str, message_id: str) -> DeadLetter | None:
        return next((d for d in self.letters.get(queue, []) if d.message_id == message_id), None)

    def remove(self, letter: DeadLetter) -> bool:
        letters = self.letters.get(letter.queue, [])
        if letter not in letters:
            return False
        letters.remove(letter)
        return True

    def move_to_queue(self, letter: DeadLetter, fresh: dramatiq.Message) -> bool:
        if not self.remove(letter):
            return False
        self.queued.setdefault(letter.queue, []).append(fresh)
        return True

    def fresh_options(self) -> dict[str, Any]:
        return {}

    def dead_letter_name(self, queue: str) -> str:
        return f"memory:{queue}.XQ"

    def evidence(self, letter: DeadLetter) -> dict[str, Any]:
        return {"dead_letter_key": self.dead_letter_name(letter.queue), "message_id": letter.message_id}

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> MemoryLetters:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
