"""Console sign-in, sign-out, CSRF, cookies, expiry and the split between cookie and bearer auth."""

from __future__ import annotations

import hashlib
from urllib.parse import urlencode

import pytest
from runwatch.api.app import create_app
from sqlalchemy import text

from runwatch.tokens import create_token
from tests.support.api_client import auth
from tests.support.console_client import FORM, csrf_of, page, post_sign_in, sign_in, sign_in_form

PAGES = ["/console/", "/console/runs", "/console/healer"]


def test_sign_in_sets_a_strict_httponly_session_cookie_storing_only_its_hash(client, tokens, engine):
    nonce, csrf = sign_in_form(client)
    result = post_sign_in(client, tokens.all, nonce=nonce, csrf=csrf)
    assert result.status_code == 303 and result.headers["location"].endswith("/console/")
    cookie = result.cookies["rw_session"]
    assert cookie.http_only and cookie.same_site.lower() == "strict" and not cookie.secure and cookie.path == "/console"
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT session_hash FROM console_sessions")).scalars().all()
    assert stored == [hashlib.sha256(cookie.value.encode()).hexdigest()]


def test_session_cookie_is_secure_over_tls(client, tokens):
    page_ = client.simulate_get("/console/sign-in", protocol="https")
    nonce, csrf = page_.cookies["rw_sign_in"].value, csrf_of(page_.text)
    assert page_.cookies["rw_sign_in"].secure
    result = post_sign_in(client, tokens.all, nonce=nonce, csrf=csrf, protocol="https")
    assert result.status_code == 303 and result.cookies["rw_session"].secure


def test_sign_in_without_the_matching_csrf_token_is_refused(client, tokens, engine):
    nonce, csrf = sign_in_form(client)
    other_nonce, _ = sign_in_form(client)
    assert post_sign_in(client, tokens.all, nonce=other_nonce, csrf=csrf).status_code == 403
    assert post_sign_in(client, tokens.all, nonce=nonce, csrf="").status_code == 403
    body = urlencode({"token": tokens.all, "csrf": csrf})
    assert client.simulate_post("/console/sign-in", body=body, headers=FORM).status_code == 403  # no cookie
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM console_sessions")).scalar() == 0


@pytest.mark.parametrize("csrf", ["é", "\u2603" * 64, "\ufffd", "0" * 200])
def test_a_csrf_value_of_any_shape_is_refused_not_a_500(client, tokens, csrf):
    nonce, _ = sign_in_form(client)
    assert post_sign_in(client, tokens.all, nonce=nonce, csrf=csrf).status_code == 403
    cookies = sign_in(client, tokens.all)
    forged = client.simulate_post("/console/sign-out", body=urlencode({"csrf": csrf}), headers=FORM, cookies=cookies)
    assert forged.status_code == 403


def test_signing_in_again_ends_the_previous_session(client, tokens, engine):
    first = sign_in(client, tokens.all)
    nonce, csrf = sign_in_form(client)
    body = urlencode({"token": tokens.all, "csrf": csrf})
    again = client.simulate_post("/console/sign-in", body=body, headers=FORM, cookies={"rw_sign_in": nonce, **first})
    assert again.status_code == 303
    assert page(client, "/console/runs", first).status_code == 303  # the old cookie value no longer works
    assert page(client, "/console/runs", {"rw_session": again.cookies["rw_session"].value}).status_code == 200
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM console_sessions")).scalar() == 1


def test_sign_in_with_a_bad_token_is_refused(client, tokens):
    nonce, csrf = sign_in_form(client)
    result = post_sign_in(client, "rw_not-a-token", nonce=nonce, csrf=csrf)
    assert result.status_code == 401 and "not valid" in result.text and "rw_session" not in result.cookies


@pytest.mark.parametrize("path", PAGES + ["/console/runs/1"])
def test_pages_need_a_session_and_ignore_bearer_headers(client, tokens, path):
    assert client.simulate_get(path).status_code == 303
    result = client.simulate_get(path, headers=auth(tokens.all))
    assert result.status_code == 303 and result.headers["location"] == "/console/sign-in"


def test_the_json_api_ignores_the_session_cookie(client, tokens):
    cookies = sign_in(client, tokens.all)
    assert client.simulate_get("/api/admin/operations", cookies=cookies).status_code == 401


@pytest.mark.parametrize("path", PAGES)
def test_signed_in_pages_show_the_role_and_carry_the_security_headers(client, tokens, path):
    cookies = sign_in(client, tokens.t1)
    result = page(client, path, cookies)
    assert result.status_code == 200
    assert "role: viewer" in result.text and "tenant one" in result.text
    csp = result.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "default-src 'none'" in csp
    assert result.headers["x-frame-options"] == "DENY" and result.headers["cache-control"] == "no-store"


def test_operator_role_is_shown(client, engine):
    with engine.begin() as conn:
        secret, _ = create_token(conn, name="ops", tenant_ids=None, role="operator")
    assert "role: operator" in page(client, "/console/", sign_in(client, secret)).text


def test_sign_out_needs_the_session_csrf_token_and_ends_the_session(client, tokens, engine):
    cookies = sign_in(client, tokens.all)
    csrf = csrf_of(page(client, "/console/runs", cookies).text)
    forged = client.simulate_post("/console/sign-out", body="csrf=forged", headers=FORM, cookies=cookies)
    assert forged.status_code == 403
    assert page(client, "/console/runs", cookies).status_code == 200
    done = client.simulate_post("/console/sign-out", body=urlencode({"csrf": csrf}), headers=FORM, cookies=cookies)
    assert done.status_code == 303 and done.headers["location"] == "/console/sign-in"
    assert page(client, "/console/runs", cookies).status_code == 303
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM console_sessions")).scalar() == 0


def test_an_expired_session_is_sent_to_sign_in(client, tokens, engine):
    cookies = sign_in(client, tokens.all)
    with engine.begin() as conn:
        conn.execute(text("UPDATE console_sessions SET expires_at = now() - interval '1 second'"))
    assert page(client, "/console/runs", cookies).status_code == 303


def test_session_lifetime_follows_the_setting(store, tokens, engine, servers):
    import falcon.testing

    client = falcon.testing.TestClient(create_app(store, console_session_seconds=120))
    nonce, csrf = sign_in_form(client)
    result = post_sign_in(client, tokens.all, nonce=nonce, csrf=csrf)
    assert result.cookies["rw_session"].max_age == 120
    with engine.connect() as conn:
        ttl = conn.execute(text("SELECT extract(epoch FROM expires_at - created_at) FROM console_sessions")).scalar()
    assert 119 <= float(ttl) <= 121


def test_revoking_the_token_ends_its_sessions(client, tokens, engine):
    cookies = sign_in(client, tokens.t1)
    with engine.begin() as conn:
        conn.execute(text("UPDATE api_tokens SET revoked_at = now() WHERE name = 'tenant one'"))
    assert page(client, "/console/runs", cookies).status_code == 303


def test_console_setting_is_declared():
    from runwatch.settings import Settings

    assert Settings.from_env({"RUNWATCH_CONSOLE_SESSION_SECONDS": "900"}).console_session_seconds == 900
