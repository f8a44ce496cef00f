"""Requeue and purge dead letters: each requeue is a new run linked to the original (``retry_of``).

A requeue of one letter is three steps:

1. read the ledger (the original run; whether the requeued message has a run already);
2. claim and enqueue (``LetterStore.move_to_queue``). On Redis, one atomic script: the letter leaves
   ``<q>.XQ``/``<q>.XQ.msgs`` in the same step as the fresh message enters ``<q>.msgs``/``<q>``. On
   RabbitMQ, the letter is held unacked (no other browser sees it), the fresh message published
   with a confirm, then the letter acked: at least once (``bridge.rabbitmq_letters`` says what a
   crash in between leaves);
3. record the new run (its ``enqueued`` event, ``retry_of`` the original).

What follows describes Redis; on RabbitMQ the same holds but for the at-least-once window of step 2.

Any number of concurrent requeues of one letter (two operators, a filtered requeue racing one by
run id) enqueue it once: only the script that still finds the letter moves it; the others enqueue
nothing and report the letter as taken. The requeued message id derives from the letter (uuid5),
so the new run is one row whoever records it. What each crash point leaves behind:

- before step 2 (killed, Redis or PostgreSQL unreachable): nothing changed; run it again.
- in step 2: a script runs entirely or not at all, and an error is raised before its first write;
  the letter is either still a dead letter or already the queued message, never neither. If the
  reply is lost (connection dropped after the script ran), a repeat finds no letter and enqueues
  nothing. No "put the letter back" is needed: there is no moment at which it is out of both places.
- after step 2, before step 3 commits (ledger write failed, process killed): the letter is now the
  queued message, which carries ``runwatch_retry_of``; the worker that takes it records the run
  with its lineage, so only the ``enqueued`` event is missing. A repeat enqueues nothing.
- after step 3: done. A repeat finds the new run and reports it without enqueueing.

A letter an earlier version left behind (enqueued and recorded, then its removal failed) has its
new run already; it is only removed.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import dramatiq
from dramatiq.common import q_name
from sqlalchemy import Engine

from runwatch import events as ev
from runwatch.errors import RunwatchError
from runwatch.ledger import apply_events
from runwatch.lookups import retries_of, run_by_id, statuses
from runwatch.options import INITIATOR_OPTION, RETRY_OF_OPTION, SEEN_OPTION, TENANT_OPTION
from runwatch.thresholds import ThresholdPolicy

from .letter_store import REDIS, DeadLetter, LetterStore, location

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
    enqueued: list[str] = field(default_factory=list)  # requeued message ids this call put on a queue
    skipped: list[str] = field(default_factory=list)
    dry_run: bool = False


def letter_of_run(letters: LetterStore, engine: Engine, run_id: int) -> DeadLetter:
    """The dead letter of run ``run_id``, or a ``NotDeadLettered`` saying why there is none."""
    with engine.connect() as conn:
        run = run_by_id(conn, run_id)
        if run is None:
            raise UnknownRun(f"no run with id {run_id}")
        newer = retries_of(conn, run_id)
    evidence = run["reconciliation_evidence"] or {}
    letter = None
    if evidence.get("redis_message_id") and letters.broker == REDIS:
        letter = letters.get(run["queue_name"], evidence["redis_message_id"])
    letter = letter or letters.find_by_message_id(run["queue_name"], run["message_id"])
    if letter is not None:
        return letter
    if newer:
        raise NotDeadLettered(f"run {run_id} was requeued already, as run {newer[-1]}")
    if run["status"] != "completed" or run["outcome"] != "failed" or run["reconciliation_source"] is None:
        raise NotDeadLettered(f"run {run_id} is {run['status']}/{run['outcome']}, not dead-lettered")
    raise NotDeadLettered(
        f"run {run_id} failed but its dead letter is gone (expired, purged, or requeued by a call that could not "
        "record the new run: that run appears once a worker takes the message)"
    )


def requeue(
    store: LetterStore,
    engine: Engine,
    policy: ThresholdPolicy,
    letters: Iterable[DeadLetter],
    *,
    dry_run: bool = False,
    progress: Callable[[int], None] | None = None,
) -> RequeueResult:
    """Move each letter back to its queue as a fresh message, then record its run."""
    result = RequeueResult(dry_run=dry_run)
    for n, letter in enumerate(letters, 1):
        where = location(store, letter)
        if letter.message is None:
            result.skipped.append(f"undecodable dead letter {where}: {letter.decode_error}")
            continue
        fresh_id = requeued_message_id(letter)
        with engine.connect() as conn:
            found = statuses(conn, [letter.message.message_id, fresh_id])
            original = found.get(letter.message.message_id)
            original_run = run_by_id(conn, original[1]) if original else None
        old_run = original[1] if original else None
        if dry_run:
            result.requeued.append((old_run, None, letter.message.message_id))
        elif fresh_id in found:
            # NOTE: enqueued and recorded before, the letter left behind (an earlier version removed
            # it in a separate step, which could fail). Once is enough: only the letter goes.
            store.remove(letter)
            result.requeued.append((old_run, found[fresh_id][1], fresh_id))
        else:
            fresh = _fresh_message(letter.message, fresh_id, old_run, store.fresh_options())
            if store.move_to_queue(letter, fresh):
                result.enqueued.append(fresh_id)
                result.requeued.append((old_run, _record(engine, policy, fresh, letter, original_run), fresh_id))
            else:
                _report_taken(engine, result, old_run, fresh_id, where)
        if progress:
            progress(n)
    return result


def _report_taken(engine: Engine, result: RequeueResult, old_run: int | None, fresh_id: str, where: str) -> None:
    """The letter was gone when this call tried to move it: say who has it, as far as the ledger knows."""
    with engine.connect() as conn:
        taken = statuses(conn, [fresh_id]).get(fresh_id)
    if taken:  # another requeue won the letter and has recorded its run already
        result.requeued.append((old_run, taken[1], fresh_id))
    else:
        result.skipped.append(
            f"dead letter {where}: taken by another requeue (its run will be message {fresh_id}), or purged or expired"
        )


def purge(store: LetterStore, letters: Iterable[DeadLetter], *, dry_run: bool = False) -> int:
    count = 0
    for letter in letters:
        count += 1 if dry_run else int(store.remove(letter))
    return count


def requeued_message_id(letter: DeadLetter) -> str:
    """The message id a requeue of ``letter`` gets: the same however often it is requeued."""
    original = letter.message.message_id if letter.message else ""
    return str(uuid.uuid5(_REQUEUE_NAMESPACE, f"{letter.queue}/{letter.letter_id}/{original}"))


def _fresh_message(
    message: dramatiq.Message, message_id: str, retry_of: int | None, delivery: dict
) -> dramatiq.Message:
    options = {k: v for k, v in message.options.items() if k not in _DELIVERY_OPTIONS}
    if retry_of is not None:
        options[RETRY_OF_OPTION] = retry_of
    # NOTE: what the recorder's before_enqueue would mark: the run is recorded here (``_record``),
    # so a retry of this message is a retry, not a first enqueue. ``delivery``: what the broker's
    # enqueue would add (on Redis, an id of its own).
    options.update({SEEN_OPTION: 1, **delivery})
    # NOTE: a new Message, not message.copy(): copy() merges options, keeping the dead delivery's retries.
    return dramatiq.Message(
        queue_name=q_name(message.queue_name),
        actor_name=message.actor_name,
        args=message.args,
        kwargs=message.kwargs,
        options=options,
        message_id=message_id,
    )


def _record(
    engine: Engine, policy: ThresholdPolicy, message: dramatiq.Message, letter: DeadLetter, original: dict | None
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
        requeued_from=letter.letter_id,
    )
    with engine.begin() as conn:
        apply_events(conn, [event], policy)
        found = statuses(conn, [message.message_id]).get(message.message_id)
    return found[1] if found else None
