"""The throughput benchmark's broker, Redis or RabbitMQ, behind one interface (``BenchBroker``).

Each side knows how to reach its server (``url``, the value of ``BENCH_BROKER_URL``), which
process to put in the CPU account (``server_pid``, the component ``kind``), how many job messages
are still waiting (``pending``), how many run events the drainer rejected (``rejected``), and how
to start a round from nothing (``reset``).

**Redis**: the private redis-server ``common.private_servers`` starts (database 1), so all of its
CPU is the benchmark's. **RabbitMQ**: the machine's server (``RUNWATCH_RABBITMQ_URL``, default
guest on 127.0.0.1:5672) in a virtual host of the benchmark's own, made with ``rabbitmqctl`` and
deleted afterwards, as tests/support/rabbitmq.py does. That node may serve other users meanwhile:
its CPU (the ``beam.smp`` process and its children) is counted over each phase, other load on the
node included, and ``idle_cpu_per_s`` samples that background before each phase.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any, Protocol
from urllib.parse import quote

import cpuacct
from common import BenchError, log

KINDS = ("redis", "rabbitmq")
DEFAULT_RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"


class BenchBroker(Protocol):
    kind: str  # also the name of the server's component in the CPU account
    url: str
    server_pid: int

    def reset(self, queue: str, event_queue: str) -> None:
        """Delete the job queue's messages and the run events of the previous round."""

    def pending(self, queue: str) -> int:
        """Job messages not handed to a worker yet (Redis: not acked yet; see ``RabbitSide.pending``)."""

    def rejected(self, event_queue: str) -> int:
        """Run events the drainer could not apply."""

    def close(self) -> None: ...


class RedisSide:
    """A Redis of the benchmark's own; ``pending`` counts queued and in-flight messages (the ack deletes them)."""

    kind = "redis"

    def __init__(self, url: str, server_pid: int, namespace: str) -> None:
        import redis

        self.url = url.rsplit("/", 1)[0] + "/1"
        self.server_pid = server_pid
        self.namespace = namespace
        self.client = redis.Redis.from_url(self.url)

    def reset(self, queue: str, event_queue: str) -> None:
        self.client.flushdb()

    def pending(self, queue: str) -> int:
        with self.client.pipeline(transaction=False) as pipe:
            pipe.hlen(f"{self.namespace}:{queue}.msgs")
            pipe.hlen(f"{self.namespace}:{queue}.DQ.msgs")
            return sum(pipe.execute())

    def rejected(self, event_queue: str) -> int:
        return self.client.xlen(f"{event_queue}:rejected")

    def close(self) -> None:
        self.client.close()


class RabbitSide:
    """A virtual host on the machine's RabbitMQ, read over one AMQP connection of the benchmark's.

    NOTE: AMQP reports a queue's *ready* messages only, not the delivered-but-unacked ones (the
    management plugin, which would, is off on this machine). So ``pending`` reaches 0 when the last
    message is delivered, up to one prefetch (2 x threads per worker process) before the last ack:
    a few milliseconds early, against phases of seconds. After each phase the worker is stopped and
    the queue must be empty: an unacked message would be back in it.
    """

    kind = "rabbitmq"

    def __init__(self, url: str, server_pid: int) -> None:
        from runwatch.bridge import amqp

        self.url = url
        self.server_pid = server_pid
        self._conn = amqp.connect(url)
        self._channel: Any = self._conn.channel()

    def reset(self, queue: str, event_queue: str) -> None:
        from runwatch.bridge import amqp

        # NOTE: queue.delete of a missing queue is a no-op in RabbitMQ 3.x.
        for name in (*amqp.queue_family(queue), event_queue, amqp.rejected_queue(event_queue)):
            self._chan().queue_delete(queue=name)

    def ready(self, name: str) -> int:
        import pika.exceptions

        try:
            return self._chan().queue_declare(queue=name, passive=True).method.message_count
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code != 404:
                raise
            self._channel = None  # NOTE: the broker closed the channel; the queue is not declared yet
            return 0

    def pending(self, queue: str) -> int:
        return self.ready(queue)

    def rejected(self, event_queue: str) -> int:
        from runwatch.bridge import amqp

        return self.ready(amqp.rejected_queue(event_queue))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._conn.close()

    def _chan(self) -> Any:
        if self._channel is None or not self._channel.is_open:
            self._channel = self._conn.channel()
        return self._channel


def beam_pid(url: str) -> int:
    """The pid of the RabbitMQ node (its Erlang VM, ``beam.smp``) listening on ``url``'s port."""
    import pika
    import psutil

    port = pika.URLParameters(url).port
    # NOTE: rabbitmqctl and other private nodes run in a beam.smp too: match the listening port.
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] != "beam.smp":
            continue
        with contextlib.suppress(psutil.Error):
            conns = proc.net_connections(kind="tcp") if hasattr(proc, "net_connections") else proc.connections()
            if any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in conns):
                return proc.pid
    raise BenchError(f"no RabbitMQ node (beam.smp) on this machine listens on port {port}")


def _ctl(*args: str) -> None:
    done = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, timeout=120)
    if done.returncode:
        raise BenchError(f"rabbitmqctl {' '.join(args)}: {done.stderr.decode(errors='replace').strip()}")


@contextlib.contextmanager
def rabbitmq_vhost(base_url: str) -> Iterator[str]:
    """``base_url`` moved to a fresh virtual host, deleted (with every queue in it) on exit."""
    if shutil.which("rabbitmqctl") is None:
        raise BenchError("rabbitmqctl is needed to make the benchmark's own virtual host")
    vhost = f"runwatch-bench-{uuid.uuid4().hex[:8]}"
    user = base_url.split("//", 1)[1].split(":", 1)[0] or "guest"
    _ctl("add_vhost", vhost)
    try:
        _ctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
        log(f"RabbitMQ: virtual host {vhost} (deleted at the end)")
        yield base_url.rsplit("/", 1)[0] + "/" + quote(vhost, safe="")
    finally:
        _ctl("delete_vhost", vhost)


@contextlib.contextmanager
def opened(kind: str, redis_url: str, redis_pid: int, namespace: str) -> Iterator[BenchBroker]:
    """The benchmark's broker of ``kind`` (the private Redis at ``redis_url``, or a RabbitMQ vhost)."""
    side: BenchBroker
    with contextlib.ExitStack() as stack:
        if kind == "rabbitmq":
            base = os.environ.get("RUNWATCH_RABBITMQ_URL") or DEFAULT_RABBITMQ_URL
            side = RabbitSide(stack.enter_context(rabbitmq_vhost(base)), beam_pid(base))
        else:
            side = RedisSide(redis_url, redis_pid, namespace)
        stack.callback(side.close)
        yield side


def idle_cpu_per_s(side: BenchBroker, seconds: float = 2.0) -> float:
    """CPU seconds per second the broker server spends while the benchmark sends it nothing."""
    acct = cpuacct.Account({side.kind: side.server_pid})
    before, t0 = acct.snapshot(), time.perf_counter()
    time.sleep(seconds)  # NOTE: a measurement window, not a wait for a state
    return sum(acct.snapshot().minus(before).values()) / (time.perf_counter() - t0)


def check_server(side: BenchBroker) -> None:
    """Fail the phase if the broker server restarted during it (its CPU account would be wrong)."""
    if side.kind == "rabbitmq" and beam_pid(side.url) != side.server_pid:
        raise BenchError("the RabbitMQ node restarted during the phase (someone else restarted it?)")
