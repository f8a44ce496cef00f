"""Requeue and purge dead letters: each requeue is a new run linked to the original (``retry_of``)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from sqlalchemy import Engine

from runwatch import events as ev
from runwatch.errors import RunwatchError
from runwatch.ledger import apply_events
from runwatch.lookups import retries_of, run_by_id, statuses
from runwatch.options import INITIATOR_OPTION, RETRY_OF_OPTION, SEEN_OPTION, TENANT_OPTION
from runwatch.thresholds import ThresholdPolicy

from . import deadletters as dl
from .keys import Keys

#: Requeued message ids derive from the letter, so that requeueing one letter twice is one run.
_REQUEUE_NAMESPACE = uuid.UUID("5b6f1c3e-8e0a-4d0f-9a51-7d2f3c1e9b20")
#: Options that belong to the dead delivery, not to a fresh one.
_DELIVERY_OPTIONS = ("retries", "traceback", "requeue_timestamp", "redis_message_id", "eta", SEEN_OPTION)


class NotDeadLettered(RunwatchError):
    """The run has no dead letter to requeue (not failed by the broker, expired, or requeued already)."""


class UnknownRun(RunwatchError):
    """No run has this id."""


@dataclass
class RequeueResult:
    requeued: list[tuple[int | None, int | None, str]] = field(default_factory=list)  # (old run, new run, message)
    skipped: list[str] = field(default_factory=list)
    dry_run: bool = False


def letter_of_run(client: redis.Redis, engine: Engine, keys: Keys, run_id: int) -> dl.DeadLetter:
    """The dead letter of run ``run_id``, or a ``NotDeadLettered`` saying why there is none."""
    with engine.connect() as conn:
        run = run_by_id(conn, run_id)
        if run is None:
            raise UnknownRun(f"no run with id {run_id}")
        newer = retries_of(conn, run_id)
    evidence = run["reconciliation_evidence"] or {}
    letter = None
    if evidence.get("redis_message_id"):
        letter = dl.get(client, keys, run["queue_name"], evidence["redis_message_id"])
    letter = letter or dl.find_by_message_id(client, keys, run["queue_name"], run["message_id"])
    if letter is not None:
        return letter
    if newer:
        raise NotDeadLettered(f"run {run_id} was requeued already, as run {newer[-1]}")
    if run["status"] != "completed" or run["outcome"] != "failed" or run["reconciliation_source"] is None:
        raise NotDeadLettered(f"run {run_id} is {run['status']}/{run['outcome']}, not dead-lettered")
    raise NotDeadLettered(f"run {run_id} failed but its dead letter is gone (expired or purged)")


def requeue(
    broker: RedisBroker,
    engine: Engine,
    keys: Keys,
    policy: ThresholdPolicy,
    letters: Iterable[dl.DeadLetter],
    *,
    dry_run: bool = False,
    progress: Callable[[int], None] | None = None,
) -> RequeueResult:
    """Enqueue a fresh copy of each letter, record its run, then delete the dead letter."""
    result = RequeueResult(dry_run=dry_run)
    for n, letter in enumerate(letters, 1):
        if letter.message is None:
            result.skipped.append(f"{keys.dead_letters(letter.queue)}/{letter.redis_message_id}: {letter.decode_error}")
            continue
        fresh_id = requeued_message_id(letter)
        with engine.connect() as conn:
            found = statuses(conn, [letter.message.message_id, fresh_id])
            original = found.get(letter.message.message_id)
            original_run = run_by_id(conn, original[1]) if original else None
        if dry_run:
            result.requeued.append((original[1] if original else None, None, letter.message.message_id))
            continue
        if fresh_id in found:
            # NOTE: requeued before, but the dead letter was left behind (the ledger write or the
            # removal failed afterwards): the run exists, so the message was enqueued. Once is enough.
            new_run = found[fresh_id][1]
        else:
            fresh = _fresh_message(letter.message, fresh_id, original[1] if original else None)
            # NOTE: enqueue first, delete the dead letter only once the new message is safe in Redis.
            enqueued = broker.enqueue(fresh)
            new_run = _record(engine, policy, enqueued, letter, original_run)
        dl.remove(broker.client, keys, letter)
        result.requeued.append((original[1] if original else None, new_run, fresh_id))
        if progress:
            progress(n)
    return result


def purge(client: redis.Redis, keys: Keys, letters: Iterable[dl.DeadLetter], *, dry_run: bool = False) -> int:
    count = 0
    for letter in letters:
        count += 1 if dry_run else int(dl.remove(client, keys, letter))
    return count


def requeued_message_id(letter: dl.DeadLetter) -> str:
    """The message id a requeue of ``letter`` gets: the same however often it is requeued."""
    original = letter.message.message_id if letter.message else ""
    return str(uuid.uuid5(_REQUEUE_NAMESPACE, f"{letter.queue}/{letter.redis_message_id}/{original}"))


def _fresh_message(message: dramatiq.Message, message_id: str, retry_of: int | None) -> dramatiq.Message:
    options = {k: v for k, v in message.options.items() if k not in _DELIVERY_OPTIONS}
    if retry_of is not None:
        options[RETRY_OF_OPTION] = retry_of
    # NOTE: a new Message, not message.copy(): copy() merges options, keeping the dead delivery's retries.
    return dramatiq.Message(
        queue_name=message.queue_name,
        actor_name=message.actor_name,
        args=message.args,
        kwargs=message.kwargs,
        options=options,
        message_id=message_id,
    )


def _record(
    engine: Engine, policy: ThresholdPolicy, message: dramatiq.Message, letter: dl.DeadLetter, original: dict | None
) -> int | None:
    """Write the new run's queued state now, from the original run's metadata, so lineage never waits."""
    meta = {
        "queue": letter.queue,
        "actor": message.actor_name,
        "type": original["type"] if original else message.actor_name,
        "label": original["type_label"] if original else None,
        "created_at": message.message_timestamp / 1000,
        "tenant_id": message.options.get(TENANT_OPTION),
        "initiator": message.options.get(INITIATOR_OPTION),
        "retry_of": message.options.get(RETRY_OF_OPTION),
        "max_retries": original["max_retries"] if original else None,
        "time_limit_ms": original["time_limit_ms"] if original else None,
    }
    event = ev.new_event(
        ev.ENQUEUED,
        message.message_id,
        time.time(),
        meta,
        redis_message_id=message.options.get("redis_message_id"),
        requeued_from=letter.redis_message_id,
    )
    with engine.begin() as conn:
        apply_events(conn, [event], policy)
        found = statuses(conn, [message.message_id]).get(message.message_id)
    return found[1] if found else None
