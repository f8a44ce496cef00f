"""Read and remove Dramatiq's dead letters on Redis (``<queue>.XQ`` zset + ``<queue>.XQ.msgs`` hash).

The functions under ``RedisLetters`` (``bridge.redis_letters``), the Redis ``LetterStore``.
"""

from __future__ import annotations

from collections.abc import Iterator

import dramatiq
import redis

from . import replies
from .keys import Keys
from .letter_store import DeadLetter, UnknownQueue

__all__ = ["DeadLetter", "UnknownQueue"]  # re-exported: the Redis side's names predate the store

#: Dead letters fetched per round trip while scanning.
SCAN_BATCH = 500

# Take a dead letter out of <q>.XQ and put a fresh message on <q> in one atomic step, as
# Dramatiq's own enqueue does (dispatch.lua: HSET <q>.msgs, RPUSH <q>). Only the caller that still
# finds the letter moves it; every check comes before the first write, so an error leaves both sides
# as they were (Redis does not roll back a script's earlier writes).
# KEYS: <q>.XQ, <q>.XQ.msgs, <q>, <q>.msgs. ARGV: letter's redis id, fresh redis id, fresh payload.
_MOVE_TO_QUEUE = """
if not redis.call('zscore', KEYS[1], ARGV[1]) then return 0 end
local queue_type = redis.call('type', KEYS[3])['ok']
local messages_type = redis.call('type', KEYS[4])['ok']
if (queue_type ~= 'list' and queue_type ~= 'none') or (messages_type ~= 'hash' and messages_type ~= 'none') then
    return redis.error_reply('the queue keys hold the wrong type')
end
redis.call('hset', KEYS[4], ARGV[2], ARGV[3])
redis.call('rpush', KEYS[3], ARGV[2])
redis.call('zrem', KEYS[1], ARGV[1])
redis.call('hdel', KEYS[2], ARGV[1])
return 1
"""


def dead_letter_queues(client: redis.Redis, keys: Keys) -> list[str]:
    """Every queue that has a dead-letter set, sorted."""
    found = {keys.queue_of_dead_letter_key(k.decode()) for k in client.scan_iter(match=keys.dead_letter_pattern())}
    return sorted(q for q in found if client.type(keys.dead_letters(q)) == b"zset")


def check_queue(client: redis.Redis, keys: Keys, queue: str) -> None:
    """Raise ``UnknownQueue`` unless Redis holds any key of ``queue``."""
    candidates = (keys.queue(queue), keys.messages(queue), keys.delay_messages(queue), keys.dead_letters(queue))
    if not client.exists(*candidates):
        raise UnknownQueue(f"unknown queue {queue!r}: no key of it in Redis namespace {keys.namespace!r}")


def scan(
    client: redis.Redis, keys: Keys, *, queue: str | None = None, actor: str | None = None
) -> Iterator[DeadLetter]:
    """Dead letters, oldest first per queue; undecodable payloads are yielded with their error."""
    queues = [queue] if queue else dead_letter_queues(client, keys)
    for name in queues:
        start = 0
        while True:
            batch = replies.scored_members(
                client.zrange(keys.dead_letters(name), start, start + SCAN_BATCH - 1, withscores=True)
            )
            if not batch:
                break
            start += len(batch)
            payloads = replies.values(client.hmget(keys.dead_letter_messages(name), [rid for rid, _ in batch]))
            for (rid, score), payload in zip(batch, payloads, strict=True):
                letter = _decode(name, rid.decode(), score / 1000, payload)
                if actor is None or letter.actor_name == actor:
                    yield letter


def fetch(client: redis.Redis, keys: Keys, queue: str, entries: list[tuple[str, float]]) -> list[DeadLetter]:
    """The letters of ``(redis id, nack time in ms)`` entries of ``queue``, in one round trip."""
    if not entries:
        return []
    payloads = replies.values(client.hmget(keys.dead_letter_messages(queue), [rid for rid, _ in entries]))
    return [_decode(queue, rid, score / 1000, p) for (rid, score), p in zip(entries, payloads, strict=True)]


def entries(client: redis.Redis, keys: Keys, queue: str) -> list[tuple[str, float]]:
    """Every ``(redis id, nack time in ms)`` of ``queue``'s dead-letter set, oldest first (ids only, no payloads)."""
    found: list[tuple[str, float]] = []
    while True:
        batch = replies.scored_members(
            client.zrange(keys.dead_letters(queue), len(found), len(found) + SCAN_BATCH * 10 - 1, withscores=True)
        )
        found.extend((rid.decode(), score) for rid, score in batch)
        if len(batch) < SCAN_BATCH * 10:
            return found


def get(client: redis.Redis, keys: Keys, queue: str, redis_message_id: str) -> DeadLetter | None:
    score = client.zscore(keys.dead_letters(queue), redis_message_id)
    if score is None:
        return None
    payload = replies.value(client.hget(keys.dead_letter_messages(queue), redis_message_id))
    return _decode(queue, redis_message_id, score / 1000, payload)


def find_by_message_id(client: redis.Redis, keys: Keys, queue: str, message_id: str) -> DeadLetter | None:
    return next((d for d in scan(client, keys, queue=queue) if d.message_id == message_id), None)


def remove(client: redis.Redis, keys: Keys, letter: DeadLetter) -> bool:
    """Delete one dead letter; False if it was already gone (another operator, or the TTL)."""
    with client.pipeline(transaction=True) as pipe:
        pipe.zrem(keys.dead_letters(letter.queue), letter.letter_id)
        pipe.hdel(keys.dead_letter_messages(letter.queue), letter.letter_id)
        removed, _ = pipe.execute()
    return bool(removed)


def move_to_queue(client: redis.Redis, keys: Keys, letter: DeadLetter, fresh: dramatiq.Message) -> bool:
    """Replace ``letter`` by ``fresh`` (which carries its ``redis_message_id``) on ``letter.queue``, atomically.

    False if the letter was gone: another requeue took it, or it was purged or expired. Then nothing
    was enqueued. There is no moment at which the letter is in neither place.
    """
    move = client.register_script(_MOVE_TO_QUEUE)
    queue = letter.queue
    moved = move(
        keys=[keys.dead_letters(queue), keys.dead_letter_messages(queue), keys.queue(queue), keys.messages(queue)],
        args=[letter.letter_id, fresh.options["redis_message_id"], fresh.encode()],
    )
    return bool(moved)


def _decode(queue: str, rid: str, dead_at: float, payload: bytes | None) -> DeadLetter:
    if payload is None:
        return DeadLetter(queue, rid, dead_at, None, "payload missing from the .XQ.msgs hash")
    try:
        return DeadLetter(queue, rid, dead_at, dramatiq.Message.decode(payload))
    except Exception as exc:  # DecodeError, or a payload of the wrong shape
        return DeadLetter(queue, rid, dead_at, None, f"{type(exc).__name__}: {exc}"[:300])
