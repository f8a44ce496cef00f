"""The failure callback: a dead-lettered message becomes a reconciled-failed run with evidence.

Called from the recorder's ``after_nack`` (the terminal failure of a message, also for an
unknown actor, which gets no process hooks). It only builds the event; the ledger applies it
with the same guarded upsert as every other event, so it is idempotent and never touches a
terminal run.
"""

from __future__ import annotations

import re
import time
from typing import Any

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.common import xq_name

from runwatch import events as ev
from runwatch import redact
from runwatch.reasons import dead_letter_reason

from .keys import DEFAULT_NAMESPACE, Keys

_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def _where(broker: dramatiq.Broker, queue: str, message: Any) -> dict[str, Any]:
    """Where the dead letter lies: a RabbitMQ queue (no id outside the body), or a Redis key and id."""
    if isinstance(broker, RabbitmqBroker):
        return {"dead_letter_key": xq_name(queue), "message_id": message.message_id, "broker": "rabbitmq"}
    keys = Keys(getattr(broker, "namespace", DEFAULT_NAMESPACE))
    return {
        "dead_letter_key": keys.dead_letters(queue),
        "message_id": message.message_id,
        "redis_message_id": message.options.get("redis_message_id"),
    }


def failure_code(exception_type: str | None) -> str:
    """A stable failure-summary code from an exception type: ``TimeLimitExceeded`` -> ``job.time_limit_exceeded``."""
    return "job." + (_CAMEL.sub("_", exception_type).lower() if exception_type else "unknown_failure")


def dead_letter_event(
    broker: dramatiq.Broker,
    message: dramatiq.Message[Any] | dramatiq.MessageProxy,
    run_meta: dict[str, Any],
    failure: dict[str, Any],
) -> dict[str, Any]:
    """The ``dead_lettered`` event for ``message``; ``failure`` is the worker-captured evidence.

    ``failure`` passes the redaction layer here too, whoever built it: nothing reaches the
    ledger from a dead letter unmasked.
    """
    failure = redact.default().value(dict(failure))
    reason = dead_letter_reason(failure.get("exception_type"), skipped=failure.pop("skipped", False))
    evidence = {
        **failure,
        "queue": run_meta["queue"],
        "retries": message.options.get("retries", 0),
        "max_retries": run_meta.get("max_retries"),
        **_where(broker, run_meta["queue"], message),
    }
    return ev.new_event(
        ev.DEAD_LETTERED,
        message.message_id,
        time.time(),
        run_meta,
        reason_code=reason.code,
        evidence=evidence,
        failure_summary=[{"code": failure_code(evidence.get("exception_type")), "message": reason.message}],
    )
