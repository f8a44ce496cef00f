"""The demo's second act on RabbitMQ (``runwatch demo --broker rabbitmq``): the same faults, no Redis.

- a worker SIGKILLed mid-run: RabbitMQ itself gives its unacknowledged message back (marked
  redelivered); another worker completes it (deliveries: 2), and the healer, seeing the message
  back in the queue, never fails it;
- a message RabbitMQ lost (its queue purged): the healer fails the queued run
  (``run.stale_queued``) with the queue counts it saw as evidence;
- a dead letter whose failure callback was lost: the adapter finds it by browsing ``<q>.XQ``
  (without consuming it) and reconciles it (``run.adapter_out_of_sync``);
- a dead-lettered job requeued by an operator: a new run linked to the old one (``retry_of``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import time
from typing import Any

import dramatiq
import pika.exceptions
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from runwatch.bridge import amqp
from runwatch.bridge.rabbitmq_letters import RabbitmqLetters
from runwatch.bridge.requeue import letter_of_run, requeue

from runwatch import events as ev
from runwatch.db import engine_for
from runwatch.ledger import apply_events
from runwatch.settings import Settings
from runwatch.thresholds import ThresholdPolicy

from .broker import install
from .demo_child import KILLED_QUEUE, declare
from .demo_faults import LEGACY_QUEUE, LOST_QUEUE, declare_digest, pass_until_resolved, rescue, wait_running
from .maintenance import Maintenance

DEMO_QUEUES = ("demo", KILLED_QUEUE, LOST_QUEUE, LEGACY_QUEUE)


def clean(broker: RabbitmqBroker) -> None:
    """Forget an earlier demo's queues and dead letters (the ledger keeps its runs)."""
    channel = broker.channel
    for queue in DEMO_QUEUES:
        for name in amqp.queue_family(queue):
            with contextlib.suppress(pika.exceptions.AMQPError):
                channel.queue_delete(name)
    del broker.channel  # NOTE: deleting a queue that has consumers may close the channel: start afresh


def inject(broker: RabbitmqBroker, settings: Settings, render_report_run: int) -> list[str]:
    """Cause every fault; return the message ids of the runs they concern."""
    engine = engine_for(settings.require_database_url())
    url = settings.require_rabbitmq_url()
    # NOTE: a second broker object: the demo's main worker would otherwise consume these queues too.
    faults = RabbitmqBroker(url=url, confirm_delivery=True)
    install(faults, settings=settings)
    faults.emit_after("process_boot")
    killed = _kill_worker_mid_run(faults, engine, settings)
    print("runwatch demo: SIGKILLed a worker in the middle of 'ledger.rebuild'")

    lost = declare_digest(faults).send_with_options(runwatch_tenant_id=1)
    faults.channel.queue_purge(LOST_QUEUE)
    print("runwatch demo: purged a queued 'mail.digest' message from RabbitMQ (a purged queue, an expired message)")

    orphan = _dead_letter_without_callback(faults, engine, settings)
    print("runwatch demo: dead-lettered an 'invoices.export' job whose failure callback never arrived")

    with RabbitmqLetters(url, queues=lambda: list(DEMO_QUEUES)) as letters:
        letter = letter_of_run(letters, engine, render_report_run)
        result = requeue(letters, engine, ThresholdPolicy(settings), [letter])
    ((_, new_run, requeued),) = result.requeued
    print(f"runwatch demo: requeued dead-lettered run {render_report_run} as run {new_run}")
    faults.close()
    return [killed, lost.message_id, orphan, requeued]


def reconcile(broker: RabbitmqBroker, settings: Settings, message_ids: list[str], timeout_seconds: float = 60) -> None:
    """Run maintenance passes (as every worker does every 30 s) until each fault is resolved."""
    fast = dataclasses.replace(settings, outage_grace_seconds=0)
    pass_until_resolved(Maintenance(None, fast, broker=broker), message_ids, timeout_seconds)


def _kill_worker_mid_run(broker: RabbitmqBroker, engine: Any, settings: Settings) -> str:
    rebuild = declare(broker)
    env = {**os.environ, **settings.as_env(), "RW_DEMO_CHILD_DOOMED": "1"}
    child = subprocess.Popen([sys.executable, "-m", "runwatch.workers.demo_child", "--rabbitmq"], env=env)
    message = rebuild.send_with_options(runwatch_tenant_id=2)
    wait_running(engine, message.message_id)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    rescue(broker)  # NOTE: RabbitMQ gives the dead consumer's message back by itself; this worker takes it
    return message.message_id


def _dead_letter_without_callback(broker: RabbitmqBroker, engine: Any, settings: Settings) -> str:
    """A job enqueued and recorded, then nacked into ``<q>.XQ`` by a worker that died before its callback."""
    message: dramatiq.Message[Any] = dramatiq.Message(
        queue_name=LEGACY_QUEUE, actor_name="export_invoices", args=(), kwargs={}, options={"runwatch_tenant_id": 3}
    )
    meta = {"queue": LEGACY_QUEUE, "actor": "export_invoices", "type": "invoices.export", "tenant_id": 3,
            "created_at": message.message_timestamp / 1000}  # fmt: skip
    with engine.begin() as conn:
        apply_events(
            conn, [ev.new_event(ev.ENQUEUED, message.message_id, time.time(), meta)], ThresholdPolicy(settings)
        )
    bare = RabbitmqBroker(url=settings.require_rabbitmq_url(), confirm_delivery=True)  # no Runwatch: no callback
    bare.enqueue(message)
    with contextlib.closing(amqp.connect(settings.require_rabbitmq_url())) as connection:
        channel = connection.channel()
        method, _, _ = channel.basic_get(LEGACY_QUEUE, auto_ack=False)
        channel.basic_nack(method.delivery_tag, requeue=False)  # what a worker's nack does: into <q>.XQ
    bare.close()
    return message.message_id
