"""The shipper's writes: XADD to the event stream on a connection of its own, framed by hand."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import redis
from redis.backoff import NoBackoff
from redis.connection import AbstractConnection
from redis.retry import Retry

from runwatch import counters

#: The shortest socket timeout of the shipper's own connection (``durable_wait_ms`` may be 0).
MIN_SOCKET_TIMEOUT_SECONDS = 0.1


class StreamWriter:
    """One Redis connection (made lazily from ``client``'s pool) that XADDs entries to ``stream``."""

    def __init__(self, client: redis.Redis, stream: str, *, timeout_seconds: float) -> None:
        self._client = client
        self._stream = stream
        name = stream.encode()
        self._head = b"*5\r\n$4\r\nXADD\r\n$%d\r\n%s\r\n$1\r\n*\r\n$1\r\ne\r\n" % (len(name), name)
        self._bound = max(timeout_seconds, MIN_SOCKET_TIMEOUT_SECONDS)
        self._conn: Any = None

    def reset(self) -> None:
        """Forget the connection (a forked child must not share its parent's socket)."""
        self._conn = None

    def count(self, increments: Mapping[str, float]) -> None:
        """Add counter increments (events dropped while Redis was away) to the stream's counters."""
        with self._client.pipeline(transaction=False) as pipe:
            counters.send(pipe, self._stream, increments)
            pipe.execute()

    def write(self, payloads: list[bytes]) -> None:
        """XADD each payload as one entry, pipelined, on this shipper's own connection.

        PERF: redis-py's ``xadd()`` cost ~180 us of CPU a call here (pool checkout, retry wrapper,
        command packing, RESP3 parsing), paid once per flush on a worker's GIL, against ~40 us for
        the socket calls themselves. The connection is redis-py's (connect, auth, TLS, HELLO);
        the command is framed and its reply read here. Only one thread ships at a time
        (the shipper's ``_leading``), so one connection is enough.
        """
        conn = self._conn
        if conn is None:
            # NOTE: typed as redis-py's interface; a pool of a redis.Redis makes AbstractConnection's subclasses.
            conn = self._conn = cast(AbstractConnection, self._client.connection_pool.make_connection())
            # NOTE: a leader writes on a job's own thread. Bound the write like the durable wait, so
            # a Redis that stops answering (a partition) never holds a job for longer: the events go
            # back to the buffer and the background thread retries them (the drainer dedupes by id).
            for attribute in ("socket_timeout", "socket_connect_timeout"):
                if getattr(conn, attribute, None) is None or getattr(conn, attribute) > self._bound:
                    setattr(conn, attribute, self._bound)
            conn.retry = Retry(NoBackoff(), 0)  # NOTE: one try: the background thread is the retry
        try:
            if conn._sock is None:
                conn.connect()
            sock = conn._sock
            sock.sendall(b"".join(self._head + b"$%d\r\n%s\r\n" % (len(p), p) for p in payloads))
            read_replies(sock, len(payloads))
        except BaseException:
            conn.disconnect()  # NOTE: a reply may still be in flight; the next write reconnects
            raise


def read_replies(sock: Any, count: int) -> None:
    """Read ``count`` XADD replies (entry ids, as RESP bulk strings); raise on an error reply."""
    buf, pos, seen = b"", 0, 0
    while seen < count:
        end = buf.find(b"\r\n", pos)
        if end < 0 or (buf[pos : pos + 1] == b"$" and len(buf) < end + 2 + int(buf[pos + 1 : end]) + 2):
            chunk = sock.recv(65536)
            if not chunk:
                raise redis.ConnectionError("Redis closed the connection")
            buf += chunk
            continue
        kind = buf[pos : pos + 1]
        if kind == b"$":
            pos = end + 2 + int(buf[pos + 1 : end]) + 2
        elif kind in (b"-", b"!"):
            raise redis.ResponseError(buf[pos + 1 : end].decode(errors="replace"))
        else:
            raise redis.ResponseError(f"unexpected reply to XADD: {buf[pos:end]!r}")
        seen += 1
