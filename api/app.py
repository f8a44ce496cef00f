"""The Falcon WSGI application: ``create_app(store)`` for tests, ``get_app()`` for gunicorn."""

from __future__ import annotations

import logging
import sys

import falcon

from runwatch.errors import ConfigError
from runwatch.settings import DEFAULT_CONSOLE_SESSION_SECONDS, Settings

from . import errors
from .actions import ActionResource, ActionsResource, MaintenancePassesResource
from .auth import AuthMiddleware
from .console import ConsoleAuth
from .console import install as install_console
from .console_store import ConsoleStore
from .deadletters import (
    DeadLetterActionResource,
    DeadLetterGroupsResource,
    DeadLetterPreviewResource,
    DeadLetterResource,
    DeadLettersResource,
)
from .health import LiveResource, ReadyResource
from .metrics import Metrics, MetricsResource
from .openapi import document
from .operations import OperationResource, OperationsResource
from .store import Store, store_from_settings

log = logging.getLogger("runwatch.api")


class OpenApiResource:
    """``GET /api/openapi.json``: the API's own document; no token."""

    auth_required = False

    def __init__(self) -> None:
        self.body = document()

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.body


def create_app(
    store: Store,
    *,
    redis_url: str | None = None,
    rabbitmq_url: str | None = None,
    console_session_seconds: int = DEFAULT_CONSOLE_SESSION_SECONDS,
) -> falcon.App:
    """Wire the resources to ``store``; ``redis_url`` and ``rabbitmq_url`` are only probed by readiness."""
    metrics = Metrics(store)
    # NOTE: metrics first, so its timer wraps authentication and its response hook runs last.
    # Bearer tokens admit the JSON API, session cookies admit the console's pages: never the other way.
    app = falcon.App(middleware=(metrics, AuthMiddleware(store), ConsoleAuth(store)))
    # A blank value ("?status=") is a malformed filter, not an absent one: keep it to reject it.
    app.req_options.keep_blank_qs_values = True
    errors.install(app)
    app.add_route("/api/admin/operations", OperationsResource(store))
    app.add_route("/api/admin/operations/{operationRun}", OperationResource(store))
    console = ConsoleStore(store)
    app.add_route("/api/admin/dead-letters", DeadLettersResource(console))
    app.add_route("/api/admin/dead-letters/groups", DeadLetterGroupsResource(console))
    app.add_route("/api/admin/dead-letters/{letterId}", DeadLetterResource(console))
    app.add_route("/api/admin/dead-letters/preview", DeadLetterPreviewResource(console))
    app.add_route("/api/admin/dead-letters/requeue", DeadLetterActionResource(console, "requeue"))
    app.add_route("/api/admin/dead-letters/purge", DeadLetterActionResource(console, "purge"))
    app.add_route("/api/admin/actions", ActionsResource(console))
    app.add_route("/api/admin/actions/{actionId}", ActionResource(console))
    app.add_route("/api/admin/maintenance/passes", MaintenancePassesResource(console))
    app.add_route("/api/openapi.json", OpenApiResource())
    app.add_route("/health/live", LiveResource())
    app.add_route("/health/ready", ReadyResource(store, redis_url, rabbitmq_url))
    app.add_route("/metrics", MetricsResource(metrics))
    install_console(app, store, session_seconds=console_session_seconds, console=console)
    return app


#: gunicorn's exit code for "the app failed to load": its master then stops instead of
#: forking replacement workers that would fail the same way.
APP_LOAD_ERROR = 4


def get_app() -> falcon.App:
    """The app configured from RUNWATCH_* variables (gunicorn: ``api.app:get_app()``).

    A malformed or missing setting ends the worker with the message, not a traceback.
    """
    try:
        settings = Settings.from_env()
        store = store_from_settings(settings)
    except ConfigError as exc:
        print(f"runwatch api: error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(APP_LOAD_ERROR) from None
    return create_app(
        store,
        redis_url=settings.redis_url,
        rabbitmq_url=settings.rabbitmq_url,
        console_session_seconds=settings.console_session_seconds,
    )
