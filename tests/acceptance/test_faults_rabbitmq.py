"""RabbitMQ variants of the scenarios whose fault is Redis-specific (test_faults.py runs the rest on both).

They run on the suite's own RabbitMQ node (tests/support/rabbit_node.py), which they may restart
without disturbing the machine's server; they skip, saying why, where no ``rabbitmq-server`` exists.
"""

from __future__ import annotations

import time

import pytest

from . import scenario_checks as checks
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
