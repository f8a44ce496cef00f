"""The monitoring console: server-rendered pages over the same store and tenant scope as the API.

``install(app, store, ...)`` adds the console's routes, its cookie middleware's companion
resources and an error page. A new page is a ``session.ConsolePage`` (session cookie required, no
bearer), rendering a template that extends ``base.html`` via ``web.render``; add its link to ``web.NAV``.
"""

from __future__ import annotations

import falcon

from runwatch.settings import DEFAULT_CONSOLE_SESSION_SECONDS

from ..console_store import ConsoleStore
from ..errors import problem_body, serialize_problem
from ..store import Store
from .assets import AssetResource
from .audit import ActionPage, ActionsPage
from .deadletters import ConfirmResource, DeadLettersPage, PreviewResource
from .overview import HealerPage, OverviewPage
from .runs import RunLiveResource, RunPage, RunsPage
from .session import ConsoleAuth, SignInResource, SignOutResource
from .web import render

__all__ = ["ConsoleAuth", "install"]


class _Home:
    auth_required = False

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        raise falcon.HTTPMovedPermanently("/console/")


def serialize_error(req: falcon.Request, resp: falcon.Response, error: falcon.HTTPError) -> None:
    """Console pages answer errors with an HTML page; everything else keeps problem+json."""
    if not req.path.startswith("/console/") or req.path.endswith("/live"):
        return serialize_problem(req, resp, error)
    body = problem_body(error)
    render(req, resp, "error.html", status=error.status_code, title=body["title"], detail=body["detail"])


def install(
    app: falcon.App,
    store: Store,
    *,
    session_seconds: int = DEFAULT_CONSOLE_SESSION_SECONDS,
    console: ConsoleStore | None = None,
) -> None:
    console = console or ConsoleStore(store)
    app.add_route("/console", _Home())
    app.add_route("/console/", OverviewPage(store))
    app.add_route("/console/runs", RunsPage(store))
    app.add_route("/console/runs/{run_id}", RunPage(store))
    app.add_route("/console/runs/{run_id}/live", RunLiveResource(store))
    app.add_route("/console/healer", HealerPage(store))
    app.add_route("/console/dead-letters", DeadLettersPage(console))
    app.add_route("/console/dead-letters/preview", PreviewResource(console))
    app.add_route("/console/dead-letters/confirm", ConfirmResource(console))
    app.add_route("/console/actions", ActionsPage(console))
    app.add_route("/console/actions/{action_id}", ActionPage(console))
    app.add_route("/console/sign-in", SignInResource(store, session_seconds=session_seconds))
    app.add_route("/console/sign-out", SignOutResource(store))
    app.add_route("/console/static/{name}", AssetResource())
    app.set_error_serializer(serialize_error)
