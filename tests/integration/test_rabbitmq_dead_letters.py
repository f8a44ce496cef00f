"""Dead letters on a real RabbitMQ: the failure callback, the adapter, browsing, and the SRE commands.

Recorded jobs run in a RabbitMQ shop with no Redis (``tests.support.rabbit_harness``: the events
travel through RabbitMQ); a "bare" broker has no Runwatch, so its dead letters lose their callback.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator

import dramatiq
import pytest
import redis
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.common import xq_name
from runwatch.bridge import amqp
from runwatch.bridge.adapter import reconcile_once
from runwatch.bridge.letter_store import letter_store
from runwatch.bridge.mirror import mirror_once
from runwatch.bridge.rabbitmq_letters import RabbitmqLetters
from runwatch.bridge.requeue import letter_of_run, requeue
from sqlalchemy import text

from runwatch.cli import main
from runwatch.settings import Settings
from runwatch.thresholds import ThresholdPolicy
from tests.support.rabbit_harness import RabbitHarness, rabbit_harness
from tests.support.rabbit_letters import depth, publish_dead_letters, started, take_all, wait_run
from tests.support.rabbitmq import unique
from tests.support.waiting import wait_for


@pytest.fixture
def rsettings(settings: Settings, rabbitmq_url: str) -> Settings:
    return dataclasses.replace(settings, rabbitmq_url=rabbitmq_url, broker="rabbitmq")


@pytest.fixture
def rabbit(rabbitmq_url, database_url, engine) -> Iterator[RabbitHarness]:
    """A recorded RabbitMQ broker and its worker; events through RabbitMQ, no Redis."""
    with rabbit_harness(rabbitmq_url, database_url, engine) as harness:
        worker = dramatiq.Worker(harness.broker, worker_timeout=100, worker_threads=2)
        worker.start()
        yield harness
        worker.stop()


@pytest.fixture
def bare_rabbit(rabbitmq_url) -> Iterator[RabbitmqBroker]:
    """A RabbitMQ broker *without* Runwatch: its dead letters never reach the ledger."""
    broker = RabbitmqBroker(url=rabbitmq_url)
    worker = dramatiq.Worker(broker, worker_timeout=100, worker_threads=1)
    worker.start()
    yield broker
    worker.stop()
    broker.close()


@pytest.fixture
def rabbit_cli(monkeypatch, database_url, rabbitmq_url):
    """The CLI's environment of a RabbitMQ shop: no Redis at all."""
    monkeypatch.setenv("RUNWATCH_DATABASE_URL", database_url)
    monkeypatch.setenv("RUNWATCH_RABBITMQ_URL", rabbitmq_url)
    monkeypatch.delenv("RUNWATCH_REDIS_URL", raising=False)
    monkeypatch.delenv("RUNWATCH_BROKER", raising=False)


def _failing_actor(broker, queue: str, *, fail_times: int = 1_000_000) -> tuple[dramatiq.Actor, list[int]]:
    calls: list[int] = []

    def flaky(n: int) -> None:
        calls.append(n)
        if len(calls) <= fail_times:
            raise RuntimeError(f"attempt {len(calls)} failed")

    return dramatiq.actor(flaky, broker=broker, actor_name=f"flaky_{queue}", queue_name=queue, max_retries=0), calls


def _lost_callback(bare, engine, settings, queue: str) -> dramatiq.Message:
    """A dead letter in ``<queue>.XQ`` whose run the ledger saw start, never fail."""
    actor, _ = _failing_actor(bare, queue)
    message = actor.send(1)
    started(engine, settings, message)
    wait_for(lambda: depth(amqp.url_of(bare.parameters), xq_name(queue)) == 1, timeout=30)
    return message


def test_the_failure_callback_names_the_rabbitmq_dead_letter_queue(rabbit, rabbitmq_url):
    queue = unique("cb")
    actor, _ = _failing_actor(rabbit.broker, queue)
    message = actor.send(7)
    run = wait_run(rabbit, message.message_id, status="completed")
    assert (run["outcome"], run["reconciliation_source"]) == ("failed", "failed_callback")
    evidence = run["reconciliation_evidence"]
    assert evidence["dead_letter_key"] == f"{queue}.XQ" and evidence["broker"] == "rabbitmq"
    assert evidence["message_id"] == message.message_id and "redis_message_id" not in evidence
    assert evidence["exception_type"] == "RuntimeError"
    wait_for(lambda: depth(rabbitmq_url, xq_name(queue)) == 1)  # the letter lies where the evidence says


def test_the_adapter_reconciles_a_lost_callback_and_leaves_the_letter(bare_rabbit, engine, rsettings, rabbitmq_url):
    queue = unique("lost")
    message = _lost_callback(bare_rabbit, engine, rsettings, queue)
    policy = ThresholdPolicy(rsettings)
    with letter_store(rsettings, engine=engine) as letters:  # the queue is found through the ledger
        assert queue in letters.queues()
        early = reconcile_once(letters, engine, policy)
        assert (early.scanned, early.too_recent, early.reconciled) == (1, 1, 0)
        result = reconcile_once(letters, engine, policy, min_age_seconds=0)
        assert result.reconciled == 1
        again = reconcile_once(letters, engine, policy, min_age_seconds=0)
        assert (again.already_terminal, again.reconciled) == (1, 0)
    with engine.connect() as conn:
        run = conn.execute(text("SELECT * FROM operation_runs WHERE message_id = :m"), {"m": message.message_id})
        run = run.mappings().one()
    assert (run["outcome"], run["reconciliation_source"], run["reason_code"]) == (
        "failed",
        "adapter_reconciler",
        "run.adapter_out_of_sync",
    )
    evidence = run["reconciliation_evidence"]
    assert (evidence["dead_letter_key"], evidence["message_id"]) == (f"{queue}.XQ", message.message_id)
    assert "redis_message_id" not in evidence and evidence["dead_lettered_at"] > 0
    assert take_all(rabbitmq_url, xq_name(queue)) == [(message.message_id, True)]  # still there, given back


def test_browsing_leaves_contents_and_order_intact(rabbitmq_url):
    queue = unique("order")
    messages = [dramatiq.Message(queue, "job", (n,), {}, {}) for n in range(20)]
    publish_dead_letters(rabbitmq_url, queue, messages)
    ids = [m.message_id for m in messages]
    with RabbitmqLetters(rabbitmq_url, queues=lambda: [queue, unique("never-declared")]) as letters:
        assert letters.queues() == [queue]
        assert [d.letter_id for d in letters.scan(queue=queue)] == ids
        assert [d.letter_id for d in letters.scan()] == ids  # a second browse sees the same
        fifth = letters.get(queue, ids[5])
        assert fifth is not None and fifth.message is not None and fifth.message.args == (5,)
        tenth = letters.get(queue, ids[10])
        assert tenth is not None and letters.remove(tenth)
        assert not letters.remove(tenth)  # gone: a second purge finds nothing
    assert depth(rabbitmq_url, xq_name(queue)) == 19
    taken = take_all(rabbitmq_url, xq_name(queue))
    assert [i for i, _ in taken] == ids[:10] + ids[11:] and all(redelivered for _, redelivered in taken)


def test_an_undecodable_letter_is_reported_and_can_be_purged(rabbitmq_url, engine, rsettings):
    queue = unique("junk")
    good = dramatiq.Message(queue, "job", (), {}, {})
    publish_dead_letters(rabbitmq_url, queue, [good])
    connection = amqp.connect(rabbitmq_url)
    connection.channel().basic_publish("", xq_name(queue), b"\x00not json")
    connection.close()
    with RabbitmqLetters(rabbitmq_url, queues=lambda: [queue]) as letters:
        result = reconcile_once(letters, engine, ThresholdPolicy(rsettings), min_age_seconds=0)
        assert len(result.undecodable) == 1 and f"{queue}.XQ/body-sha256:" in result.undecodable[0]
        (junk,) = [d for d in letters.scan(queue=queue) if d.message is None]
        assert letters.remove(junk)
    assert [i for i, _ in take_all(rabbitmq_url, xq_name(queue))] == [good.message_id]


def test_the_mirror_follows_the_dead_letter_queue(rabbitmq_url, engine):
    queue = unique("mirror")
    messages = [dramatiq.Message(queue, "job", (n,), {}, {"runwatch_tenant_id": 3}) for n in range(3)]
    publish_dead_letters(rabbitmq_url, queue, messages)
    with RabbitmqLetters(rabbitmq_url, queues=lambda: [queue]) as letters:
        first = mirror_once(letters, engine)
        assert (first.added, first.removed) == (3, 0)
        letters.remove(letters.get(queue, messages[0].message_id))
        second = mirror_once(letters, engine)
        assert (second.added, second.removed) == (0, 1)
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT redis_message_id, message_id, tenant_id FROM dead_letters WHERE queue_name = :q"), {"q": queue}
        ).all()
    assert sorted(rows) == sorted((m.message_id, m.message_id, 3) for m in messages[1:])


def test_requeue_publishes_a_fresh_message_with_lineage(rabbit, rabbitmq_url):
    queue = unique("rq")
    actor, calls = _failing_actor(rabbit.broker, queue, fail_times=1)
    message = actor.send(1)
    old = wait_run(rabbit, message.message_id, status="completed")
    with RabbitmqLetters(rabbitmq_url, queues=lambda: [queue]) as letters:
        letter = letter_of_run(letters, rabbit.engine, old["id"])
        result = requeue(letters, rabbit.engine, ThresholdPolicy(rabbit.settings), [letter])
        ((old_id, new_id, fresh_id),) = result.requeued
        assert (old_id, result.enqueued) == (old["id"], [fresh_id]) and new_id is not None
        new = wait_run(rabbit, fresh_id, status="completed")
        assert (new["retry_of"], new["outcome"], new["attempts"]) == (old["id"], "succeeded", 1)
        assert letters.get(queue, message.message_id) is None and len(calls) == 2
        again = requeue(letters, rabbit.engine, ThresholdPolicy(rabbit.settings), [letter])  # the letter is gone
        assert again.requeued == [(old["id"], new_id, fresh_id)] and again.enqueued == []
    with rabbit.engine.connect() as conn:
        requeued_from = conn.execute(
            text("SELECT details ->> 'requeued_from' FROM run_events WHERE message_id = :m AND kind = 'enqueued'"),
            {"m": fresh_id},
        ).scalar()
    assert requeued_from == message.message_id


def test_cli_lists_shows_requeues_and_purges_on_rabbitmq(rabbit, rabbit_cli, rabbitmq_url, capsys):
    queue = unique("cli")
    actor, calls = _failing_actor(rabbit.broker, queue, fail_times=3)
    sent = [actor.send(n) for n in range(3)]
    runs = [wait_run(rabbit, m.message_id, status="completed") for m in sent]
    capsys.readouterr()

    assert main(["deadletters", "list", "--queue", queue, "--format", "json"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted((d["run_id"], d["message_id"]) for d in listed) == sorted(
        (r["id"], m.message_id) for r, m in zip(runs, sent, strict=True)
    )
    assert {d["redis_message_id"] for d in listed} == {None} and {d["queue"] for d in listed} == {queue}

    assert main(["deadletters", "show", str(runs[0]["id"])]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["dead_letter"]["key"] == f"{queue}.XQ" and shown["dead_letter"]["message_id"] == sent[0].message_id

    assert main(["deadletters", "requeue", str(runs[0]["id"])]) == 0
    assert "requeued 1 dead letter(s)" in capsys.readouterr().out
    fresh = wait_for(lambda: _retry_of(rabbit, runs[0]["id"]))
    assert wait_run(rabbit, fresh, status="completed")["outcome"] == "succeeded"

    assert main(["deadletters", "purge", "--queue", queue, "--yes"]) == 0
    assert "deleted 2 dead letter(s)" in capsys.readouterr().out
    assert depth(rabbitmq_url, xq_name(queue)) == 0

    assert main(["bridge", "scan", "--queue", queue, "--min-age-seconds", "0"]) == 0
    assert "scanned 0 dead letter(s)" in capsys.readouterr().out


def _retry_of(rabbit: RabbitHarness, run_id: int) -> str | None:
    with rabbit.engine.connect() as conn:
        return conn.execute(text("SELECT message_id FROM operation_runs WHERE retry_of = :r"), {"r": run_id}).scalar()


def test_cli_says_when_rabbitmq_does_not_answer(rabbit_cli, monkeypatch, capsys):
    monkeypatch.setenv("RUNWATCH_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:1/%2F")
    assert main(["deadletters", "list"]) == 2
    assert "RabbitMQ does not answer at 127.0.0.1:1" in capsys.readouterr().err


@pytest.mark.parametrize("events_in_redis", [False, True])
def test_the_workers_maintenance_pass_reads_the_workers_rabbitmq(
    bare_rabbit, engine, rsettings, servers, rabbitmq_url, events_in_redis
):
    from runwatch.workers.maintenance import Maintenance

    from runwatch import passes

    queue = unique("maint")
    message = _lost_callback(bare_rabbit, engine, rsettings, queue)
    settings = dataclasses.replace(rsettings, broker=None)  # the worker's broker decides, not RUNWATCH_BROKER
    client = redis.Redis.from_url(servers.redis_url) if events_in_redis else None  # None: a shop with no Redis
    maintenance = Maintenance(client, settings, broker=bare_rabbit)
    assert isinstance(maintenance.letters(), RabbitmqLetters)
    maintenance.run_once(dead_letter_min_age_seconds=0)
    with engine.connect() as conn:
        assert passes.last(conn, passes.HEALER.name)["status"] == "ok"  # the healer read RabbitMQ too
    with engine.connect() as conn:
        reason = conn.execute(
            text("SELECT reason_code FROM operation_runs WHERE message_id = :m"), {"m": message.message_id}
        ).scalar()
        mirrored = conn.execute(text("SELECT message_id FROM dead_letters WHERE queue_name = :q"), {"q": queue}).all()
    assert reason == "run.adapter_out_of_sync" and mirrored == [(message.message_id,)]
    assert depth(rabbitmq_url, xq_name(queue)) == 1
    maintenance.engine.dispose()


def test_one_browser_at_a_time(rabbitmq_url):
    from runwatch.bridge.rabbitmq_letters import BrowseBusy

    queue = unique("busy")
    message = dramatiq.Message(queue, "job", (), {}, {})
    publish_dead_letters(rabbitmq_url, queue, [message])
    with RabbitmqLetters(rabbitmq_url) as holder, RabbitmqLetters(rabbitmq_url, lock_wait_seconds=0.2) as other:
        with holder._browse(queue) as (_channel, held):  # a browse in progress in another process
            assert [h.letter.letter_id for h in held] == [message.message_id]
            with pytest.raises(BrowseBusy):
                list(other.scan(queue=queue))
        assert [d.letter_id for d in other.scan(queue=queue)] == [message.message_id]  # let go: back in view


def test_a_requeue_into_a_missing_queue_keeps_the_letter(rabbitmq_url, engine, rsettings):
    from runwatch.bridge.rabbitmq_letters import QueueMissing

    queue = unique("orphaned")  # its work queue was deleted: only <q>.XQ is left
    message = dramatiq.Message(queue, "job", (), {}, {})
    publish_dead_letters(rabbitmq_url, queue, [message])
    connection = amqp.connect(rabbitmq_url)
    connection.channel().queue_delete(queue=queue)
    connection.close()
    with RabbitmqLetters(rabbitmq_url, queues=lambda: [queue]) as letters:
        (letter,) = letters.scan(queue=queue)
        with pytest.raises(QueueMissing, match=f"no queue {queue!r}"):
            requeue(letters, engine, ThresholdPolicy(rsettings), [letter])
    assert [i for i, _ in take_all(rabbitmq_url, xq_name(queue))] == [message.message_id]


def test_operator_actions_purge_and_requeue_rabbitmq_letters(rabbitmq_url, engine, rsettings):
    from runwatch.bridge.actions import execute_once

    from runwatch import actions
    from runwatch.dead_letters import Selection
    from runwatch.tokens import OPERATOR, Principal, create_token

    queue = unique("act")
    doomed, kept, again = (dramatiq.Message(queue, "job", (n,), {}, {}) for n in range(3))
    publish_dead_letters(rabbitmq_url, queue, [doomed, kept, again])
    with engine.begin() as conn:
        _, info = create_token(conn, name="ops", tenant_ids=None, role=OPERATOR)
    ops = Principal(info.id, info.name, None, OPERATOR)
    with RabbitmqLetters(rabbitmq_url, queues=lambda: [queue]) as letters:
        mirror_once(letters, engine)
        with engine.connect() as conn:
            mirrored = conn.execute(text("SELECT message_id, id FROM dead_letters WHERE queue_name = :q"), {"q": queue})
            ids = {message_id: row_id for message_id, row_id in mirrored}
        with engine.begin() as conn:
            purge = Selection(ids=(ids[doomed.message_id],))
            actions.request_action(conn, ops, kind="purge", selection=purge, idempotency_key=unique())
            revive = Selection(ids=(ids[again.message_id],))
            actions.request_action(conn, ops, kind="requeue", selection=revive, idempotency_key=unique())
        ran = execute_once(letters, engine, ThresholdPolicy(rsettings))
        assert (ran.purged, ran.requeued, ran.skipped, ran.failed) == (1, 1, 0, [])
        assert [d.letter_id for d in letters.scan(queue=queue)] == [kept.message_id]
    assert depth(rabbitmq_url, queue) == 1  # the requeued message waits on the work queue
