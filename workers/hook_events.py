"""The run events the recorder's hooks ship, built from a run or from the facts a hook kept.

Pure builders: the hooks decide when an event is due and hand it to the shipper; these say what
it holds (``runwatch.events`` gives the shape).
"""

from __future__ import annotations

from typing import Any

import dramatiq

from runwatch import events as ev

from . import meta as m
from . import run as run_api


def enqueued_event(profile: m.ActorProfile, message: dramatiq.Message, delay: int | None) -> dict:
    """Built by the shipper thread, not on the producer's path."""
    meta = m.message_meta(profile, message)
    redis_id = message.options.get("redis_message_id")
    # NOTE: stamped with the message's own timestamp: a worker may start it before this hook runs.
    at = message.message_timestamp / 1000
    return ev.new_event(ev.ENQUEUED, message.message_id, at, meta, delay_ms=delay, redis_message_id=redis_id)


def enqueued_from_facts(
    profile: m.ActorProfile, message_id: str, delay: int | None, redis_id: str | None, facts: tuple[Any, ...]
) -> dict[str, Any]:
    """The enqueue event from the facts ``after_enqueue`` kept (``meta.message_facts``)."""
    meta = m.meta_from_facts(profile, facts)
    at = facts[1] / 1000  # the message's own timestamp
    return ev.new_event(ev.ENQUEUED, message_id, at, meta, delay_ms=delay, redis_message_id=redis_id)


def moved_from_facts(
    profile: m.ActorProfile, at: float, message_id: str, redis_id: str | None, facts: tuple[Any, ...]
) -> dict[str, Any]:
    """A message moved out of the delay queue, under its new Redis id."""
    meta = m.meta_from_facts(profile, facts)
    return ev.new_event(ev.ENQUEUED, message_id, at, meta, redis_message_id=redis_id, moved_out_of_delay_queue=True)


def started_event(run: run_api.Run) -> dict:
    start = run.start or {}
    fields = {k: v for k, v in start.items() if k != "at"}
    return ev.new_event(ev.STARTED, run.message_id, start["at"], run.meta, **fields)


def attempt_failed_event(run: run_api.Run, now: float, **fields: Any) -> dict[str, Any]:
    return ev.new_event(ev.ATTEMPT_FAILED, run.message_id, now, run.meta, **fields)


def completed_event(run: run_api.Run, now: float) -> dict[str, Any]:
    return ev.new_event(
        ev.COMPLETED,
        run.message_id,
        now,
        run.meta,
        outcome=run.outcome.value,
        summary=run.counts,
        operator_message=run.operator_message,
        failure_summary=run.failure_summary,
        progress_processed=run.processed,
        progress_total=run.total,
    )


def progress_event(run: run_api.Run, now: float) -> dict[str, Any]:
    return ev.new_event(
        ev.PROGRESS,
        run.message_id,
        now,
        run.meta,
        summary=dict(run.counts),
        operator_message=run.operator_message,
        progress_processed=run.processed,
        progress_total=run.total,
    )
