"""Property-based testing of the served OpenAPI document with schemathesis, all checks on.

Every operation of the API's document is exercised with generated valid and invalid input (a
bounded number of examples so the run stays short) against the app over real PostgreSQL;
any failed check — a 5xx, an undocumented status or content type, a response off its schema,
accepted invalid input, ignored auth, an unsupported method not refused — fails the test.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import falcon.testing
import schemathesis
from hypothesis import HealthCheck, settings
from runwatch.api.app import create_app
from runwatch.api.openapi import document
from runwatch.api.store import Store
from schemathesis.core.parameters import ParameterLocation

from tests.support.api_client import auth

#: Examples per operation: enough to hit every enum and edge, quick enough for CI.
MAX_EXAMPLES = 40
PATH = "/api/admin/operations"


class AppProxy:
    """A WSGI app that forwards to the current test's app.

    schemathesis' lazy fixture loader does not run on this pytest, and the schema must exist at
    import time; so it is loaded through this proxy, which first serves the document from an app
    that needs no database, then each test points it at its own app over the test database.
    """

    def __init__(self) -> None:
        self.target = create_app(Store("postgresql://nobody@127.0.0.1:1/none"))

    def __call__(self, environ, start_response):
        return self.target(environ, start_response)


PROXY = AppProxy()
schema = schemathesis.openapi.from_wsgi("/api/openapi.json", PROXY)
# NOTE: a NUL in a query value is a 400 by design (PostgreSQL text cannot hold one;
# tests/api/test_errors.py checks it), which the contract's plain string schemas (``type``) cannot
# say and the served document must not narrow; generated, it was counted as valid input rejected.
schema.config.generation.update(allow_x00=False)


@schema.auth(refresh_interval=None)
class BearerToken:
    """The current test's all-tenant token, applied the way schemathesis expects auth to be.

    Declared as auth (not as a plain header) so that ignored_auth can probe without it and
    negative cases that drop the header stay negative.
    """

    token: str | None = None

    def get(self, case, ctx):
        return BearerToken.token

    def set(self, case, data, ctx):
        case.headers = {**(case.headers or {}), **auth(data)}


def genuine_cursor(app, token: str, query: dict, path: str = PATH) -> str | None:
    """A cursor the endpoint at ``path`` issued for the case's filters, or None when they match at most one row."""
    filters = {k: v for k, v in query.items() if k not in ("cursor", "limit")}
    page = falcon.testing.TestClient(app).simulate_get(path, params={**filters, "limit": "1"}, headers=auth(token))
    link = page.json["links"]["next"] if page.status_code == 200 else None
    return parse_qs(urlsplit(link).query)["cursor"][0] if link else None


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_served_document_holds_under_generated_input(case, app, tokens, world):
    PROXY.target, BearerToken.token = app, tokens.all
    query = case.query or {}
    if "cursor" in query and case.meta is not None and not case.meta.is_negative_at(ParameterLocation.QUERY):
        # NOTE: a cursor is valid only as issued by the server (signed); "schema-valid" for it means
        # "one the API handed out", so a positive case gets a genuine one in place of a made-up string.
        cursor = genuine_cursor(app, tokens.all, query, case.path)
        if cursor is None:
            del query["cursor"]
        else:
            query["cursor"] = cursor
    case.call_and_validate()


def test_the_served_document_is_the_one_fuzzed(client):
    assert client.simulate_get("/api/openapi.json").json == document()
