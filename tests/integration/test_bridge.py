"""The dead-letter adapter and the SRE operations, on real Redis dead letters and PostgreSQL."""

from __future__ import annotations

import threading

import dramatiq
import pytest
from runwatch.bridge.adapter import reconcile_once
from runwatch.bridge.keys import Keys
from runwatch.bridge.redis_letters import RedisLetters
from runwatch.bridge.requeue import NotDeadLettered, UnknownRun, letter_of_run, requeue
from sqlalchemy import text

from runwatch.cli import main
from runwatch.thresholds import ThresholdPolicy
from tests.support.letters import dead_letter_without_callback, run_of


def test_lost_callback_is_reconciled_once_by_the_adapter(bare, engine, settings, namespace):
    message = dead_letter_without_callback(bare, engine, settings)
    keys, policy = Keys(namespace), ThresholdPolicy(settings)
    early = reconcile_once(RedisLetters(bare.client, keys), engine, policy)
    assert (early.candidates, early.too_recent, early.reconciled) == (0, 1, 0)  # callback may still be in flight
    assert run_of(engine, message.message_id)["status"] == "running"

    dry = reconcile_once(RedisLetters(bare.client, keys), engine, policy, min_age_seconds=0, dry_run=True)
    assert (dry.candidates, dry.reconciled) == (1, 0) and run_of(engine, message.message_id)["status"] == "running"

    result = reconcile_once(RedisLetters(bare.client, keys), engine, policy, min_age_seconds=0)
    assert result.reconciled == 1 and result.oldest_unbridged_age_seconds is not None
    run = run_of(engine, message.message_id)
    assert (run["outcome"], run["reconciliation_source"], run["reason_code"]) == (
        "failed",
        "adapter_reconciler",
        "run.adapter_out_of_sync",
    )
    evidence = run["reconciliation_evidence"]
    assert evidence["dead_letter_key"] == f"{namespace}:jobs.XQ" and evidence["redis_message_id"]
    again = reconcile_once(RedisLetters(bare.client, keys), engine, policy, min_age_seconds=0)
    assert (again.already_terminal, again.reconciled) == (1, 0)
    assert run_of(engine, message.message_id) == run


def test_concurrent_scans_reconcile_each_dead_letter_exactly_once(bare, engine, settings, namespace):
    messages = [dead_letter_without_callback(bare, engine, settings) for _ in range(5)]
    keys, policy = Keys(namespace), ThresholdPolicy(settings)
    results, barrier = [], threading.Barrier(4)

    def scan():
        barrier.wait()
        results.append(reconcile_once(RedisLetters(bare.client, keys), engine, policy, min_age_seconds=0).reconciled)

    threads = [threading.Thread(target=scan) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sum(results) == 5
    with engine.connect() as conn:
        events = conn.execute(text("SELECT count(*) FROM run_events WHERE kind = 'dead_lettered'")).scalar()
    assert events == 5 and {run_of(engine, m.message_id)["outcome"] for m in messages} == {"failed"}


def test_a_dead_letter_with_no_run_at_all_gets_one(bare, engine, settings, namespace):
    @dramatiq.actor(broker=bare, queue_name="orphans", max_retries=0)
    def orphan():
        raise RuntimeError("never recorded")

    message = orphan.send_with_options(runwatch_tenant_id=9)
    bare.join("orphans", timeout=10_000)
    reconcile_once(RedisLetters(bare.client, Keys(namespace)), engine, ThresholdPolicy(settings), min_age_seconds=0)
    run = run_of(engine, message.message_id)
    assert run["reason_code"] == "run.adapter_out_of_sync" and run["tenant_id"] == 9


def test_undecodable_dead_letter_is_reported_with_its_key_and_skipped(bare, engine, settings, namespace):
    message = dead_letter_without_callback(bare, engine, settings)
    keys = Keys(namespace)
    bare.client.zadd(keys.dead_letters("jobs"), {"garbage-id": 1})
    bare.client.hset(keys.dead_letter_messages("jobs"), "garbage-id", b"\x00not json")
    result = reconcile_once(RedisLetters(bare.client, keys), engine, ThresholdPolicy(settings), min_age_seconds=0)
    assert len(result.undecodable) == 1 and f"{namespace}:jobs.XQ/garbage-id" in result.undecodable[0]
    assert result.reconciled == 1 and run_of(engine, message.message_id)["outcome"] == "failed"


def test_requeue_creates_a_linked_run_and_removes_the_dead_letter_after_enqueue(harness, worker, settings):
    attempts = []

    @dramatiq.actor(queue_name="rq", max_retries=0)
    def second_time_lucky():
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("first time unlucky")

    message = second_time_lucky.send_with_options(runwatch_tenant_id=5)
    harness.settle("rq")
    old = harness.run(message.message_id)
    assert old["reconciliation_source"] == "failed_callback"
    keys, policy = Keys(harness.broker.namespace), ThresholdPolicy(settings)
    letter = letter_of_run(RedisLetters(harness.broker.client, keys), harness.engine, old["id"])

    dry = requeue(RedisLetters(harness.broker.client, keys), harness.engine, policy, [letter], dry_run=True)
    assert dry.requeued == [(old["id"], None, message.message_id)]
    assert harness.broker.client.zcard(keys.dead_letters("rq")) == 1

    result = requeue(RedisLetters(harness.broker.client, keys), harness.engine, policy, [letter])
    ((old_id, new_id, new_message_id),) = result.requeued
    assert old_id == old["id"] and new_id is not None
    assert harness.broker.client.zcard(keys.dead_letters("rq")) == 0
    harness.settle("rq")
    new = harness.run(new_message_id)
    assert (new["retry_of"], new["outcome"], new["tenant_id"], new["type"]) == (old["id"], "succeeded", 5, old["type"])
    assert new["attempts"] == 1  # a fresh delivery: the dead one's retries are not carried over
    with pytest.raises(NotDeadLettered, match=f"requeued already, as run {new_id}"):
        letter_of_run(RedisLetters(harness.broker.client, keys), harness.engine, old["id"])

    # The same letter again (its removal, or the ledger write, had failed the first time): the
    # requeued message exists already, so it is not enqueued a second time.
    again = requeue(RedisLetters(harness.broker.client, keys), harness.engine, policy, [letter])
    assert again.requeued == [(old["id"], new_id, new_message_id)]
    assert harness.broker.client.llen(keys.queue("rq")) == 0 and len(attempts) == 2


def test_requeue_refuses_runs_that_are_not_dead_lettered(harness, worker):
    @dramatiq.actor(queue_name="ok")
    def fine():
        pass

    message = fine.send()
    harness.settle("ok")
    keys = Keys(harness.broker.namespace)
    with pytest.raises(NotDeadLettered, match="completed/succeeded, not dead-lettered"):
        letter_of_run(RedisLetters(harness.broker.client, keys), harness.engine, harness.run(message.message_id)["id"])
    with pytest.raises(UnknownRun, match="no run with id 999999"):
        letter_of_run(RedisLetters(harness.broker.client, keys), harness.engine, 999999)


def test_cli_lists_shows_and_purges_dead_letters(bare, engine, settings, namespace, cli_env, capsys):
    message = dead_letter_without_callback(bare, engine, settings)
    run_id = run_of(engine, message.message_id)["id"]
    assert main(["deadletters", "--namespace", namespace, "list", "--queue", "jobs"]) == 0
    out = capsys.readouterr().out
    assert str(run_id) in out and "explode" in out and "1 dead letter" in out

    assert main(["deadletters", "--namespace", namespace, "show", str(run_id)]) == 0
    assert f"{namespace}:jobs.XQ" in capsys.readouterr().out

    assert main(["deadletters", "--namespace", namespace, "purge", "--queue", "jobs"]) == 2  # no --yes
    assert "pass --yes" in capsys.readouterr().err
    assert main(["deadletters", "--namespace", namespace, "purge", "--queue", "jobs", "--dry-run"]) == 0
    assert bare.client.zcard(Keys(namespace).dead_letters("jobs")) == 1
    assert main(["deadletters", "--namespace", namespace, "purge", "--queue", "jobs", "--yes"]) == 0
    assert bare.client.zcard(Keys(namespace).dead_letters("jobs")) == 0


def test_cli_bad_input_is_a_clear_error_and_changes_nothing(bare, engine, settings, namespace, cli_env, capsys):
    message = dead_letter_without_callback(bare, engine, settings)
    assert main(["deadletters", "--namespace", namespace, "list", "--queue", "nope"]) == 2
    assert "unknown queue 'nope'" in capsys.readouterr().err
    assert main(["deadletters", "--namespace", namespace, "requeue", "424242"]) == 2
    assert "no run with id 424242" in capsys.readouterr().err
    assert main(["bridge", "scan", "--namespace", namespace, "--queue", "nope"]) == 2
    assert bare.client.zcard(Keys(namespace).dead_letters("jobs")) == 1
    assert run_of(engine, message.message_id)["status"] == "running"


def test_cli_scan_reports_counts(bare, engine, settings, namespace, cli_env, capsys):
    dead_letter_without_callback(bare, engine, settings)
    assert main(["bridge", "scan", "--namespace", namespace, "--min-age-seconds", "0"]) == 0
    out = capsys.readouterr().out
    assert "1 to reconcile" in out and "reconciled 1" in out
