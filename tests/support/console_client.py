"""Signing a falcon TestClient into the console, as a browser would (form, CSRF, cookie)."""

from __future__ import annotations

import re
from urllib.parse import urlencode

import falcon.testing

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
_CSRF = re.compile(r'name="csrf" value="([^"]*)"')


def csrf_of(html: str) -> str:
    match = _CSRF.search(html)
    assert match, "no CSRF field on the page"
    return match.group(1)


def sign_in_form(client: falcon.testing.TestClient) -> tuple[str, str]:
    """The sign-in form's pre-session cookie value and CSRF token."""
    page = client.simulate_get("/console/sign-in")
    assert page.status_code == 200
    return page.cookies["rw_sign_in"].value, csrf_of(page.text)


def post_sign_in(client, token: str, *, nonce: str, csrf: str, **kw) -> falcon.testing.Result:
    body = urlencode({"token": token, "csrf": csrf})
    return client.simulate_post("/console/sign-in", body=body, headers=FORM, cookies={"rw_sign_in": nonce}, **kw)


def sign_in(client: falcon.testing.TestClient, token: str) -> dict[str, str]:
    """Cookies of a signed-in browser for ``token``."""
    nonce, csrf = sign_in_form(client)
    result = post_sign_in(client, token, nonce=nonce, csrf=csrf)
    assert result.status_code == 303, result.text
    return {"rw_session": result.cookies["rw_session"].value}


def page(client, path: str, cookies: dict[str, str], **params) -> falcon.testing.Result:
    return client.simulate_get(path, params=params or None, cookies=cookies)
