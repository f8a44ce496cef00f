"""The benchmark app: a Redis or RabbitMQ broker and one actor, with or without Runwatch.

The worker side is started by the Dramatiq CLI as ``python -m dramatiq bench_app:setup``;
``setup`` reads ``BENCH_VARIANT`` (``bare`` or ``runwatch``), ``BENCH_BROKER`` (``redis`` or
``rabbitmq``), ``BENCH_BROKER_URL`` and ``BENCH_JOB_CPU_US`` (the CPU each job burns on its own
thread; 0, the default, is a no-op job: the recorder's cost alone, its worst case). The producer
(``throughput.py``) calls ``build`` directly, once per variant.

The bare variant never imports ``workers``, so its worker RSS holds no Runwatch code at all.
"""

from __future__ import annotations

import os
import time
from typing import Any

import dramatiq

QUEUE = "bench"
NAMESPACE = "bench"
VARIANTS = ("bare", "runwatch")
#: NOTE: publisher confirms on for both variants: Runwatch's ``rabbitmq_broker()`` turns them on by
#: default (a job is recorded as queued only once RabbitMQ has it), and bare Dramatiq must pay the
#: same price on the enqueue side for the comparison to measure the recorder alone.
RABBITMQ_CONFIRM_DELIVERY = True


def make_broker(kind: str, url: str) -> dramatiq.Broker:
    if kind == "rabbitmq":
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        return RabbitmqBroker(url=url, confirm_delivery=RABBITMQ_CONFIRM_DELIVERY)
    from dramatiq.brokers.redis import RedisBroker

    return RedisBroker(url=url, namespace=NAMESPACE)


def build(variant: str, kind: str, url: str, *, job_cpu_us: int = 0) -> tuple[dramatiq.Broker, dramatiq.Actor, Any]:
    """Return ``(broker, actor, recorder_or_None)`` for ``variant`` on a ``kind`` broker at ``url``;
    each job burns ``job_cpu_us`` of its thread's CPU (0: a no-op).

    Runwatch settings (database URL, event stream, drain mode) come from ``RUNWATCH_*``; its run
    events travel through the broker itself (the Redis stream, or the RabbitMQ event queue).
    """
    if variant not in VARIANTS:
        raise ValueError(f"BENCH_VARIANT must be one of {VARIANTS}, got {variant!r}")
    broker = make_broker(kind, url)
    recorder = None
    if variant == "runwatch":
        from runwatch import workers

        recorder = workers.install(broker)  # before declaring actors

    def job() -> None:
        """Burn ``job_cpu_us`` of this thread's CPU, or do nothing: the per-message overhead alone."""
        if job_cpu_us:
            until = time.thread_time_ns() + job_cpu_us * 1000
            while time.thread_time_ns() < until:
                # NOTE: Python work between clock reads (~30 µs): the clock is a system call, and a
                # job that is mostly system calls would measure the kernel, not a job.
                for _ in range(2000):
                    pass

    actor = dramatiq.actor(job, broker=broker, queue_name=QUEUE)
    return broker, actor, recorder


def setup() -> None:
    """Entry point for the Dramatiq CLI: build the broker from the environment and set it."""
    env = os.environ
    variant, kind, url = env.get("BENCH_VARIANT", "bare"), env.get("BENCH_BROKER", "redis"), env["BENCH_BROKER_URL"]
    broker, _, _ = build(variant, kind, url, job_cpu_us=int(env.get("BENCH_JOB_CPU_US", "0")))
    dramatiq.set_broker(broker)
