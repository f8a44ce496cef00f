"""The Falcon WSGI application: ``create_app(store)`` for tests, ``get_app()`` for gunicorn."""

from __future__ import annotations

import logging
import os

import falcon

from . import errors
from .auth import AuthMiddleware
from .health import LiveResource, ReadyResource
from .metrics import Metrics, MetricsResource
from .openapi import document
from .operations import OperationResource, OperationsResource
from .store import Store, store_from_env

log = logging.getLogger("api")


class OpenApiResource:
    """``GET /api/openapi.json``: the API's own document; no token."""

    auth_required = False

    def __init__(self) -> None:
        self.body = document()

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.body


def create_app(store: Store, *, redis_url: str | None = None) -> falcon.App:
    """Wire the resources to ``store``; ``redis_url`` is only probed by readiness."""
    metrics = Metrics(store)
    # NOTE: metrics first, so its timer wraps authentication and its response hook runs last.
    app = falcon.App(middleware=[metrics, AuthMiddleware(store)])
    # A blank value ("?status=") is a malformed filter, not an absent one: keep it to reject it.
    app.req_options.keep_blank_qs_values = True
    errors.install(app)
    app.add_route("/api/admin/operations", OperationsResource(store))
    app.add_route("/api/admin/operations/{operationRun}", OperationResource(store))
    app.add_route("/api/openapi.json", OpenApiResource())
    app.add_route("/health/live", LiveResource())
    app.add_route("/health/ready", ReadyResource(store, redis_url))
    app.add_route("/metrics", MetricsResource(metrics))
    return app


def get_app() -> falcon.App:
    """The app configured from RUNWATCH_* variables (gunicorn: ``api.app:get_app()``)."""
    return create_app(store_from_env(), redis_url=os.environ.get("RUNWATCH_REDIS_URL") or None)
