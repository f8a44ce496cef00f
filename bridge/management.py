"""RabbitMQ's management HTTP API, for the one fact AMQP cannot give: unacked messages per queue.

Optional (``RUNWATCH_RABBITMQ_MANAGEMENT_URL``, e.g. ``http://guest:guest@127.0.0.1:15672``).
Without it the healer cannot tell whether a consumer holds a run's message and decides on time
alone; a management API that does not answer degrades the same way, it never stops a pass.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

#: The management API answers from its statistics database; a pass never waits longer than this.
DEFAULT_TIMEOUT_SECONDS = 2.0


class ManagementUnavailable(Exception):
    """The management API did not answer, or answered something else than queue statistics."""


def unacked_counts(
    management_url: str,
    vhost: str,
    queues: Iterable[str],
    *,
    credentials: tuple[str, str] | None = None,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
) -> dict[str, int | None]:
    """``messages_unacknowledged`` of each of ``queues`` in ``vhost`` (None: no statistics yet, or no such queue).

    One request per pass: the vhost's queues, only the columns needed. ``credentials`` are used
    when the URL carries none (the AMQP user, usually the same).
    """
    url, auth = _split_auth(management_url, credentials)
    request = urllib.request.Request(
        f"{url}/api/queues/{quote(vhost, safe='')}?columns=name,messages_unacknowledged",
        headers={"Accept": "application/json", **auth},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_seconds) as response:  # noqa: S310 (an operator's URL)
            listed = json.load(response)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise ManagementUnavailable(f"{type(exc).__name__}: {exc}") from None
    return parse_unacked(listed, queues)


def parse_unacked(listed: Any, queues: Iterable[str]) -> dict[str, int | None]:
    """The counts of ``queues`` in a ``GET /api/queues/<vhost>`` answer."""
    if not isinstance(listed, list):
        raise ManagementUnavailable("the management API did not list queues")
    known: Mapping[str, Any] = {
        q["name"]: q.get("messages_unacknowledged") for q in listed if isinstance(q, dict) and "name" in q
    }
    return {name: known[name] if isinstance(known.get(name), int) else None for name in queues}


def _split_auth(url: str, credentials: tuple[str, str] | None) -> tuple[str, dict[str, str]]:
    """The URL without its user info, and a Basic Authorization header (from the URL, else ``credentials``)."""
    parts = urlsplit(url.rstrip("/"))
    user, password = (unquote(parts.username or ""), unquote(parts.password or "")) if parts.username else (None, None)
    if user is None and credentials is not None:
        user, password = credentials
    netloc = parts.hostname or ""
    if ":" in netloc:  # an IPv6 literal
        netloc = f"[{netloc}]"
    if parts.port:
        netloc += f":{parts.port}"
    bare = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    if user is None:
        return bare, {}
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return bare, {"Authorization": f"Basic {token}"}
