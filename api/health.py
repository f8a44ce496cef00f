"""Liveness and readiness probes; neither needs a token.

Readiness asks PostgreSQL for ``SELECT 1`` and the broker whose URL is configured (Redis, RabbitMQ
or both) whether it answers (``probes``): the API itself never touches the broker, but an API
whose workers' broker is down is not serving live truth.
"""

from __future__ import annotations

import falcon

from runwatch.queries import DatabaseUnavailable

from .errors import Problem
from .probes import amqp_ping, redis_ping
from .store import Store


class LiveResource:
    """``GET /health/live``: the process answers HTTP. Nothing else is checked."""

    auth_required = False

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"status": "live"}


class ReadyResource:
    """``GET /health/ready``: 200 when PostgreSQL and the configured brokers answer, else 503 naming the culprit."""

    auth_required = False

    def __init__(self, store: Store, redis_url: str | None, rabbitmq_url: str | None = None) -> None:
        self.store = store
        self.redis_url = redis_url
        self.rabbitmq_url = rabbitmq_url

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
        if self.rabbitmq_url is not None:
            checks["rabbitmq"] = "ok" if amqp_ping(self.rabbitmq_url) else "down"
        down = [name for name, state in checks.items() if state == "down"]
        if down:
            verb = "is" if len(down) == 1 else "are"
            raise Problem(503, f"Not ready: {' and '.join(down)} {verb} down.", checks=checks)
        resp.media = {"status": "ready", "checks": checks}
