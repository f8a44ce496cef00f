"""The healer on real RabbitMQ and PostgreSQL: queue counts as evidence, time faked in the database.

The management API is not enabled here, so every observation says "time alone" where it would
have used unacked counts; the rules for those counts are unit-tested (tests/unit/test_verdicts_counted.py).
"""

from __future__ import annotations

import json

import dramatiq
import pytest
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from runwatch.bridge import amqp
from runwatch.bridge.rabbitmq_locator import BROKER_ERRORS, RabbitmqLocator

from runwatch import counters
from runwatch.counter_store import LedgerCounters
from runwatch.healer import HealOptions, heal_once
from runwatch.settings import Settings
from runwatch.thresholds import ThresholdPolicy
from tests.support.crash_loops import crash_loop
from tests.support.ledger import row
from tests.support.rabbitmq import unique
from tests.support.rabbitmq_heal import holding_consumer, seed_on
from tests.support.waiting import wait_for


@pytest.fixture
def broker(rabbitmq_url):
    broker = RabbitmqBroker(url=rabbitmq_url)
    broker.emit_after("process_boot")
    yield broker
    broker.close()


@pytest.fixture
def queue(broker):
    """A fresh Dramatiq queue (``q``, ``q.DQ``, ``q.XQ`` declared) and an actor on it."""
    name = unique("heal")

    @dramatiq.actor(broker=broker, queue_name=name, actor_name=f"job_{name}")
    def job() -> None: ...

    broker.declare_queue(name, ensure=True)
    return job


@pytest.fixture
def heal(engine, rabbitmq_url, database_url):
    event_queue = unique("events")
    locator = RabbitmqLocator(rabbitmq_url, event_queue=event_queue, event_sample_interval_seconds=0.01)
    policy = ThresholdPolicy(Settings(database_url=database_url))

    def run(**options):
        return heal_once(engine, locator, policy, HealOptions(**options))

    run.locator, run.event_queue = locator, event_queue
    yield run
    locator.close()


def ready(url: str, name: str) -> int | None:
    connection = amqp.connect(url)
    try:
        return amqp.queue_depth(connection, name).messages
    finally:
        connection.close()


def decision(result, run_id):
    return next(d for d in result.decisions if d["id"] == run_id)


def test_a_queued_run_is_backlog_while_messages_wait_and_healed_with_evidence_once_purged(
    engine, broker, queue, heal, rabbitmq_url
):
    name = queue.queue_name
    waiting, delayed_run = seed_on(engine, name, age=120), seed_on(engine, name, age=130)
    queue.send()
    wait_for(lambda: ready(rabbitmq_url, name) == 1)

    result = heal()
    assert (result.candidates, result.reconciled, dict(result.skipped)) == (2, 0, {"backlog": 2})
    note = row(engine, waiting)["healer_note"]
    assert note["message_found_in"] == "queue" and note["looked_for_message_in"] == [name, f"{name}.DQ"]
    assert note["broker_queue_counts"][name] == {"ready": 1, "consumers": 0, "unacked": "unknown"}

    broker.flush(name)
    queue.send_with_options(delay=3_600_000)  # an hour away: waits in the delay queue
    wait_for(lambda: ready(rabbitmq_url, f"{name}.DQ") == 1)
    assert decision(heal(), delayed_run)["message_found_in"] == "delay_queue"

    broker.flush(name)
    result = heal()
    assert (result.reconciled, dict(result.skipped)) == (2, {})
    healed = row(engine, waiting)
    assert (healed["status"], healed["outcome"], healed["reason_code"]) == ("completed", "failed", "run.stale_queued")
    evidence = healed["reconciliation_evidence"]
    assert evidence["broker_checked"] is True and evidence["message_found_in"] is None
    assert evidence["note"] == "no message waits in its queues" and evidence["threshold_seconds"] == 60
    assert "no ready message" in evidence["broker_detail"] and "time alone" in evidence["broker_detail"]
    assert evidence["broker_queue_counts"][f"{name}.DQ"]["ready"] == 0


def test_a_run_whose_queue_was_deleted_is_healed_as_gone(engine, heal):
    gone = unique("deleted")
    queued, running = seed_on(engine, gone), seed_on(engine, gone, "running", worker_id="w")
    assert heal().reconciled == 2
    assert row(engine, queued)["reason_code"] == "run.stale_queued"
    evidence = row(engine, running)["reconciliation_evidence"]
    assert row(engine, running)["reason_code"] == "run.stale_running" and "does not exist" in evidence["broker_detail"]
    assert evidence["broker_queue_counts"] == {gone: {"exists": False}, f"{gone}.DQ": {"exists": False}}


def test_a_running_run_whose_message_came_back_awaits_redelivery_until_the_hard_ceiling(
    engine, queue, heal, rabbitmq_url
):
    name = queue.queue_name
    slow = seed_on(engine, name, "running", age=120, worker_id="dead", time_limit_ms=600_000)
    overdue = seed_on(engine, name, "running", age=700, worker_id="dead", time_limit_ms=60_000)
    queue.send()
    # NOTE: a worker takes the message and dies without acking: RabbitMQ hands it back, redelivered.
    with holding_consumer(rabbitmq_url, name, expect=1) as held:
        assert ready(rabbitmq_url, name) == 0 and not held[0].redelivered
    wait_for(lambda: ready(rabbitmq_url, name) == 1)

    result = heal()
    assert (result.reconciled, dict(result.skipped)) == (1, {"requeued": 1})
    note = row(engine, slow)["healer_note"]
    assert note["why"] == "requeued" and note["message_found_in"] == "queue" and "hard_ceiling_at" in note
    healed = row(engine, overdue)
    assert healed["reason_code"] == "run.stale_running"
    assert "past its time limit plus margin" in healed["reconciliation_evidence"]["note"]


def test_a_running_run_nobody_can_hold_is_healed_at_its_threshold(engine, queue, heal):
    stale = seed_on(engine, queue.queue_name, "running", age=120, worker_id="dead", time_limit_ms=600_000)
    fresh = seed_on(engine, queue.queue_name, "running", age=10, worker_id="alive")
    result = heal()
    assert (result.candidates, result.reconciled) == (1, 1)
    evidence = row(engine, stale)["reconciliation_evidence"]
    assert "0 consumers: nobody can hold the message" in evidence["broker_detail"]
    assert evidence["note"] == "no message waits in its queues and no consumer can hold it"
    assert row(engine, fresh)["status"] == "running"


def test_a_running_run_a_live_consumer_may_hold_is_slow_until_the_hard_ceiling(engine, queue, heal, rabbitmq_url):
    name = queue.queue_name
    slow = seed_on(engine, name, "running", age=120, worker_id="w", time_limit_ms=600_000)
    overdue = seed_on(engine, name, "running", age=700, worker_id="w", time_limit_ms=60_000)
    queue.send()
    queue.send()
    with holding_consumer(rabbitmq_url, name, expect=2):
        result = heal()
        assert (result.reconciled, dict(result.skipped)) == (1, {"may_be_held": 1})
        note = row(engine, slow)["healer_note"]
        assert note["why"] == "may_be_held" and "could not tell" in note["note"]
        assert "1 consumer, unacked messages unknown" in note["broker_detail"]
        assert "time alone" in note["broker_detail"] and note["broker_queue_counts"][name]["consumers"] == 1
        assert row(engine, overdue)["reconciliation_evidence"]["note"].startswith("a consumer may hold it")
        # A queued run the consumer may hold (prefetched) is backlog until its hard ceiling, then healed.
        waiting = seed_on(engine, name, age=120, time_limit_ms=600_000)
        lost = seed_on(engine, name, age=700, time_limit_ms=60_000)
        assert heal().reconciled == 1 and row(engine, lost)["reason_code"] == "run.stale_queued"
        assert row(engine, waiting)["status"] == "queued"


def test_the_pass_waits_while_run_events_wait_in_their_queue(engine, heal, rabbitmq_url, queue):
    stale = seed_on(engine, queue.queue_name, age=120)
    assert heal.locator.unapplied_message_ids() == set()  # no event queue yet: nothing waits
    connection = amqp.connect(rabbitmq_url)
    try:
        channel = connection.channel()
        amqp.declare_event_queue(channel, heal.event_queue)
        assert heal.locator.unapplied_message_ids() == set()
        channel.basic_publish("", heal.event_queue, b"[]")
        wait_for(lambda: ready(rabbitmq_url, heal.event_queue) == 1)
        assert heal.locator.unapplied_message_ids() is None
        result = heal()
        assert result.paused and result.reconciled == 0 and row(engine, stale)["status"] == "queued"
        channel.queue_purge(heal.event_queue)
    finally:
        connection.close()
    assert heal().reconciled == 1


def test_a_broker_that_does_not_answer_raises_a_broker_error(engine, queue):
    seed_on(engine, queue.queue_name)
    locator = RabbitmqLocator("amqp://guest:guest@127.0.0.1:1/%2F", event_queue="events", timeout_seconds=1)
    policy = ThresholdPolicy(Settings())
    with pytest.raises(BROKER_ERRORS):
        heal_once(engine, locator, policy)
    with pytest.raises(BROKER_ERRORS):
        locator.observe([{"id": 1, "queue_name": "q"}])


def test_heal_explain_and_a_pass_from_the_cli_on_rabbitmq_without_redis(
    engine, queue, database_url, rabbitmq_url, monkeypatch, capsys
):
    from runwatch.cli import main
    from runwatch.variables import VARIABLES

    name = queue.queue_name
    slow = seed_on(engine, name, "running", age=120, worker_id="w", time_limit_ms=600_000)
    queue.send()
    for var in VARIABLES:
        monkeypatch.delenv(var.name, raising=False)
    monkeypatch.setenv("RUNWATCH_DATABASE_URL", database_url)
    monkeypatch.setenv("RUNWATCH_RABBITMQ_URL", rabbitmq_url)  # and no RUNWATCH_REDIS_URL: RabbitMQ is the broker
    monkeypatch.setenv("RUNWATCH_EVENT_STREAM", unique("events"))
    wait_for(lambda: ready(rabbitmq_url, name) == 1)

    assert main(["heal", "--explain", str(slow), "--format", "json"]) == 0
    explained = json.loads(capsys.readouterr().out)
    assert explained["next"].startswith("the next pass leaves it: messages wait in its queue")
    now = explained["evidence_now"]
    assert now["why"] == "requeued" and now["looked_for_message_in"] == [name, f"{name}.DQ"]
    assert "time alone" in now["broker_detail"] and row(engine, slow)["healer_note"] is None

    broker_flush(rabbitmq_url, name)
    assert main(["heal", "--explain", str(slow), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["next"] == "the next pass reconciles it as run.stale_running"
    assert main(["heal", "--dry-run"]) == 0  # the table
    assert "heal: 1 stale candidate(s), would reconcile 1, skipped: none" in capsys.readouterr().out
    assert main(["heal", "--once", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["reconciled"] == 1
    assert row(engine, slow)["reason_code"] == "run.stale_running"
    with engine.connect() as conn:  # counted in the ledger: no Redis here
        counted = LedgerCounters.values(conn)
    assert any(name.startswith(counters.RECONCILED) and value == 1 for name, value in counted.items()), counted


def broker_flush(url: str, name: str) -> None:
    connection = amqp.connect(url)
    try:
        connection.channel().queue_purge(name)
    finally:
        connection.close()


def test_a_crash_looping_run_is_left_to_the_workers_poison_gate(engine, queue, heal):
    looping = crash_loop(engine, 5)  # 4 crash redeliveries within the window, no broker id to dead-letter by
    result = heal()
    assert result.poison_pills == 0 and result.skipped["poison_gate"] == 1
    stopped = next(d for d in result.decisions if d["id"] == looping and d.get("poison_pill"))
    assert (stopped["action"], stopped["why"], stopped["crash_redeliveries"]) == ("skip", "poison_gate", 4)
    assert row(engine, looping)["status"] == "running"


def test_with_the_management_api_a_consumer_holding_messages_is_seen(tmp_path):
    """On a node of the test's own with the management plugin (the machine's server runs without it)."""
    from tests.support import rabbit_node

    if rabbit_node.missing():
        pytest.skip(rabbit_node.missing())
    with rabbit_node.rabbit_node(tmp_path, management=True) as node:
        assert node.management_url is not None
        broker = RabbitmqBroker(url=node.url)
        name = unique("managed")

        @dramatiq.actor(broker=broker, queue_name=name, actor_name=f"job_{name}")
        def job() -> None: ...

        broker.declare_queue(name, ensure=True)
        locator = RabbitmqLocator(node.url, event_queue=unique("events"), management_url=node.management_url)
        run = {"id": 1, "queue_name": name}
        job.send()
        job.send()
        with holding_consumer(node.url, name, expect=2):
            # NOTE: the management API answers from statistics collected every few seconds.
            held = wait_for(lambda: (obs := locator.observe([run])[1]).may_be_held and obs, timeout=60)
            assert "holding 2 unacked message(s)" in held.detail and held.queue_counts[name]["unacked"] == 2
        idle = wait_for(lambda: (obs := locator.observe([run])[1]).found_in == "queue" and obs, timeout=60)
        assert "time alone" not in idle.detail
        locator.close()
        broker.close()
