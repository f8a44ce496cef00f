"""RabbitMQ variants of the scenarios whose fault is Redis-specific (test_faults.py runs the rest on both).

They run on the suite's own RabbitMQ node (tests/support/rabbit_node.py), which they may restart
without disturbing the machine's server; they skip, saying why, where no ``rabbitmq-server`` exists.
"""

from __future__ import annotations

import time

import dramatiq
import pytest
from runwatch.bridge import amqp

from . import fleet
from . import scenario_checks as checks
from .actors import QUEUE
from .world import REACH_SECONDS, World

#: Worker threads, all held by gated jobs, so that the other jobs wait in RabbitMQ through the restart.
THREADS = 4
#: Delayed jobs' delay: their eta may pass before or after the restart; they must run either way.
DELAY_MS = 3000


@pytest.mark.parametrize("world", ["rabbitmq"], indirect=True)
def test_rabbitmq_restarted(world: World) -> None:
    """3r. RabbitMQ restarted under load: durable queues and persistent messages survive, nothing is healed."""
    a = world.worker("a", threads=THREADS)
    running = [world.send("ok", 200, 1, gate="restart").message_id for _ in range(THREADS)]
    waiting = world.send_mix(max(2 * THREADS, world.scale.jobs // 4), ("ok",), ms=(50, 200))
    delayed = []
    for _ in range(max(3, world.scale.jobs // 10)):
        message = world.work.send_with_options(args=("ok", 100), delay=DELAY_MS, runwatch_tenant_id=2)
        world.history.send(message.message_id, "ok", 2)
        delayed.append(message.message_id)
    world.recorder.shipper.flush()
    world.wait_in_flight(running, REACH_SECONDS, a.group)
    world.wait_count("true", len(world.history.sent), REACH_SECONDS)
    world.wait_count("deliveries >= 1", len(running), REACH_SECONDS, running)
    restart_at = time.time()
    assert not world.in_flight(waiting + delayed), "a waiting job started while every thread was held"
    world.rabbit_restart()
    world.history.faults["rabbitmq_restart"] += 1
    world.history.hit("rabbitmq_restart", restart_at, running, group=a.group)
    world.figures["rabbitmq_down_seconds"] = round(time.time() - restart_at, 1)
    world.open_gate("restart")  # the jobs that ran through the restart end now
    world.settle()
    world.figures["delivered_twice"] = world.count("deliveries = 2")
    world.finish([checks.survived_broker_restart(world.history.sent)])


@pytest.mark.parametrize("world", ["rabbitmq"], indirect=True)
def test_rabbitmq_concurrent_healers(world: World) -> None:
    """5r. Messages RabbitMQ lost, dead letters without a callback, then several healers and scans at once."""
    world.history.slack_seconds = 30  # healed by the CLI processes, started once every run is stale
    world.runwatch("drainer", ["drain"])  # no worker runs here, so nothing else applies the events
    messages = [world.send("ok", 100, 1 + i % 3) for i in range(world.scale.stale_runs)]  # no worker runs them
    world.recorder.shipper.flush()
    world.wait_count("true", len(messages), REACH_SECONDS)
    _lose_or_dead_letter(world, len(messages))
    world.wait_count("stale_at <= now()", len(messages), REACH_SECONDS)
    passes = 3
    procs, codes = fleet.concurrent_passes(world.scale.healers, world.env, world.log_dir, passes=passes)
    world.processes.extend(procs)
    world.history.faults["concurrent_passes"] += passes * len(procs)
    world.settle(60)
    world.finish([checks.every_pass_finished(codes)])


def _lose_or_dead_letter(world: World, count: int) -> None:
    """Take every message off the queue: every other one nacked into ``<q>.XQ``, as a worker that died
    before its failure callback would leave it; the rest acked, so gone as after a purge or a TTL expiry."""
    assert world.rabbit is not None
    conn = amqp.connect(world.rabbit.url)
    try:
        channel = conn.channel()
        for i in range(count):
            method, _props, body = channel.basic_get(QUEUE)
            assert method is not None, f"only {i} of {count} messages were in {QUEUE}"
            message_id = dramatiq.Message.decode(body).message_id
            if i % 2:
                channel.basic_nack(method.delivery_tag, requeue=False)
                world.history.dead_lettered_by_test.add(message_id)
                world.history.faults["dead_letter_without_callback"] += 1
            else:
                channel.basic_ack(method.delivery_tag)
                world.history.faults["lost_message"] += 1
    finally:
        conn.close()
