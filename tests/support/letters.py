"""Real dead letters: a worker with the recorder runs jobs that fail for good, or one without it loses the callback."""

from __future__ import annotations

import time

import dramatiq
from runwatch.bridge import deadletters as dl
from runwatch.bridge.keys import Keys
from sqlalchemy import text

from runwatch import events as ev
from runwatch.ledger import apply_events
from runwatch.thresholds import ThresholdPolicy
from tests.support.waiting import wait_for


def _doomed(n, why):
    raise RuntimeError(why)


def _broken(n):
    raise KeyError(f"missing {n}")


def make_dead_letters(harness, queue: str, tenants: list[int | None], *, actor: str = "doomed", why: str = "boom"):
    """One dead letter per entry of ``tenants`` (its tenant option), drained; returns the letters, oldest first."""
    fn = _broken if actor == "broken" else _doomed
    job = harness.broker.actors.get(actor) or dramatiq.actor(fn, actor_name=actor, queue_name=queue, max_retries=0)
    for n, tenant in enumerate(tenants):
        args = (n,) if actor == "broken" else (n, why)
        options = {} if tenant is None else {"runwatch_tenant_id": tenant}
        job.send_with_options(args=args, **options)
    worker = dramatiq.Worker(harness.broker, worker_timeout=50, worker_threads=2)
    worker.start()
    try:
        harness.settle(queue)
    finally:
        worker.stop()
    letters = [d for d in dl.scan(harness.broker.client, Keys(harness.broker.namespace), queue=queue)]
    letters = [d for d in letters if d.actor_name == actor]
    assert len(letters) >= len(tenants)
    wait_for(lambda: _all_failed(harness, [d.message_id for d in letters]))
    return letters


def _all_failed(harness, message_ids) -> bool:
    """Whether every letter's run is recorded failed (the nack's event may trail the queue's join)."""
    harness.recorder.shipper.flush()
    harness.drainer.drain_until_empty()
    with harness.engine.connect() as conn:
        failed = conn.execute(
            text("SELECT count(*) FROM operation_runs WHERE message_id = ANY(:ids) AND outcome = 'failed'"),
            {"ids": message_ids},
        ).scalar()
    return failed == len(message_ids)


def _explode():
    raise RuntimeError("lost callback")


def dead_letter_without_callback(bare, engine, settings, *, queue="jobs"):
    """A dead letter whose run the recorder saw start but never fail (``bare`` is a broker without it)."""
    explode = bare.actors.get("_explode") or dramatiq.actor(_explode, broker=bare, queue_name=queue, max_retries=0)
    message = explode.send()
    bare.join(queue, timeout=10_000)
    meta = {"queue": queue, "actor": "explode", "type": "explode", "created_at": message.message_timestamp / 1000}
    with engine.begin() as conn:  # the recorder saw the start, never the failure
        apply_events(
            conn,
            [ev.new_event(ev.STARTED, message.message_id, time.time(), meta, attempt=1)],
            ThresholdPolicy(settings),
        )
    return message


def run_of(engine, message_id):
    with engine.connect() as conn:
        return (
            conn.execute(text("SELECT * FROM operation_runs WHERE message_id = :m"), {"m": message_id}).mappings().one()
        )
