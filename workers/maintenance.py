"""Periodic maintenance inside the workers: the healer, the dead-letter scan, and the console's
dead letters (operator actions executed, the dead-letter mirror refreshed), no extra process.

Every worker process runs one maintenance thread. Each pass takes a PostgreSQL advisory lock,
so however many processes and hosts run it, one pass runs at a time; the others return at
once. Healing goes on as long as any worker of any queue lives; for the case where none does,
schedule ``runwatch heal --once`` and ``runwatch bridge scan`` from cron as a backstop.

``declare_actors(broker)`` also declares the passes as Dramatiq actors (``runwatch_heal``,
``runwatch_bridge_scan``), for teams that prefer to trigger them from their own scheduler.

The dead-letter passes read the worker's broker: Redis through the worker's client, RabbitMQ
through a connection opened for each pass and closed after it (a pika ``BlockingConnection`` is
not thread-safe, and the server closes one left idle past its heartbeats).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time

import dramatiq
import redis
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from runwatch.bridge import amqp, locators
from runwatch.bridge.actions import execute_once
from runwatch.bridge.adapter import DEFAULT_MIN_AGE_SECONDS, AdapterResult, reconcile_once
from runwatch.bridge.keys import DEFAULT_NAMESPACE, Keys
from runwatch.bridge.letter_store import LetterStore, ledger_queues, letter_store
from runwatch.bridge.locators import locator_for
from runwatch.bridge.mirror import mirror_once
from runwatch.bridge.rabbitmq_letters import RabbitmqLetters, RabbitmqUnreachable
from runwatch.bridge.redis_letters import RedisLetters

from runwatch import passes
from runwatch.burstlog import BurstLogger
from runwatch.counter_store import CounterStore, LedgerCounters, RedisCounters, record_to
from runwatch.db import engine_for
from runwatch.healer import HealResult, Locator, heal_once, options_from, record_broker_outage
from runwatch.retention import prune_once
from runwatch.settings import Settings
from runwatch.thresholds import ThresholdPolicy

logger = logging.getLogger("runwatch.maintenance")
#: A pass that fails with one of these could not reach the broker: the healer waits out a grace period.
BROKER_ERRORS: tuple[type[BaseException], ...] = (*locators.BROKER_ERRORS, RabbitmqUnreachable)
#: Retention is cheap when there is nothing to delete, but there is no point checking more often.
PRUNE_INTERVAL_SECONDS = 3600


class Maintenance:
    """One healer pass and one dead-letter scan, with their dependencies built once per process."""

    def __init__(
        self,
        client: redis.Redis | None,
        settings: Settings,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        broker: dramatiq.Broker | None = None,
    ) -> None:
        """``client``: the Redis the worker's run events go to (None: they travel through RabbitMQ)."""
        self.settings = settings
        self.client = client
        self.broker = broker
        self.keys = Keys(namespace)
        self.engine = engine_for(settings.require_database_url(), pool_size=1)
        self.policy = ThresholdPolicy(settings)
        self.locator = _locator(settings, client, self.keys, broker)
        self._errors = BurstLogger(logger, "maintenance pass failed")

    def run_once(self, *, prune: bool = False, dead_letter_min_age_seconds: float = DEFAULT_MIN_AGE_SECONDS) -> None:
        kind, started = passes.HEALER, time.time()
        try:
            healed = heal_once(self.engine, self.locator, self.policy, options_from(self.settings))
            kind, started = passes.BRIDGE, time.time()
            with self.letters() as letters:
                scanned = reconcile_once(letters, self.engine, self.policy, min_age_seconds=dead_letter_min_age_seconds)
                # The console's dead letters: operators' actions first, so the mirror pass sees their effect.
                acted = execute_once(letters, self.engine, self.policy)
                mirror_once(letters, self.engine)
            if prune:
                kind, started = passes.PRUNE, time.time()
                prune_once(self.engine, self.settings.retention_days)
        except BROKER_ERRORS as exc:
            self._errors.failure(exc)
            # NOTE: later passes wait out the grace period; PostgreSQL may be down too, then the
            # next pass simply tries again.
            with contextlib.suppress(Exception):
                record_broker_outage(self.engine, exc)
            passes.record_error(self.engine, kind, exc, started=started)
            return
        except Exception as exc:  # PostgreSQL down, or a bug: log per burst, try next interval
            self._errors.failure(exc)
            passes.record_error(self.engine, kind, exc, started=started)
            return
        self._errors.success()
        self.count(healed, scanned)
        if healed.reconciled or scanned.reconciled or acted.finished or acted.failed:
            logger.info(
                "maintenance: healed %d stale run(s), reconciled %d dead letter(s), finished operator action(s) %s%s",
                healed.reconciled,
                scanned.reconciled,
                acted.finished,
                f", failed {acted.failed}" if acted.failed else "",
            )

    def letters(self) -> LetterStore:
        """The dead letters of this worker's broker (RabbitMQ: a fresh connection, closed when the pass ends)."""
        if isinstance(self.broker, RabbitmqBroker):
            broker = self.broker

            def queues() -> list[str]:
                return sorted(set(broker.get_declared_queues()) | set(ledger_queues(self.engine)))

            return RabbitmqLetters(amqp.url_of(broker.parameters), queues=queues)
        if self.client is None or (self.broker is None and self.settings.broker_kind == "rabbitmq"):
            # NOTE: no worker broker (a scheduler's actor), or no client: the settings say which broker.
            return letter_store(
                self.settings, redis_client=self.client, namespace=self.keys.namespace, engine=self.engine
            )
        return RedisLetters(self.client, self.keys)

    def count(self, *results: HealResult | AdapterResult) -> None:
        """Add the runs these passes ended to the run counters of /metrics (``runwatch.counter_store``)."""
        finished = [run for r in results for run in r.finished]
        # NOTE: where the run events travel, as the drainer counts: no Redis client, no Redis.
        store: CounterStore = LedgerCounters(self.engine)
        if self.client is not None:
            store = RedisCounters(self.client, self.settings.event_stream)
        record_to(store, finished)

    def run_forever(self, stop: threading.Event) -> None:
        last_prune = float("-inf")

        def step() -> None:
            nonlocal last_prune
            due = time.monotonic() - last_prune >= PRUNE_INTERVAL_SECONDS
            self.run_once(prune=due)
            last_prune = time.monotonic() if due else last_prune

        passes.loop(step, interval_seconds=self.settings.heal_interval_seconds, stop=stop)


def _locator(settings: Settings, client: redis.Redis | None, keys: Keys, broker: dramatiq.Broker | None) -> Locator:
    """The healer's evidence from the worker's broker (else ``RUNWATCH_BROKER``'s)."""
    if not isinstance(broker, RabbitmqBroker):
        return locator_for(settings, kind="redis" if broker is not None else None, redis_client=client, keys=keys)
    if client is not None:  # NOTE: this worker's run events travel through Redis: its stream says what is in flight
        settings = dataclasses.replace(settings, event_transport="redis")
    url = amqp.url_of(broker.parameters)
    return locator_for(settings, kind="rabbitmq", redis_client=client, keys=keys, rabbitmq_url=url)


def start_thread(
    client: redis.Redis | None,
    settings: Settings,
    namespace: str,
    stop: threading.Event,
    *,
    broker: dramatiq.Broker | None = None,
) -> threading.Thread | None:
    """The maintenance thread; ``broker`` (the worker's) says where dead letters lie, else ``RUNWATCH_BROKER``."""
    if settings.heal_interval_seconds <= 0 or not settings.database_url:
        return None
    maintenance = Maintenance(client, settings, namespace=namespace, broker=broker)
    thread = threading.Thread(target=maintenance.run_forever, args=(stop,), name="runwatch-maintenance", daemon=True)
    thread.start()
    return thread


def declare_actors(broker: dramatiq.Broker, settings: Settings | None = None) -> dict[str, dramatiq.Actor]:
    """The maintenance passes as untracked actors, for an external scheduler to send (they read its broker)."""
    settings = settings or Settings.from_env()
    namespace = getattr(broker, "namespace", DEFAULT_NAMESPACE)
    state: dict[str, Maintenance] = {}

    def maintenance() -> Maintenance:
        if "m" not in state:
            # NOTE: a RabbitmqBroker has no Redis client: its dead letters are read over AMQP.
            state["m"] = Maintenance(getattr(broker, "client", None), settings, namespace=namespace, broker=broker)
        return state["m"]

    @dramatiq.actor(broker=broker, queue_name="runwatch", runwatch_track=False, max_retries=0)
    def runwatch_heal() -> None:
        m = maintenance()
        m.count(heal_once(m.engine, m.locator, m.policy, options_from(m.settings)))

    @dramatiq.actor(broker=broker, queue_name="runwatch", runwatch_track=False, max_retries=0)
    def runwatch_bridge_scan() -> None:
        m = maintenance()
        with m.letters() as letters:
            m.count(reconcile_once(letters, m.engine, m.policy))
            execute_once(letters, m.engine, m.policy)
            mirror_once(letters, m.engine)

    return {"runwatch_heal": runwatch_heal, "runwatch_bridge_scan": runwatch_bridge_scan}
