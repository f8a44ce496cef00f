"""Signing in and out of the console, and the middleware that admits a page by its cookie only.

Pages never accept a bearer header (a header alone would bypass CSRF); the JSON API never accepts
the cookie. Sign-in and sign-out are POSTs carrying a CSRF token; the session cookie is HttpOnly,
SameSite=Strict, Secure on TLS, and the ledger keeps only its hash (``runwatch.sessions``).
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar
from urllib.parse import parse_qs

import falcon

from runwatch import queries, sessions
from runwatch.tokens import Principal

from ..errors import Problem
from ..store import Store
from . import web

#: Largest sign-in/sign-out form body read (a token is ~50 characters).
MAX_FORM_BYTES = 4096
SIGN_IN = "/console/sign-in"

StoreT = TypeVar("StoreT")


def read_form(req: falcon.Request) -> dict[str, str]:
    """A small urlencoded form; each field's first value."""
    return {k: v[0] for k, v in read_form_lists(req).items()}


def read_form_lists(req: falcon.Request, max_bytes: int = MAX_FORM_BYTES) -> dict[str, list[str]]:
    """An urlencoded form of at most ``max_bytes``; every value of each field (checkboxes repeat)."""
    if (req.content_length or 0) > max_bytes:
        raise Problem(413, "The form is too large.")
    raw = req.bounded_stream.read(max_bytes).decode("utf-8", "replace")
    return parse_qs(raw, keep_blank_values=True)


def require_csrf(req: falcon.Request, form: dict[str, str]) -> None:
    """Refuse a state-changing console form whose CSRF token is not this session's: 403.

    Every POST of a signed-in page calls this first (with ``read_form``); a page that acts also
    calls ``auth.require_operator(req)``. Templates get the token as ``csrf``.
    """
    if not sessions.csrf_ok(web.cookie(req, web.SESSION_COOKIE), form.get("csrf")):
        raise Problem(403, "The form's CSRF token does not match this session; reload the page and retry.")


def principal_of(store: Store, req: falcon.Request) -> Principal | None:
    secret = web.cookie(req, web.SESSION_COOKIE)
    if not secret:
        return None
    with queries.reading(store.engine) as conn:
        return sessions.session_principal(conn, secret)


class ConsoleAuth:
    """Admit a console page (``console_page = True``) by its session cookie, else send to sign-in."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def process_resource(self, req: falcon.Request, resp: falcon.Response, resource: Any, params: dict) -> None:
        if resource is None or not getattr(resource, "console_page", False):
            return
        # APPSEC: the Authorization header is ignored here: pages are reached by the cookie only.
        principal = principal_of(self.store, req)
        if principal is None:
            raise falcon.HTTPSeeOther(SIGN_IN)
        req.context.principal = principal


class ConsolePage(Generic[StoreT]):
    """A signed-in console page or form over ``store``: ``ConsoleAuth`` admits it by its session cookie.

    Every page, form and live twin behind the sign-in derives from it; sign-in, sign-out and the
    static assets do not (they set ``auth_required = False`` alone).
    """

    # APPSEC: no bearer token (AuthMiddleware skips the page): the session cookie alone admits it.
    auth_required = False
    console_page = True

    def __init__(self, store: StoreT) -> None:
        self.store = store


class SignInResource:
    """``GET/POST /console/sign-in``: paste a token, get a session cookie."""

    auth_required = False

    def __init__(self, store: Store, *, session_seconds: int) -> None:
        self.store = store
        self.session_seconds = session_seconds

    def on_get(self, req: falcon.Request, resp: falcon.Response, *, error: str | None = None, status: int = 200):
        csrf = web.sign_in_nonce(req, resp)
        web.render(req, resp, "sign_in.html", status=status, csrf=csrf, error=error, principal=None)

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        form = read_form(req)
        # APPSEC: double submit: the form's token must match this browser's pre-session cookie.
        if not sessions.csrf_ok(web.cookie(req, web.SIGN_IN_COOKIE), form.get("csrf")):
            return self.on_get(req, resp, error="The form expired; please sign in again.", status=403)
        principal = self.store.authenticate(form.get("token", "").strip())
        if principal is None:
            return self.on_get(req, resp, error="That token is not valid.", status=401)
        with queries.reading(self.store.engine) as conn:
            # A new sign-in replaces this browser's session: the old cookie value stops working too.
            if previous := web.cookie(req, web.SESSION_COOKIE):
                sessions.end_session(conn, previous)
            secret = sessions.create_session(conn, principal, ttl_seconds=self.session_seconds)
        web.set_cookie(req, resp, web.SESSION_COOKIE, secret, max_age=self.session_seconds)
        web.clear_cookie(req, resp, web.SIGN_IN_COOKIE)
        raise falcon.HTTPSeeOther("/console/")


class SignOutResource:
    """``POST /console/sign-out``: end the session (CSRF-checked) and drop the cookie."""

    auth_required = False

    def __init__(self, store: Store) -> None:
        self.store = store

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        secret = web.cookie(req, web.SESSION_COOKIE)
        form = read_form(req)
        if secret:
            require_csrf(req, form)
            with queries.reading(self.store.engine) as conn:
                sessions.end_session(conn, secret)
        web.clear_cookie(req, resp, web.SESSION_COOKIE)
        raise falcon.HTTPSeeOther(SIGN_IN)
