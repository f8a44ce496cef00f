"""What every console page shares: the Jinja2 environment, security headers, cookies and CSRF.

Templates autoescape everything (job-provided texts are data, never markup). Every page is sent
with a Content-Security-Policy that allows scripts, styles and requests from the app's own origin
only: no inline script, no inline event handler, no inline style, no CDN.
"""

from __future__ import annotations

import secrets
from typing import Any, cast

import falcon
import jinja2

from runwatch.sessions import csrf_token

from . import assets, filters

#: The session cookie (HttpOnly, SameSite=Strict; Secure on TLS) and the sign-in form's cookie.
SESSION_COOKIE = "rw_session"
SIGN_IN_COOKIE = "rw_sign_in"
COOKIE_PATH = "/console"
#: Every page and asset comes from this origin; nothing else may load or be contacted.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

#: The header's navigation: (href, key, label); a page sets ``req.context.nav`` to its key.
NAV: list[tuple[str, str, str]] = [
    ("/console/", "overview", "Overview"),
    ("/console/runs", "runs", "Runs"),
    ("/console/dead-letters", "dead-letters", "Dead letters"),
    ("/console/actions", "actions", "Actions"),
    ("/console/healer", "healer", "Healer"),
]

ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("runwatch.api.console", "templates"),
    autoescape=True,  # APPSEC: every job-provided text is escaped, whatever the template
    # NOTE: job-provided JSON may lack any key a template reads: a missing one renders empty, never a 500.
    undefined=jinja2.ChainableUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
ENV.filters.update(filters.FILTERS)
ENV.globals["asset"] = assets.url
ENV.globals["nav_items"] = NAV


def query_params(req: falcon.Request) -> dict[str, str | list[str]]:
    """The request's query parameters, for a page to normalise in place (blank form fields, local times).

    NOTE: Falcon types ``req.params`` read-only, but it is the request's own dict, which its param helpers read.
    """
    return cast(dict[str, str | list[str]], req.params)


def drop_blank_filters(req: falcon.Request) -> dict[str, str | list[str]]:
    """Forget the blank fields of a submitted filter form (it sends every field: blank means "any"),
    whether a field came once or repeated (checkboxes); the query, to normalise further."""
    query = query_params(req)
    for name, value in list(query.items()):
        kept = [v for v in value if v] if isinstance(value, list) else value
        if not kept:
            del query[name]
        elif isinstance(kept, list):
            query[name] = kept[0] if len(kept) == 1 else kept
    return query


def secure_request(req: falcon.Request) -> bool:
    """TLS to us, or to a trusted proxy: gunicorn sets the scheme from X-Forwarded-Proto only
    for peers in its ``forwarded_allow_ips`` (default 127.0.0.1), so ``req.scheme`` is trusted."""
    return req.scheme == "https"


def set_cookie(req: falcon.Request, resp: falcon.Response, name: str, value: str, max_age: int | None) -> None:
    resp.set_cookie(
        name, value, max_age=max_age, path=COOKIE_PATH, secure=secure_request(req), http_only=True, same_site="Strict"
    )


def clear_cookie(req: falcon.Request, resp: falcon.Response, name: str) -> None:
    resp.unset_cookie(name, path=COOKIE_PATH, same_site="Strict")


def cookie(req: falcon.Request, name: str) -> str | None:
    values = req.get_cookie_values(name)
    return values[0] if values else None


def sign_in_nonce(req: falcon.Request, resp: falcon.Response) -> str:
    """The sign-in form's CSRF token, bound to a fresh pre-session cookie (double submit)."""
    nonce = secrets.token_urlsafe(24)
    set_cookie(req, resp, SIGN_IN_COOKIE, nonce, max_age=3600)
    return csrf_token(nonce)


def render(req: falcon.Request, resp: falcon.Response, template: str, status: int = 200, **context: Any) -> None:
    """Render ``template`` as the response, with the security headers and the signed-in context."""
    principal = getattr(req.context, "principal", None)
    session = cookie(req, SESSION_COOKIE) if principal is not None else None
    context.setdefault("principal", principal)
    context.setdefault("csrf", csrf_token(session) if session else "")
    context.setdefault("nav", getattr(req.context, "nav", ""))
    resp.status = falcon.code_to_http_status(status)
    resp.content_type = "text/html; charset=utf-8"
    resp.set_headers(SECURITY_HEADERS)
    resp.text = ENV.get_template(template).render(**context)
