"""The test session's RabbitMQ: the machine's server (``RUNWATCH_RABBITMQ_URL``, default guest on
127.0.0.1:5672) in a virtual host of its own when ``rabbitmqctl`` can make one, so the session
owns every queue it creates; tests that need RabbitMQ skip, with the reason, when none answers."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from urllib.parse import quote

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"


def server_url() -> str:
    return os.environ.get("RUNWATCH_RABBITMQ_URL") or DEFAULT_URL


def unanswered(url: str) -> str | None:
    """Why RabbitMQ at ``url`` cannot be used (None: it answers)."""
    import pika.exceptions
    from runwatch.bridge import amqp

    try:
        amqp.connect(url, timeout_seconds=2).close()
    except (pika.exceptions.AMQPError, OSError) as exc:
        return f"no RabbitMQ answers at {url.split('@')[-1]}: {type(exc).__name__} {exc}"
    return None


def _ctl(*args: str) -> bool:
    if shutil.which("rabbitmqctl") is None:
        return False
    done = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, timeout=60)
    return done.returncode == 0


@contextlib.contextmanager
def session_vhost(base_url: str, token: str) -> Iterator[str]:
    """``base_url`` moved to a fresh virtual host (deleted afterwards), or ``base_url`` itself."""
    vhost = f"runwatch-test-{token}"
    user = base_url.split("//", 1)[1].split(":", 1)[0] or "guest"
    if not (_ctl("add_vhost", vhost) and _ctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")):
        yield base_url
        return
    try:
        yield base_url.rsplit("/", 1)[0] + "/" + quote(vhost, safe="")
    finally:
        _ctl("delete_vhost", vhost)


def unique(prefix: str = "rw") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"
