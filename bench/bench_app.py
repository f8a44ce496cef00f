"""The benchmark app: a Redis broker and one no-op actor, with or without Runwatch.

The worker side is started by the Dramatiq CLI as ``python -m dramatiq bench_app:setup``;
``setup`` reads ``BENCH_VARIANT`` (``bare`` or ``runwatch``) and ``BENCH_REDIS_URL``. The
producer (``throughput.py``) calls ``build`` directly, once per variant.

The bare variant never imports ``workers``, so its worker RSS holds no Runwatch code at all.
"""

from __future__ import annotations

import os
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker

QUEUE = "bench"
NAMESPACE = "bench"
VARIANTS = ("bare", "runwatch")


def build(variant: str, redis_url: str) -> tuple[RedisBroker, dramatiq.Actor, Any]:
    """Return ``(broker, noop_actor, recorder_or_None)`` for ``variant``.

    Runwatch settings (database URL, event stream, drain mode) come from ``RUNWATCH_*``.
    """
    if variant not in VARIANTS:
        raise ValueError(f"BENCH_VARIANT must be one of {VARIANTS}, got {variant!r}")
    broker = RedisBroker(url=redis_url, namespace=NAMESPACE)
    recorder = None
    if variant == "runwatch":
        from runwatch import workers

        recorder = workers.install(broker)  # before declaring actors

    def noop() -> None:
        """Do nothing: the benchmark measures the per-message overhead only."""

    actor = dramatiq.actor(noop, broker=broker, queue_name=QUEUE)
    return broker, actor, recorder


def setup() -> None:
    """Entry point for the Dramatiq CLI: build the broker from the environment and set it."""
    broker, _, _ = build(os.environ.get("BENCH_VARIANT", "bare"), os.environ["BENCH_REDIS_URL"])
    dramatiq.set_broker(broker)
