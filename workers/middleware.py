"""The recording middleware: Dramatiq hooks in, run events out.

Each hook builds one event and hands it to the shipper; the lifecycle rules live in
``runwatch/`` (fold and guarded upsert). Install it first in the middleware list (see
``workers.install``): its ``after_*`` hooks then run last, after ``Retries`` has decided
whether the message is retried or failed, and outside ``TimeLimit``'s injected exceptions.

Every hook is wrapped so that a Runwatch failure is logged and swallowed: a job never fails,
and a worker never stops, because of the recorder.
"""

from __future__ import annotations

import functools
import logging
import subprocess
import threading
import time
from typing import Any

import dramatiq
from dramatiq.errors import ActorNotFound
from dramatiq.middleware import Middleware, SkipMessage
from runwatch.bridge.callback import dead_letter_event
from runwatch.bridge.keys import DEFAULT_NAMESPACE

from runwatch import events as ev
from runwatch.errors import ValidationError
from runwatch.options import SEEN_OPTION
from runwatch.settings import Settings

from . import hook_events as built
from . import meta as m
from . import run as run_api
from . import services as background
from .errors import InvalidSendOptions
from .poison_gate import PoisonGate
from .shipper import EventShipper
from .transport import RABBITMQ, REDIS, Transport, broker_kind

logger = logging.getLogger("runwatch.recorder")


def _never_raise(hook):
    @functools.wraps(hook)
    def guarded(self, *args, **kwargs):
        try:
            return hook(self, *args, **kwargs)
        except (InvalidSendOptions, SkipMessage):
            raise
        except Exception:
            self.hook_errors += 1
            logger.exception("runwatch recorder hook %s failed; the job is not affected", hook.__name__)

    return guarded


ENQUEUED_BUILDER = "enqueued"


class Recorder(Middleware):
    """Records every run of tracked actors (all actors unless ``runwatch_track=False``)."""

    def __init__(self, shipper: EventShipper, settings: Settings, transport: Transport | None = None) -> None:
        self.shipper = shipper
        self.settings = settings
        self.transport = transport or Transport(REDIS, redis_client=shipper.client)
        self.hook_errors = 0
        self._profiles: dict[str, m.ActorProfile] = {}
        # NOTE: threads share this instance, and one message can be delivered twice at once, so
        # per-delivery state lives with the worker thread that holds the delivery (run_api).
        self._local = threading.local()
        shipper.builders[ENQUEUED_BUILDER] = self._build_enqueued
        shipper.builders["moved"] = self._build_moved
        self._progress_interval = settings.progress_interval_ms / 1000
        self.services: background.Services | None = None  # started once the worker has booted
        self.poison_gate: PoisonGate | None = None  # set at worker boot on RabbitMQ (redelivered flags)

    @property
    def actor_options(self) -> set[str]:
        return set(m.ACTOR_OPTIONS)

    # -- producer side -------------------------------------------------------------------

    def before_enqueue(self, broker: dramatiq.Broker, message: dramatiq.Message, delay: int | None) -> None:
        options = message.options
        if SEEN_OPTION in options:
            return  # a retry or a delayed message moving queues: the run exists already
        try:
            ev.validate_tenant_id(options.get(m.TENANT_OPTION))
            initiator = options.get(m.INITIATOR_OPTION)
            if initiator is not None and (not isinstance(initiator, str) or not initiator.strip()):
                raise ValidationError(f"initiator must be a non-empty string, got {initiator!r}")
        except ValidationError as exc:
            raise InvalidSendOptions(f"cannot send {message.actor_name}: {exc}") from None
        options[SEEN_OPTION] = 1
        self._local.first_enqueue = message.message_id

    @_never_raise
    def after_enqueue(self, broker: dramatiq.Broker, message: dramatiq.Message, delay: int | None) -> None:
        if getattr(self._local, "first_enqueue", None) != message.message_id:
            run = run_api.active(message.message_id)
            if delay is not None and run is not None:  # Retries re-enqueued it
                run.retried_at = time.time()
                run.retry_at = run.retried_at + delay / 1000
                run.retry_redis_message_id = message.options.get("redis_message_id")
            elif (
                delay is None
                and run is None
                and message.options.get("redis_message_id")
                and self._profile(broker, message.actor_name).tracked
            ):
                # NOTE: a delayed message (or a retry) moving out of <queue>.DQ gets a new Redis
                # id; without it the healer would look for the message under the old one. On
                # RabbitMQ nothing changes (no broker id), and the move races the redelivery's start.
                self.shipper.emit(
                    (
                        "moved",
                        time.time(),
                        message.message_id,
                        message.options.get("redis_message_id"),
                        message.actor_name,
                        *m.message_facts(message),
                    )
                )
            return
        self._local.first_enqueue = None
        profile = self._profile(broker, message.actor_name)
        if not profile.tracked:
            return
        if profile.store_args:
            # NOTE: built now, not on the shipper thread: the arguments as sent, even if the caller
            # mutates them after send(). Opt-in and rare, so the cost stays off the common path.
            self.shipper.emit(built.enqueued_event(profile, message, delay))
            return
        # PERF: a flat tuple of scalars (GC-untracked) instead of a closure over the message;
        # the shipper thread builds the event from it (see _build_enqueued).
        facts = m.message_facts(message)
        self.shipper.emit(
            (
                ENQUEUED_BUILDER,
                message.actor_name,
                message.message_id,
                delay,
                message.options.get("redis_message_id"),
                *facts,
            )
        )

    # -- worker side ---------------------------------------------------------------------

    @_never_raise
    def before_process_message(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy) -> None:
        profile = self._profile(broker, message.actor_name)
        if not profile.tracked:
            return
        run = run_api.Run(
            message.message_id,
            profile.static_meta["type"],
            profile.summary_keys,
            self._on_progress,
            functools.partial(m.message_meta, profile, message),
        )
        run_api.enter(run)
        run.attempt = message.options.get("retries", 0) + 1
        if self.poison_gate is not None:
            self.poison_gate.stop(message, run)  # raises SkipMessage for a crash loop's redelivery
        run.start = {
            "at": time.time(),
            "attempt": run.attempt,
            "worker_id": m.worker_id(broker),
            "redis_message_id": message.options.get("redis_message_id"),
        }
        run.start_key = id(run)
        # PERF: held back one flush interval (and built only then); a job that ends sooner ships
        # one event, not two.
        self.shipper.defer(run.start_key, functools.partial(built.started_event, run))

    @_never_raise
    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: dramatiq.MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        run = run_api.active(message.message_id)
        if run is None:
            return
        now = time.time()
        if exception is None:
            # PERF: built by the shipper thread while this one waits for the flush anyway.
            self.shipper.emit(lambda: self._with_start(run, built.completed_event(run, now)), durable=True)
            return
        if run.retried_at is not None:
            # NOTE: the attempt ended before Retries re-enqueued it; our hook runs after that and,
            # on a busy host, can run after the retry itself ended. Dated now, the history would
            # list the failure after the retry's outcome.
            now = run.retried_at
        error = m.error_evidence(exception)
        attempt = run.attempt
        next_retry = None if message.failed else run.retry_at
        if message.failed:
            run.failure = {**error, "retries": attempt}
        summary = {k: v for k, v in error.items() if k != "traceback"}
        redis_id = None if message.failed else run.retry_redis_message_id
        failed = built.attempt_failed_event(
            run, now, attempt=attempt, error=summary, next_retry_at=next_retry, redis_message_id=redis_id
        )
        self.shipper.emit(self._with_start(run, failed), durable=not message.failed)

    @_never_raise
    def after_skip_message(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy) -> None:
        run = run_api.active(message.message_id)
        if run is None:
            return
        if message.failed:  # the age limit (or the poison gate): nacked next, dead-lettered as abandoned
            if run.failure is None:
                evidence = {"exception_type": "SkipMessage", "exception_message": "message skipped (age limit)"}
                run.failure = {**evidence, "skipped": True}
            return
        # NOTE: skipped and acked (a dedupe or abort middleware): the job refused to run, as a
        # blocked run does; without this event the run would wait for the healer as stale.
        run.block("job.skipped", "Skipped by a middleware before it ran")
        now = time.time()
        self.shipper.emit(lambda: self._with_start(run, built.completed_event(run, now)), durable=True)

    @_never_raise
    def after_nack(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy) -> None:
        run = run_api.active(message.message_id)
        run_api.leave()
        if run is not None and run.failure is not None:
            event = self._with_start(run, dead_letter_event(broker, message, run.meta, dict(run.failure)))
        else:  # no process hooks ran: an unknown actor, or a skip before ours
            profile = self._profile(broker, message.actor_name)
            if not profile.tracked:
                return
            meta = m.message_meta(profile, message)
            event = dead_letter_event(broker, message, meta, m.error_evidence(message._exception))
        self.shipper.emit(event, durable=True)

    def after_ack(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy) -> None:
        # NOTE: not a completion (a delayed message leaving .DQ is acked too); only cleanup.
        if run_api.active(message.message_id) is not None:
            run_api.leave()

    # -- process lifecycle ---------------------------------------------------------------

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        namespace = getattr(broker, "namespace", DEFAULT_NAMESPACE)
        self.services = background.start(self.settings, self.transport, namespace, broker=broker)
        if broker_kind(broker) == RABBITMQ:
            self.poison_gate = PoisonGate.for_worker(self.settings)

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.shipper.flush()
        if self.services is not None:
            self.services.shutdown()

    @property
    def drain_process(self) -> subprocess.Popen | None:
        """The drainer child this process runs (None unless it holds the host's drain lock)."""
        return self.services.drain_process if self.services is not None else None

    @property
    def drain_thread(self) -> threading.Thread | None:
        """The drainer thread this process runs (``RUNWATCH_DRAIN=thread``)."""
        return self.services.drain_thread if self.services is not None else None

    # -- helpers -------------------------------------------------------------------------

    def _with_start(self, run: run_api.Run, event: dict[str, Any]) -> dict[str, Any]:
        """Fold the run's start into ``event`` if it is still held back (``events.expand`` unfolds it)."""
        if run.start_key is not None and self.shipper.take_deferred(run.start_key):
            run.start_key = None
            event["start"] = run.start
        elif run.start is not None:
            # NOTE: the start shipped on its own and may reach the ledger after this event.
            event["started_at"] = run.start["at"]
        return event

    def _build_enqueued(
        self, actor_name: str, message_id: str, delay: int | None, redis_id: str | None, *facts: Any
    ) -> dict[str, Any]:
        """The enqueue event from the facts ``after_enqueue`` kept (runs in the shipper thread)."""
        return built.enqueued_from_facts(self._profiles[actor_name], message_id, delay, redis_id, facts)

    def _build_moved(
        self, at: float, message_id: str, redis_id: str | None, actor_name: str, *facts: Any
    ) -> dict[str, Any]:
        return built.moved_from_facts(self._profiles[actor_name], at, message_id, redis_id, facts)

    def _on_progress(self, run: run_api.Run) -> None:
        if run.due_for_progress(self._progress_interval):
            self.shipper.emit(built.progress_event(run, time.time()))

    def _profile(self, broker: dramatiq.Broker, actor_name: str) -> m.ActorProfile:
        profile = self._profiles.get(actor_name)
        if profile is None:
            try:
                actor = broker.get_actor(actor_name)
            except ActorNotFound:
                actor = None
            profile = self._profiles[actor_name] = m.actor_profile(broker, actor, actor_name)
        return profile
