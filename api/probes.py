"""Raw-socket probes of the brokers for readiness: ``api/`` may not import their clients
(docs/design.md §1), and a probe needs only to know that the server answers in its protocol."""

from __future__ import annotations

import logging
import socket
import ssl
import struct
from collections.abc import Callable
from urllib.parse import SplitResult, unquote, urlsplit

#: How long each readiness check may take before the dependency counts as down.
CHECK_TIMEOUT_SECONDS = 1.0
#: AMQP 0-9-1's protocol header, and the method a server answers it with (connection.start).
_AMQP_HEADER = b"AMQP\x00\x00\x09\x01"
_CONNECTION_START = struct.pack(">HH", 10, 10)

log = logging.getLogger("runwatch.api.health")


def _command(*parts: str) -> bytes:
    encoded = [p.encode() for p in parts]
    return f"*{len(encoded)}\r\n".encode() + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in encoded)


def _exchange(sock: socket.socket, request: bytes, enough: Callable[[bytes], bool]) -> bytes | None:
    """Send ``request`` and read until ``enough`` says so; None when the server hangs up first."""
    with sock:
        sock.sendall(request)
        reply = b""
        while not enough(reply):
            chunk = sock.recv(512)
            if not chunk:
                return None
            reply += chunk
    return reply


def _tcp(parts: SplitResult, default_port: int, tls: bool, timeout: float) -> socket.socket:
    sock = socket.create_connection((parts.hostname or "localhost", parts.port or default_port), timeout=timeout)
    return ssl.create_default_context().wrap_socket(sock, server_hostname=parts.hostname) if tls else sock


def redis_ping(url: str, *, timeout: float = CHECK_TIMEOUT_SECONDS) -> bool:
    """True if the Redis server at ``url`` answers PING (after AUTH when the URL has a password)."""
    parts = urlsplit(url)
    commands = []
    if parts.password is not None:
        user = (unquote(parts.username),) if parts.username else ()
        commands.append(_command("AUTH", *user, unquote(parts.password)))
    commands.append(_command("PING"))
    try:
        if parts.scheme == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(parts.path)
        else:
            sock = _tcp(parts, 6379, parts.scheme == "rediss", timeout)
        # Each reply is one line ("+OK", "+PONG" or "-ERR ..."); read until we have them all.
        replies = _exchange(sock, b"".join(commands), lambda got: got.count(b"\r\n") >= len(commands))
    except (OSError, ValueError) as error:
        log.warning("redis readiness check failed: %s", error)
        return False
    return replies is not None and replies.split(b"\r\n")[len(commands) - 1] == b"+PONG"


def amqp_ping(url: str, *, timeout: float = CHECK_TIMEOUT_SECONDS) -> bool:
    """True if the server at ``url`` answers AMQP 0-9-1's protocol header with ``connection.start``.

    NOTE: the handshake stops there (no credentials are sent): the probe says the broker is up
    and speaks AMQP, not that the workers' user may log in.
    """
    parts = urlsplit(url)
    try:
        sock = _tcp(parts, 5671 if parts.scheme == "amqps" else 5672, parts.scheme == "amqps", timeout)
        # NOTE: a frame header (7 bytes), then the method's class and method ids (4)
        reply = _exchange(sock, _AMQP_HEADER, lambda got: len(got) >= 11)
    except (OSError, ValueError) as error:
        log.warning("rabbitmq readiness check failed: %s", error)
        return False
    return reply is not None and reply[0] == 1 and reply[7:11] == _CONNECTION_START
