"""Liveness and readiness probes; neither needs a token.

Readiness asks PostgreSQL for ``SELECT 1`` and Redis for ``PING``. Redis is spoken to over a raw
socket (RESP) because ``api/`` may not import the Redis client (docs/design.md §1): the API itself
never touches Redis, but an API whose workers' broker is down is not serving live truth.
"""

from __future__ import annotations

import logging
import socket
import ssl
from urllib.parse import unquote, urlsplit

import falcon

from runwatch.queries import DatabaseUnavailable

from .errors import Problem
from .store import Store

#: How long each readiness check may take before the dependency counts as down.
CHECK_TIMEOUT_SECONDS = 1.0

log = logging.getLogger("runwatch.api.health")


def _command(*parts: str) -> bytes:
    encoded = [p.encode() for p in parts]
    return f"*{len(encoded)}\r\n".encode() + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in encoded)


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
            sock = socket.create_connection((parts.hostname or "localhost", parts.port or 6379), timeout=timeout)
            if parts.scheme == "rediss":
                sock = ssl.create_default_context().wrap_socket(sock, server_hostname=parts.hostname)
        with sock:
            sock.sendall(b"".join(commands))
            replies = b""
            # Each reply is one line ("+OK", "+PONG" or "-ERR ..."); read until we have them all.
            while replies.count(b"\r\n") < len(commands):
                chunk = sock.recv(512)
                if not chunk:
                    return False
                replies += chunk
    except (OSError, ValueError) as error:
        log.warning("redis readiness check failed: %s", error)
        return False
    return replies.split(b"\r\n")[len(commands) - 1] == b"+PONG"


class LiveResource:
    """``GET /health/live``: the process answers HTTP. Nothing else is checked."""

    auth_required = False

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"status": "live"}


class ReadyResource:
    """``GET /health/ready``: 200 when PostgreSQL and Redis both answer, else 503 naming the culprit."""

    auth_required = False

    def __init__(self, store: Store, redis_url: str | None) -> None:
        self.store = store
        self.redis_url = redis_url

    def _postgresql(self) -> str:
        try:
            return "ok" if self.store.ping() else "down"
        except DatabaseUnavailable:
            return "down"

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        checks = {
            "postgresql": self._postgresql(),
            "redis": "not_configured" if self.redis_url is None else ("ok" if redis_ping(self.redis_url) else "down"),
        }
        down = [name for name, state in checks.items() if state == "down"]
        if down:
            verb = "is" if len(down) == 1 else "are"
            raise Problem(503, f"Not ready: {' and '.join(down)} {verb} down.", checks=checks)
        resp.media = {"status": "ready", "checks": checks}
