"""What the recorder knows about an actor and a message, as run metadata and evidence."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any

import dramatiq
from dramatiq.common import q_name

from runwatch import redact, tracebacks, wire
from runwatch.events import DEFAULT_SUMMARY_KEYS, sanitize_error
from runwatch.options import ACTOR_OPTIONS as ACTOR_OPTIONS  # the recorder declares them
from runwatch.options import (
    INITIATOR_OPTION,
    LABEL_OPTION,
    QUEUED_STALE_SECONDS_OPTION,
    RETRY_OF_OPTION,
    RUNNING_STALE_SECONDS_OPTION,
    STORE_ARGS_OPTION,
    SUMMARY_KEYS_OPTION,
    TENANT_OPTION,
    TRACK_OPTION,
    TYPE_OPTION,
)

TRACEBACK_MAX_CHARS = 4000


@dataclass(frozen=True)
class ActorProfile:
    tracked: bool
    static_meta: dict[str, Any]
    summary_keys: frozenset[str]
    store_args: bool


def actor_profile(broker: dramatiq.Broker, actor: dramatiq.Actor | None, actor_name: str) -> ActorProfile:
    options = actor.options if actor is not None else {}
    defaults = {type(m).__name__: m for m in broker.middleware}
    retries, time_limit = defaults.get("Retries"), defaults.get("TimeLimit")
    return ActorProfile(
        tracked=options.get(TRACK_OPTION, True),
        static_meta={
            "actor": actor_name,
            "type": options.get(TYPE_OPTION) or actor_name,
            "label": options.get(LABEL_OPTION),
            "queued_stale_seconds": options.get(QUEUED_STALE_SECONDS_OPTION),
            "running_stale_seconds": options.get(RUNNING_STALE_SECONDS_OPTION),
            "max_retries": options.get("max_retries", getattr(retries, "max_retries", None)),
            "time_limit_ms": options.get("time_limit", getattr(time_limit, "time_limit", None)),
        },
        summary_keys=DEFAULT_SUMMARY_KEYS | frozenset(options.get(SUMMARY_KEYS_OPTION, ())),
        store_args=bool(options.get(STORE_ARGS_OPTION, False)),
    )


def message_facts(message: dramatiq.Message[Any] | dramatiq.MessageProxy) -> tuple[Any, ...]:
    """The per-message facts the metadata needs, as a flat tuple of scalars.

    PERF: a tuple of strings and numbers is untracked by the garbage collector, so holding many
    of them until the next flush costs no GC time, unlike the message or a dict.
    """
    options = message.options
    return (
        message.queue_name,
        message.message_timestamp,
        options.get(TENANT_OPTION),
        options.get(INITIATOR_OPTION),
        options.get(RETRY_OF_OPTION),
        options.get("max_retries"),
        options.get("time_limit"),
    )


def message_meta(
    profile: ActorProfile,
    message: dramatiq.Message[Any] | dramatiq.MessageProxy,
    redactor: redact.Redactor | None = None,
) -> dict[str, Any]:
    meta = meta_from_facts(profile, message_facts(message))
    if profile.store_args:
        # A deep copy (the message was encoded to JSON already, so this round trip cannot fail),
        # with denylisted keyword values and secrets in strings masked before it is shipped.
        args = wire.loads(wire.dumps({"args": list(message.args), "kwargs": dict(message.kwargs)}))
        meta["args"] = (redactor or redact.default()).value(args)
    return meta


def meta_from_facts(profile: ActorProfile, facts: tuple[Any, ...]) -> dict[str, Any]:
    queue, timestamp_ms, tenant, initiator, retry_of, max_retries, time_limit = facts
    meta = {
        **profile.static_meta,
        "queue": q_name(queue),
        "created_at": timestamp_ms / 1000,
        "tenant_id": tenant,
        "initiator": initiator,
        "retry_of": retry_of,
    }
    if max_retries is not None:
        meta["max_retries"] = max_retries
    if time_limit is not None:
        meta["time_limit_ms"] = time_limit
    return meta


def worker_id(broker: dramatiq.Broker) -> str:
    """The id a run's worker is recorded under: the Redis broker heartbeats under ``broker_id`` (the
    healer checks liveness with it); elsewhere host and process."""
    return getattr(broker, "broker_id", None) or f"{socket.gethostname()}:{os.getpid()}"


def error_evidence(exc: BaseException | None, redactor: redact.Redactor | None = None) -> dict[str, Any]:
    """Exception type, masked message, where it was raised, digest and masked traceback (evidence only).

    The traceback is the whole chain Python prints (causes, contexts, notes, exception groups),
    every line masked, source lines included, with host paths made relative.
    """
    if exc is None:
        return {}
    redactor = redactor or redact.default()
    return {
        "exception_type": type(exc).__name__,
        "exception_message": sanitize_error(_message(exc), redactor),
        "traceback_digest": tracebacks.digest(exc),
        "raised_at": tracebacks.raised_at(exc),
        "traceback": tracebacks.format_exception(exc, redactor)[-TRACEBACK_MAX_CHARS:],
    }


def _message(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:  # NOTE: a broken __str__ must not cost the run its failure evidence
        return f"<{type(exc).__name__}: str() failed>"
