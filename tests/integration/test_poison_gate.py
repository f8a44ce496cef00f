"""The poison gate on real PostgreSQL (and a real RabbitMQ redelivery): the healer's rule, per message."""

from __future__ import annotations

import time

import dramatiq
import pytest
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from runwatch.workers.poison_gate import PoisonGate
from sqlalchemy import text

from runwatch import statements as sql
from runwatch.db import engine_for
from tests.support.crash_loops import crash_loop, message_id_of
from tests.support.ledger import seed
from tests.support.rabbitmq import unique
from tests.support.rabbitmq_heal import holding_consumer
from tests.support.waiting import wait_for

MAX_CRASH, WINDOW = 3, 600


class Delivery:
    """What the gate reads of a Dramatiq message proxy."""

    def __init__(self, message_id: str, redelivered: bool = True) -> None:
        self.message_id, self.redelivered = message_id, redelivered


@pytest.fixture
def gate(engine):
    return PoisonGate(engine, max_crash_redeliveries=MAX_CRASH, crash_window_seconds=WINDOW)


@pytest.fixture
def world(engine):
    """Runs on both sides of the rule: id -> whether it is a poison pill."""
    return {
        crash_loop(engine, 5): True,  # 4 crash redeliveries, 5 starts in the window
        crash_loop(engine, 4): True,  # exactly 3 crash redeliveries, 4 starts
        crash_loop(engine, 3): False,  # 2 crash redeliveries: under the limit
        crash_loop(engine, 6, attempts=4): False,  # retries, not crashes
        crash_loop(engine, 5, starts_ago_seconds=WINDOW): False,  # deliveries outside the window
        seed(engine, "running", worker_id="w"): False,
        seed(engine, "completed", outcome="failed"): False,
    }


def test_the_gate_refuses_exactly_the_healers_poison_pills(engine, gate, world):
    refused = {run_id for run_id in world if gate.refuse(Delivery(message_id_of(engine, run_id)))}
    assert refused == {run_id for run_id, poison in world.items() if poison}
    with engine.begin() as conn:  # NOTE: the per-message statement and the healer's must not drift
        candidates = conn.execute(sql.POISON_CANDIDATES, {"window": WINDOW, "max_crash": MAX_CRASH, "limit": 100})
        assert {r.id for r in candidates} == refused


def test_the_evidence_says_why(engine, gate, world):
    poison = next(run_id for run_id, p in world.items() if p)
    evidence = gate.evidence(Delivery(message_id_of(engine, poison)))
    assert evidence == {
        "poison_pill": True,
        "redelivered": True,
        "crash_redeliveries": 4,
        "max_crash_redeliveries": MAX_CRASH,
        "window_seconds": WINDOW,
        "attempts": 1,
        "deliveries": 5,
        "starts_in_window": 5,
    }


def test_a_first_delivery_is_never_checked(engine, gate, world):
    poison = next(run_id for run_id, p in world.items() if p)
    assert gate.refuse(Delivery(message_id_of(engine, poison), redelivered=False)) is False
    assert gate.refuse(Delivery("no-such-message")) is False


def test_an_unreachable_ledger_lets_the_message_run_at_once():
    gate = PoisonGate(engine_for("postgresql://postgres@127.0.0.1:1/nowhere"), backoff_seconds=3600)
    started = time.monotonic()
    assert gate.refuse(Delivery("m")) is False and gate.refuse(Delivery("m")) is False
    assert time.monotonic() - started < 5  # one refused connection, then the backoff answers


def test_a_slow_ledger_is_cut_short_by_the_statement_timeout(engine, world):
    poison = next(run_id for run_id, p in world.items() if p)
    gate = PoisonGate(engine, max_crash_redeliveries=MAX_CRASH, crash_window_seconds=WINDOW, statement_timeout_ms=50)
    with engine.begin() as locker:  # NOTE: an exclusive lock makes the gate's read wait until its timeout
        locker.execute(text("LOCK TABLE run_events IN ACCESS EXCLUSIVE MODE"))
        assert gate.refuse(Delivery(message_id_of(engine, poison))) is False


def test_a_real_rabbitmq_redelivery_of_a_poison_pill_is_refused_and_dead_lettered(engine, gate, rabbitmq_url):
    broker = RabbitmqBroker(url=rabbitmq_url)
    name = unique("poison")

    @dramatiq.actor(broker=broker, queue_name=name, actor_name=f"crashes_{name}")
    def crashes() -> None: ...

    try:
        sent = crashes.send()
        crash_loop(engine, 5, message_id=sent.message_id)
        # NOTE: a worker takes it and dies without acking: RabbitMQ hands it back, marked redelivered.
        with holding_consumer(rabbitmq_url, name, expect=1):
            pass
        consumer = broker.consume(name, prefetch=1, timeout=100)
        try:
            delivery = wait_for(lambda: next(iter(consumer), None))
            assert delivery.redelivered is True and delivery.message_id == sent.message_id
            assert gate.refuse(delivery) is True
            # What the recorder does with a refusal: message.fail(), then Dramatiq nacks it.
            delivery.fail()
            consumer.nack(delivery)
        finally:
            consumer.close()
        wait_for(lambda: broker.get_queue_message_counts(name) == (0, 0, 1))
    finally:
        broker.close()
