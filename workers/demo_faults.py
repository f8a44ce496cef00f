"""The demo's second act: faults, and how each one is reconciled, with its evidence.

- a worker SIGKILLed mid-run: the healer sees its heartbeat stop, hands the message it held back
  to the queue, and the redelivery completes the run (deliveries: 2) -- not failed on a guess;
- a message lost from Redis: the healer fails the queued run (``run.stale_queued``, not found);
- a dead letter whose failure callback was lost: the adapter reconciles it (``run.adapter_out_of_sync``);
- a dead-lettered job requeued by an operator: a new run linked to the old one (``retry_of``).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from runwatch.bridge.keys import Keys
from runwatch.bridge.redis_letters import RedisLetters
from runwatch.bridge.requeue import letter_of_run, requeue
from sqlalchemy import text

from runwatch import events as ev
from runwatch import lookups
from runwatch.db import engine_for
from runwatch.ledger import apply_events
from runwatch.settings import Settings
from runwatch.thresholds import ThresholdPolicy

from .broker import install
from .demo_child import KILLED_QUEUE, declare
from .maintenance import Maintenance

LOST_QUEUE = "demo-lost"
LEGACY_QUEUE = "demo-legacy"
_rescuers: list[dramatiq.Worker] = []


def inject(broker: RedisBroker, settings: Settings, render_report_run: int) -> list[str]:
    """Cause every fault; return the message ids of the runs they concern."""
    engine = engine_for(settings.require_database_url())
    keys = Keys(broker.namespace)
    # NOTE: a second broker object: the demo's main worker would otherwise consume these queues too.
    faults = RedisBroker(url=settings.redis_url, namespace=broker.namespace)
    install(faults, settings=settings)
    faults.emit_after("process_boot")
    killed = _kill_worker_mid_run(faults, engine)
    print("runwatch demo: SIGKILLed a worker in the middle of 'ledger.rebuild'")

    lost = declare_digest(faults).send_with_options(runwatch_tenant_id=1)
    broker.client.hdel(keys.messages(LOST_QUEUE), lost.options["redis_message_id"])
    broker.client.lrem(keys.queue(LOST_QUEUE), 0, lost.options["redis_message_id"])
    print("runwatch demo: deleted a queued 'mail.digest' message from Redis (a flushed or failed-over Redis)")

    orphan = _dead_letter_without_callback(broker, engine, settings)
    print("runwatch demo: dead-lettered an 'invoices.export' job whose failure callback never arrived")

    letters = RedisLetters(broker.client, keys)
    letter = letter_of_run(letters, engine, render_report_run)
    result = requeue(letters, engine, ThresholdPolicy(settings), [letter])
    ((_, new_run, requeued),) = result.requeued
    print(f"runwatch demo: requeued dead-lettered run {render_report_run} as run {new_run}")
    return [killed, lost.message_id, orphan, requeued]


def reconcile(broker: RedisBroker, settings: Settings, message_ids: list[str], timeout_seconds: float = 30) -> None:
    """Run maintenance passes (as every worker does every 30 s) until each fault is resolved."""
    fast = dataclasses.replace(settings, heartbeat_timeout_ms=2000)
    pass_until_resolved(Maintenance(broker.client, fast, namespace=broker.namespace), message_ids, timeout_seconds)


def pass_until_resolved(maintenance: Maintenance, message_ids: list[str], timeout_seconds: float) -> None:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        maintenance.run_once(dead_letter_min_age_seconds=0)
        with maintenance.engine.connect() as conn:
            if lookups.completed(conn, message_ids) == len(message_ids):
                return
        time.sleep(0.5)
    raise TimeoutError("the demo's faults were not all reconciled in time")


def stop_rescuers() -> None:
    while _rescuers:
        _rescuers.pop().stop()


def evidence_lines(engine, message_ids: list[str], *, rabbitmq: bool = False) -> list[str]:
    with engine.connect() as conn:
        rows = (
            conn.execute(
                text(
                    "SELECT id, message_id, outcome, type, reason_code, reconciliation_source, "
                    "reconciliation_evidence AS e, retry_of, deliveries, healer_note "
                    "FROM operation_runs WHERE message_id = ANY(:ids) OR reconciled_at IS NOT NULL ORDER BY id"
                ),
                {"ids": message_ids},
            )
            .mappings()
            .all()
        )
    lines = []
    killed = message_ids[0]  # inject() returns the SIGKILLed worker's message first
    for r in rows:
        if r["message_id"] == killed:
            note = r["healer_note"] or {}
            # NOTE: a later pass may have noted the redelivery in progress instead of the hand-back.
            how = (
                f"worker {str(note['worker_id'])[:8]} dead (heartbeat {note['heartbeat_age_seconds']:.0f} s old); "
                if note.get("why") == "requeued_from_dead_worker"
                else "worker SIGKILLed; "
            )
            back = "RabbitMQ gave its unacknowledged message back" if rabbitmq else "the healer handed its message back"
            lines.append(
                f"  run {r['id']} ({r['type']}): {how}{back}; delivered {r['deliveries']} times, then {r['outcome']}"
            )
        elif r["retry_of"]:
            lines.append(f"  run {r['id']} ({r['type']}): requeued from run {r['retry_of']}")
        elif r["reason_code"]:
            lines.append(
                f"  run {r['id']} ({r['type']}): {r['reconciliation_source']} {r['reason_code']}: {_summary(r['e'])}"
            )
    return lines


def _summary(e: dict[str, Any]) -> str:
    if e.get("dead_letter_key") and e.get("found_by"):
        return f"dead letter {e['dead_letter_key']}/{e.get('redis_message_id') or e['message_id']} had no terminal run"
    if e.get("dead_letter_key"):
        return (
            f"{e.get('exception_type')} on attempt {e.get('retries')} (max_retries {e.get('max_retries')}); "
            f"dead letter in {e['dead_letter_key']}"
        )
    if e.get("status_seen") == "running":
        return (
            f"no progress for {e['age_seconds']:.0f} s (threshold {e['threshold_seconds']} s, "
            f"{e['threshold_source']}); worker {str(e['worker_id'])[:8]} alive: {e['worker_alive']}"
        )
    if e.get("broker_detail"):  # RabbitMQ: queue counts, no lookup by id
        return f"queued {e['age_seconds']:.0f} s (threshold {e['threshold_seconds']} s); {e['broker_detail']}"
    return (
        f"queued {e['age_seconds']:.0f} s (threshold {e['threshold_seconds']} s); "
        f"looked in {', '.join(e['looked_for_message_in'])}: not found"
    )


def clean(broker: RedisBroker) -> None:
    """Forget an earlier demo's queues and dead letters (the ledger keeps its runs)."""
    keys = list(broker.client.scan_iter(match=f"{broker.namespace}:*", count=1000))
    if keys:
        broker.client.delete(*keys)


def _kill_worker_mid_run(broker: RedisBroker, engine) -> str:
    rebuild = declare(broker)
    env = {**os.environ, "RW_DEMO_CHILD_DOOMED": "1"}
    child = subprocess.Popen([sys.executable, "-m", "runwatch.workers.demo_child", broker.namespace], env=env)
    message = rebuild.send_with_options(runwatch_tenant_id=2)
    wait_running(engine, message.message_id)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    rescue(broker)  # a live worker for that queue, to take the redelivery the healer will hand back
    return message.message_id


def declare_digest(broker: dramatiq.Broker) -> dramatiq.Actor:
    """The job whose queued message the demo loses (no worker consumes its queue)."""

    @dramatiq.actor(
        broker=broker,
        queue_name=LOST_QUEUE,
        runwatch_type="mail.digest",
        runwatch_label="Send digest",
        runwatch_queued_stale_seconds=1,
    )
    def send_digest() -> None:
        pass

    return send_digest


def wait_running(engine, message_id: str, timeout_seconds: float = 20) -> None:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            if lookups.statuses(conn, [message_id]).get(message_id, ("",))[0] == "running":
                return
        time.sleep(0.1)


def rescue(broker: dramatiq.Broker) -> None:
    """A live worker for the killed worker's queue (stopped by ``stop_rescuers``)."""
    rescuer = dramatiq.Worker(broker, queues={KILLED_QUEUE}, worker_threads=1, worker_timeout=100)
    rescuer.start()
    _rescuers.append(rescuer)


def _dead_letter_without_callback(broker: RedisBroker, engine, settings: Settings) -> str:
    """A job that was enqueued and recorded, then nacked by a worker that died before its callback."""
    bare = RedisBroker(url=settings.redis_url, namespace=broker.namespace)
    message: dramatiq.Message[Any] = dramatiq.Message(
        queue_name=LEGACY_QUEUE, actor_name="export_invoices", args=(), kwargs={}, options={"runwatch_tenant_id": 3}
    )
    enqueued = bare.enqueue(message)
    meta = {
        "queue": LEGACY_QUEUE,
        "actor": "export_invoices",
        "type": "invoices.export",
        "tenant_id": 3,
        "created_at": message.message_timestamp / 1000,
    }
    with engine.begin() as conn:
        apply_events(
            conn, [ev.new_event(ev.ENQUEUED, message.message_id, time.time(), meta)], ThresholdPolicy(settings)
        )
    from runwatch.bridge.locator import RedisLocator

    RedisLocator(broker.client, Keys(broker.namespace), event_stream=settings.event_stream).dead_letter_if_queued(
        LEGACY_QUEUE, enqueued.options["redis_message_id"]
    )
    bare.close()
    return message.message_id
