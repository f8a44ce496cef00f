"""The mirror pass: keep ``dead_letters`` in PostgreSQL equal to Dramatiq's dead letters in the broker.

The API never talks to the broker, so the console reads dead letters from this mirror. Each pass
reads the ids of every ``<queue>.XQ`` (no payloads on Redis; a browse on RabbitMQ), forgets
mirrored letters that left the broker (requeued, purged, expired), adds at most ``max_new`` new
ones, oldest first (the rest next pass), and links letters to runs recorded since. One pass at a
time across processes (advisory lock). The ``redis_message_id`` column holds the store's letter
id: Redis's id, or on RabbitMQ the message id.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Engine

from runwatch import events as ev
from runwatch import mirror, passes
from runwatch.errors import ValidationError
from runwatch.options import TENANT_OPTION

from .letter_store import DeadLetter, LetterStore

PASS_NAME = passes.MIRROR.name
#: New letters decoded and inserted per pass; a backlog beyond it is mirrored by the next passes.
DEFAULT_MAX_NEW = 2000


@dataclass
class MirrorResult:
    queues: int = 0
    in_redis: int = 0
    added: int = 0
    removed: int = 0
    linked: int = 0
    not_yet_mirrored: int = 0  # beyond this pass's budget
    locked_out: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def mirror_once(letters: LetterStore, engine: Engine, *, max_new: int = DEFAULT_MAX_NEW) -> MirrorResult:
    """One pass: the mirror follows the broker; returns what changed."""
    started = time.time()
    result = MirrorResult()
    with passes.locked(engine, passes.MIRROR) as conn:
        if conn is None:
            result.locked_out = True
            return result
        queues = letters.queues()
        result.queues = len(queues)
        for gone in set(mirror.mirrored_queues(conn)) - set(queues):
            result.removed += mirror.remove_queue(conn, gone)
        budget = max_new
        for queue in queues:
            in_redis = letters.entries(queue)
            result.in_redis += len(in_redis)
            known = mirror.mirrored_ids(conn, queue)
            present = {rid for rid, _ in in_redis}
            result.removed += mirror.remove_letters(conn, queue, known - present)
            new = [(rid, score) for rid, score in in_redis if rid not in known]
            take, budget = new[:budget], budget - min(len(new), budget)
            result.not_yet_mirrored += len(new) - len(take)
            fetched = letters.fetch(queue, take)
            result.added += mirror.add_letters(conn, [mirror_letter(d) for d in fetched])
        result.linked = mirror.link_runs(conn)
        passes.record(conn, PASS_NAME, started=started, status=passes.PassStatus.OK, result=result.as_dict())
    return result


def mirror_letter(letter: DeadLetter) -> mirror.MirrorLetter:
    """What the mirror keeps of a letter: no arguments, exception text redacted."""
    if letter.message is None:
        return mirror.MirrorLetter(
            queue_name=letter.queue,
            redis_message_id=letter.letter_id,
            dead_at=letter.dead_at,
            # NOTE: a decoder's error may quote the payload it choked on.
            decode_error=ev.sanitize_error(str(letter.decode_error)),
        )
    options = letter.message.options
    exception_type, exception_message = _last_exception(options.get("traceback"))
    return mirror.MirrorLetter(
        queue_name=letter.queue,
        redis_message_id=letter.letter_id,
        dead_at=letter.dead_at,
        message_id=letter.message.message_id,
        actor_name=letter.message.actor_name,
        tenant_id=_tenant(options.get(TENANT_OPTION)),
        exception_type=exception_type,
        exception_message=exception_message,
    )


def _tenant(value: object) -> int | None:
    try:
        return ev.validate_tenant_id(value)
    except ValidationError:
        return None  # APPSEC: a malformed tenant is no tenant: only all-tenant tokens see the letter


def _last_exception(traceback_text: object) -> tuple[str | None, str | None]:
    """Type and redacted message from the last line of Dramatiq's copy of a traceback (a fallback)."""
    if not isinstance(traceback_text, str) or not traceback_text.strip():
        return None, None
    last = traceback_text.strip().splitlines()[-1]
    name, sep, message = last.partition(": ")
    name = name.strip().rsplit(".", 1)[-1]
    if not name.isidentifier():
        return None, ev.sanitize_error(last)
    return name, ev.sanitize_error(message) if sep else None
