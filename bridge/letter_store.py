"""One interface to Dramatiq's dead letters, whichever broker holds them (STYLE §14).

Three implementations: ``RedisLetters`` (the ``<ns>:<q>.XQ`` sorted set and hash),
``RabbitmqLetters`` (the ``<q>.XQ`` queue, read by browsing) and ``MemoryLetters`` (a twin for
unit tests). The adapter, requeue, the mirror, the action executor and the CLI take a store; a
store holds at most one broker connection, opened when first needed and closed by ``close()``
(use it as a context manager: one store per pass or command, never one kept idle across passes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import dramatiq
from sqlalchemy import Engine, text

from runwatch.errors import RunwatchError

REDIS = "redis"
RABBITMQ = "rabbitmq"
#: Queues of runs created this long ago are still looked at (a letter lives 7 days in ``q.XQ``).
LEDGER_WINDOW_DAYS = 30
_QUEUES = text("""
SELECT queue_name FROM (SELECT DISTINCT queue_name FROM operation_runs
                        WHERE created_at >= now() - make_interval(days => :days)) recent
UNION SELECT DISTINCT queue_name FROM dead_letters
""")


class UnknownQueue(RunwatchError):
    """The broker holds nothing of this queue."""


@dataclass(frozen=True)
class DeadLetter:
    queue: str
    #: The broker's id of this dead letter: Redis's ``redis_message_id``; on RabbitMQ, which has no
    #: id outside the body, the Dramatiq message id (a digest of the body when it cannot be decoded).
    letter_id: str
    dead_at: float  # epoch seconds of the nack
    message: dramatiq.Message | None  # None when the payload cannot be decoded
    decode_error: str | None = None
    broker: str = REDIS

    @property
    def redis_message_id(self) -> str | None:
        return self.letter_id if self.broker == REDIS else None

    @property
    def message_id(self) -> str | None:
        return self.message.message_id if self.message else None

    @property
    def actor_name(self) -> str | None:
        return self.message.actor_name if self.message else None


class LetterStore(Protocol):
    """What the bridge needs of a broker's dead letters."""

    broker: str
    #: Errors that mean "the broker did not answer": a pass retries later, an action stays running.
    transient_errors: tuple[type[BaseException], ...]

    def queues(self) -> list[str]:
        """Every queue that may hold dead letters, sorted."""
        ...

    def check_queue(self, queue: str) -> None:
        """Raise ``UnknownQueue`` unless the broker knows ``queue``."""
        ...

    def scan(self, *, queue: str | None = None, actor: str | None = None) -> Iterator[DeadLetter]:
        """Dead letters, oldest first per queue; undecodable ones are yielded with their error."""
        ...

    def entries(self, queue: str) -> list[tuple[str, float]]:
        """``(letter id, position)`` of every letter of ``queue``, oldest first, as cheaply as the broker allows."""
        ...

    def fetch(self, queue: str, entries: list[tuple[str, float]]) -> list[DeadLetter]:
        """The letters of ``entries`` (from ``entries``) still there."""
        ...

    def get(self, queue: str, letter_id: str) -> DeadLetter | None: ...

    def find_by_message_id(self, queue: str, message_id: str) -> DeadLetter | None: ...

    def remove(self, letter: DeadLetter) -> bool:
        """Delete one dead letter; False if it was already gone."""
        ...

    def move_to_queue(self, letter: DeadLetter, fresh: dramatiq.Message) -> bool:
        """Enqueue ``fresh`` on ``letter.queue`` and drop ``letter``; False (nothing enqueued) if it was gone."""
        ...

    def fresh_options(self) -> dict[str, Any]:
        """Delivery options a requeued message needs on this broker (Redis: its own ``redis_message_id``)."""
        ...

    def dead_letter_name(self, queue: str) -> str:
        """Where ``queue``'s dead letters lie: a Redis key, or a RabbitMQ queue."""
        ...

    def evidence(self, letter: DeadLetter) -> dict[str, Any]:
        """What names ``letter`` in a run's evidence (``dead_letter_key`` and the broker's id)."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> LetterStore: ...

    def __exit__(self, *exc: object) -> None: ...


def ledger_queues(engine: Engine, *, window_days: int = LEDGER_WINDOW_DAYS) -> list[str]:
    """Queue names of recent runs and of mirrored dead letters: where a broker that cannot list its queues looks."""
    with engine.connect() as conn:
        return sorted(conn.execute(_QUEUES, {"days": window_days}).scalars())


def location(store: LetterStore, letter: DeadLetter) -> str:
    """``<dead-letter key or queue>/<letter id>``: one letter, in messages to people."""
    return f"{store.dead_letter_name(letter.queue)}/{letter.letter_id}"


def letter_store(
    settings: Any,
    *,
    redis_client: Any = None,
    namespace: str | None = None,
    engine: Any = None,
    queues: Callable[[], Iterable[str]] | None = None,
) -> LetterStore:
    """The store for ``settings.broker_kind``: Redis (``redis_client``, else ``RUNWATCH_REDIS_URL``) or RabbitMQ.

    On RabbitMQ, which cannot list its queues over AMQP, the queues looked at are ``queues()`` plus
    those the ledger (``engine``) knows (``ledger_queues``).
    """
    if settings.broker_kind == RABBITMQ:
        from .rabbitmq_letters import RabbitmqLetters

        def known() -> list[str]:
            found = set(queues() if queues else ())
            if engine is not None:
                found.update(ledger_queues(engine))
            return sorted(found)

        return RabbitmqLetters(settings.require_rabbitmq_url(), queues=known)
    from .keys import DEFAULT_NAMESPACE, Keys
    from .redis_letters import RedisLetters

    if redis_client is None:
        import redis

        redis_client = redis.Redis.from_url(settings.require_redis_url())
    return RedisLetters(redis_client, Keys(namespace or DEFAULT_NAMESPACE))
