"""Concurrent requeues of one dead letter enqueue it once, and no crash point loses the letter.

Real dead letters (a worker with the recorder, a job that fails without retries), real Redis and
PostgreSQL. The races are forced with barriers: threads per letter, and separate processes (two
operators running ``deadletters requeue`` at once) over the whole set.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections import Counter

import dramatiq
import pytest
import redis
import runwatch.bridge.requeue as rq
from dramatiq.brokers.redis import RedisBroker
from runwatch.bridge import deadletters as dl
from runwatch.bridge.keys import Keys
from runwatch.bridge.redis_letters import RedisLetters
from sqlalchemy import text

from runwatch.thresholds import ThresholdPolicy

QUEUE = "race"
LETTERS = 24
THREADS_PER_LETTER = 4
PROCESSES = 3


def _doomed(n):
    raise RuntimeError(f"doomed {n}")


def _work(harness) -> None:
    """Process the queue to its end with a worker that stops afterwards (so requeues stay queued)."""
    worker = dramatiq.Worker(harness.broker, worker_timeout=50, worker_threads=4)
    worker.start()
    try:
        harness.settle(QUEUE)
    finally:
        worker.stop()


@pytest.fixture
def letters(harness):
    """``LETTERS`` dead letters with their failed runs; no worker consumes the queue afterwards."""
    doomed = dramatiq.actor(_doomed, actor_name="doomed", queue_name=QUEUE, max_retries=0)
    for n in range(LETTERS):
        doomed.send(n)
    _work(harness)
    keys = Keys(harness.broker.namespace)
    found = list(dl.scan(harness.broker.client, keys, queue=QUEUE))
    assert len(found) == LETTERS and all(letter.message for letter in found)
    assert harness.broker.client.llen(keys.queue(QUEUE)) == 0
    return found


def _queued_copies(client, keys: Keys) -> Counter:
    """message_id -> how many times it sits in the queue (list entries whose payload names it)."""
    payloads = client.hgetall(keys.messages(QUEUE))
    counts: Counter = Counter()
    for rid in client.lrange(keys.queue(QUEUE), 0, -1):
        counts[dramatiq.Message.decode(payloads[rid]).message_id] += 1
    assert len(payloads) == sum(counts.values()), "a payload without a queue entry, or the other way round"
    return counts


def _assert_requeued_once(harness, letters) -> None:
    client, keys = harness.broker.client, Keys(harness.broker.namespace)
    fresh = {rq.requeued_message_id(letter): letter for letter in letters}
    queued = _queued_copies(client, keys)
    duplicated = {m: n for m, n in queued.items() if n != 1}
    assert not duplicated, f"{len(duplicated)} of {len(letters)} letters enqueued more than once: {duplicated}"
    assert set(queued) == set(fresh), "a letter was not enqueued at all, or something else was"
    assert client.zcard(keys.dead_letters(QUEUE)) == 0 and client.hlen(keys.dead_letter_messages(QUEUE)) == 0
    with harness.engine.connect() as conn:
        runs = conn.execute(
            text(
                "SELECT r.message_id, o.message_id AS original, "
                "(SELECT count(*) FROM run_events e WHERE e.message_id = r.message_id AND e.kind = 'enqueued') AS n "
                "FROM operation_runs r JOIN operation_runs o ON o.id = r.retry_of WHERE r.message_id = ANY(:ids)"
            ),
            {"ids": list(fresh)},
        ).all()
    assert sorted(r.message_id for r in runs) == sorted(fresh), "not exactly one new run per letter"
    assert all(r.original == fresh[r.message_id].message_id for r in runs), "a new run points at the wrong original"
    assert [r.message_id for r in runs if r.n != 1] == [], "a new run has more than one enqueue event"


def test_threads_racing_on_each_letter_enqueue_it_once(harness, letters, settings):
    keys, policy = Keys(harness.broker.namespace), ThresholdPolicy(settings)
    results: list[rq.RequeueResult] = []
    errors: list[BaseException] = []
    for letter in letters:
        barrier = threading.Barrier(THREADS_PER_LETTER)

        def race(letter=letter, barrier=barrier):
            # NOTE: a broker per thread, as each operator's process has its own connections.
            broker = RedisBroker(url=settings.redis_url, namespace=keys.namespace)
            try:
                barrier.wait(10)
                results.append(rq.requeue(RedisLetters(broker.client, keys), harness.engine, policy, [letter]))
            except BaseException as exc:  # noqa: BLE001 - reported below, with the others
                errors.append(exc)
            finally:
                broker.close()

        threads = [threading.Thread(target=race) for _ in range(THREADS_PER_LETTER)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert errors == []
    _assert_requeued_once(harness, letters)
    # Every caller says what happened; exactly one enqueued each letter.
    outcomes = Counter(len(r.enqueued) for r in results)
    assert outcomes == {1: LETTERS, 0: LETTERS * (THREADS_PER_LETTER - 1)}, outcomes
    for r in results:
        assert len(r.requeued) + len(r.skipped) == 1 and not (r.enqueued and r.skipped)


def _operator(database_url, redis_url, namespace, stream, rids, barrier, done) -> None:
    """One ``deadletters requeue`` process: load the letters, wait for the others, requeue them all."""
    from runwatch.db import engine_for
    from runwatch.settings import Settings

    keys = Keys(namespace)
    broker = RedisBroker(url=redis_url, namespace=namespace)
    settings = Settings(database_url=database_url, redis_url=redis_url, event_stream=stream)
    loaded = [dl.get(broker.client, keys, QUEUE, rid) for rid in rids]
    barrier.wait(60)
    result = rq.requeue(RedisLetters(broker.client, keys), engine_for(database_url), ThresholdPolicy(settings), loaded)
    done.put((len(result.enqueued), len(result.requeued), len(result.skipped)))


def test_processes_requeueing_the_same_letters_enqueue_each_once(harness, letters, settings):
    ctx = multiprocessing.get_context("spawn")  # NOTE: never fork a process that runs threads
    barrier, done = ctx.Barrier(PROCESSES), ctx.Queue()
    rids = [letter.redis_message_id for letter in letters]
    args = (settings.database_url, settings.redis_url, harness.broker.namespace, settings.event_stream, rids)
    procs = [ctx.Process(target=_operator, args=(*args, barrier, done)) for _ in range(PROCESSES)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    _assert_requeued_once(harness, letters)
    assert [p.exitcode for p in procs] == [0] * PROCESSES
    reports = [done.get(timeout=5) for _ in procs]
    assert sum(enqueued for enqueued, _, _ in reports) == LETTERS, reports
    assert all(requeued + skipped == LETTERS for _, requeued, skipped in reports), reports


@pytest.fixture
def flaky(harness):
    """One dead letter of a job that fails its first three calls (two as the original), then succeeds."""
    calls = []

    @dramatiq.actor(queue_name=QUEUE, max_retries=1, min_backoff=10, max_backoff=20)
    def flaky_job():
        calls.append(1)
        if len(calls) <= 3:
            raise RuntimeError(f"call {len(calls)} fails")

    message = flaky_job.send()
    _work(harness)
    (letter,) = dl.scan(harness.broker.client, Keys(harness.broker.namespace), queue=QUEUE)
    assert letter.message_id == message.message_id and len(calls) == 2
    return letter, harness.run(message.message_id)


@pytest.fixture
def operator_broker(settings, namespace):
    """The broker ``runwatch deadletters requeue`` uses: no recorder installed."""
    broker = RedisBroker(url=settings.redis_url, namespace=namespace)
    yield broker
    broker.close()


def _enqueued_events(harness, message_id: str) -> int:
    """Enqueues of the run itself (a retry moving out of the delay queue is logged as one too)."""
    return sum(
        1
        for e in harness.events(message_id)
        if e["kind"] == "enqueued" and not e["details"].get("moved_out_of_delay_queue")
    )


def test_a_requeued_message_that_fails_once_is_retried_as_a_retry(harness, flaky, operator_broker, settings):
    letter, old = flaky
    keys = Keys(harness.broker.namespace)
    result = rq.requeue(RedisLetters(operator_broker.client, keys), harness.engine, ThresholdPolicy(settings), [letter])
    ((old_id, new_id, fresh_id),) = result.requeued
    assert (old_id, result.enqueued) == (old["id"], [fresh_id])
    _work(harness)
    new = harness.run(fresh_id)
    assert (new["id"], new["retry_of"], new["outcome"], new["attempts"]) == (new_id, old["id"], "succeeded", 2)
    # The retry is not taken for a first enqueue, which would also lose its retry time and Redis id.
    assert _enqueued_events(harness, fresh_id) == 1
    (failed,) = [e["details"] for e in harness.events(fresh_id) if e["kind"] == "attempt_failed"]
    assert failed["next_retry_at"] and failed["redis_message_id"]


def test_a_failed_ledger_write_after_the_move_enqueues_once_and_the_worker_records_the_run(
    harness, flaky, operator_broker, settings, monkeypatch
):
    letter, old = flaky
    client, keys, policy = harness.broker.client, Keys(harness.broker.namespace), ThresholdPolicy(settings)
    fresh_id = rq.requeued_message_id(letter)

    def ledger_down(*_args, **_kwargs):
        raise OSError("PostgreSQL went away")

    with monkeypatch.context() as patch:
        patch.setattr(rq, "_record", ledger_down)
        with pytest.raises(OSError):
            rq.requeue(RedisLetters(operator_broker.client, keys), harness.engine, policy, [letter])
    assert _queued_copies(client, keys) == {fresh_id: 1}
    assert dl.get(client, keys, QUEUE, letter.redis_message_id) is None  # it is the queued message now

    again = rq.requeue(RedisLetters(operator_broker.client, keys), harness.engine, policy, [letter])
    assert (again.enqueued, again.requeued) == ([], [])
    assert again.skipped == [
        f"dead letter {keys.dead_letters(QUEUE)}/{letter.redis_message_id}: taken by another requeue "
        f"(its run will be message {fresh_id}), or purged or expired"
    ]
    assert _queued_copies(client, keys) == {fresh_id: 1}
    with pytest.raises(rq.NotDeadLettered, match="its dead letter is gone"):
        rq.letter_of_run(RedisLetters(client, keys), harness.engine, old["id"])

    _work(harness)  # the worker's recorder records the run, lineage included
    new = harness.run(fresh_id)
    assert (new["retry_of"], new["outcome"], new["attempts"]) == (old["id"], "succeeded", 2)
    with pytest.raises(rq.NotDeadLettered, match=f"requeued already, as run {new['id']}"):
        rq.letter_of_run(RedisLetters(client, keys), harness.engine, old["id"])


def test_an_enqueue_that_fails_leaves_the_dead_letter_where_it_was(harness, flaky, operator_broker, settings):
    letter, _ = flaky
    client, keys, policy = harness.broker.client, Keys(harness.broker.namespace), ThresholdPolicy(settings)
    client.set(keys.queue(QUEUE), "not a list")  # the enqueue half of the move cannot run
    with pytest.raises(redis.ResponseError, match="wrong type"):
        rq.requeue(RedisLetters(operator_broker.client, keys), harness.engine, policy, [letter])
    assert dl.get(client, keys, QUEUE, letter.redis_message_id) == letter
    assert client.hlen(keys.messages(QUEUE)) == 0
    client.delete(keys.queue(QUEUE))
    result = rq.requeue(RedisLetters(operator_broker.client, keys), harness.engine, policy, [letter])
    assert result.enqueued == [rq.requeued_message_id(letter)]
    assert _queued_copies(client, keys) == {rq.requeued_message_id(letter): 1}
