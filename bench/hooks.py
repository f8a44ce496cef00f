"""CPU of the recorder's hooks per message, on the job's own thread, and of the shipper thread.

    python bench/hooks.py [--messages 20000] [--threads 1] [--redis-url redis://127.0.0.1:6379/0]

The hooks of one successful delivery (before_process_message, after_process_message,
after_ack) are called as Dramatiq calls them, from T threads at once, each on its own messages;
the durable wait before the ack included (it blocks, it does not spin). Reported per message:
CPU of the calling threads (``time.thread_time``: what the job's thread pays, the issue's
"worker-side cost"), CPU of the rest of the process (the shipper thread: building, encoding,
XADD), and the producer side: ``send()`` with the recorder minus without, on the caller's
thread. Uses its own stream and namespace on the given Redis and deletes them afterwards.
"""

from __future__ import annotations

import argparse
import os
import threading
import time

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.brokers.redis import RedisBroker

from runwatch import workers
from runwatch.settings import Settings

NAMESPACE = "hookbench"
STREAM = "hookbench:runwatch:events"


def build(redis_url: str, recorded: bool) -> tuple[RedisBroker, dramatiq.Actor, workers.Recorder | None]:
    broker = RedisBroker(url=redis_url, namespace=NAMESPACE)
    recorder = None
    if recorded:
        settings = Settings(event_stream=STREAM, drain_mode="external", heal_interval_seconds=0)
        recorder = workers.install(broker, settings=settings)

    def noop() -> None:
        pass

    return broker, dramatiq.actor(noop, broker=broker, queue_name="hookbench"), recorder


def deliveries(broker: RedisBroker, actor: dramatiq.Actor, recorder: workers.Recorder, n: int, threads: int) -> dict:
    messages = [[MessageProxy(actor.message()) for _ in range(n // threads)] for _ in range(threads)]
    spent = [0.0] * threads
    start = threading.Barrier(threads + 1)

    def work(i: int) -> None:
        start.wait()
        t0 = time.thread_time()
        for message in messages[i]:
            recorder.before_process_message(broker, message)
            recorder.after_process_message(broker, message, result=None)
            recorder.after_ack(broker, message)
        spent[i] = time.thread_time() - t0

    pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    cpu0, wall0 = os.times(), time.perf_counter()
    start.wait()
    for t in pool:
        t.join()
    recorder.shipper.flush()
    cpu1, wall = os.times(), time.perf_counter() - wall0
    total = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
    done = threads * (n // threads)
    return {
        "hooks_us": 1e6 * sum(spent) / done,
        "shipper_us": 1e6 * (total - sum(spent)) / done,
        "wall_us": 1e6 * wall / done,
    }


def send_cost(redis_url: str, n: int) -> float:
    """Caller-thread CPU per send(), with the recorder minus without."""
    costs = {}
    for recorded in (False, True):
        broker, actor, recorder = build(redis_url, recorded)
        for _ in range(200):
            actor.send()
        t0 = time.thread_time()
        for _ in range(n):
            actor.send()
        costs[recorded] = (time.thread_time() - t0) / n
        if recorder is not None:
            recorder.shipper.close()
        broker.flush_all()
        broker.close()
    return 1e6 * (costs[True] - costs[False])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--redis-url", default=os.environ.get("RUNWATCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
    args = parser.parse_args()
    broker, actor, recorder = build(args.redis_url, True)
    try:
        deliveries(broker, actor, recorder, 2000, 1)  # warm-up: profiles, the shipper thread
        for threads in args.threads:
            r = deliveries(broker, actor, recorder, args.messages, threads)
            print(
                f"{threads} thread(s): hooks {r['hooks_us']:.1f} us/msg on the job's thread, "
                f"shipper {r['shipper_us']:.1f} us/msg, wall {r['wall_us']:.1f} us/msg"
            )
    finally:
        recorder.shipper.close()
        broker.client.delete(STREAM)
        broker.close()
    print(f"send(): +{send_cost(args.redis_url, args.messages):.1f} us/msg on the caller's thread with the recorder")
    client = RedisBroker(url=args.redis_url, namespace=NAMESPACE)
    client.client.delete(STREAM)
    client.close()


if __name__ == "__main__":
    main()
