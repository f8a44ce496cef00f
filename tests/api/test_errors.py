"""Errors: problem+json for every 4xx/5xx, 400 naming the parameter, never a 500 for any input."""

from __future__ import annotations

import json
import logging

import falcon.testing
import pytest
from runwatch.api.app import create_app
from runwatch.api.store import Store

from tests.support.api_client import auth, get

LIST = "/api/admin/operations"


def assert_problem(result, status: int, parameter: str | None = None) -> dict:
    assert result.status_code == status, result.text
    assert result.headers["content-type"] == "application/problem+json"
    body = result.json
    assert {"type", "title", "status", "detail"} <= set(body) and body["status"] == status
    if parameter is not None:
        assert body["parameter"] == parameter and parameter in body["detail"]
    return body


@pytest.mark.parametrize("query, parameter", [
    ("colour=red", "colour"),
    ("status=done", "status"),
    ("status=QUEUED", "status"),
    ("status=queued&status=running", "status"),
    ("status=", "status"),
    ("outcome=ok", "outcome"),
    ("freshness_state=stale", "freshness_state"),
    ("reconciled=yes", "reconciled"),
    ("reconciled=", "reconciled"),
    ("tenant_id=abc", "tenant_id"),
    ("tenant_id=1.5", "tenant_id"),
    ("tenant_id=%201", "tenant_id"),
    ("tenant_id=1&tenant_id=2", "tenant_id"),
    ("type=%00", "type"),
    ("type=a%00b", "type"),
    ("reconciliation_source=manual", "reconciliation_source"),
    ("created_after=yesterday", "created_after"),
    ("created_after=2026-01-01", "created_after"),
    ("created_after=2026-01-01T00:00:00", "created_after"),
    ("created_before=2026-02-30T00:00:00Z", "created_before"),
    ("limit=0", "limit"),
    ("limit=201", "limit"),
    ("limit=-1", "limit"),
    ("limit=ten", "limit"),
    ("limit=99999999999999999999999", "limit"),
    ("cursor=", "cursor"),
])  # fmt: skip
def test_malformed_list_parameters_are_400_naming_the_parameter(client, tokens, query, parameter):
    result = client.simulate_get(LIST, query_string=query, headers=auth(tokens.all))
    assert_problem(result, 400, parameter)


@pytest.mark.parametrize("query, status", [
    ("tenant_id=99999999999999999999999999", 200),
    ("tenant_id=-1", 200),
    ("tenant_id=0", 200),
    ("type=" + "x" * 1000, 200),
    ("type=%F0%9F%92%A5%FF", 200),
    ("created_after=9999-12-31T23:59:59-23:59", 200),
    ("created_before=0001-01-01T00:00:00%2B23:59", 200),
    ("created_after=2026-01-01T00:00:00.123456789Z", 200),
])  # fmt: skip
def test_odd_but_valid_values_answer_without_error(client, tokens, world, query, status):
    result = client.simulate_get(LIST, query_string=query, headers=auth(tokens.all))
    assert result.status_code == status, result.text


@pytest.mark.parametrize("path, query, parameter", [
    (f"{LIST}/abc", "", "operationRun"),
    (f"{LIST}/1.0", "", "operationRun"),
    (f"{LIST}/1", "include=everything", "include"),
    (f"{LIST}/1", "include=diagnostics&include=diagnostics", "include"),
    (f"{LIST}/1", "status=queued", "status"),
])  # fmt: skip
def test_malformed_detail_requests_are_400(client, tokens, world, path, query, parameter):
    assert_problem(client.simulate_get(path, query_string=query, headers=auth(tokens.all)), 400, parameter)


def test_falcon_own_errors_are_problems_too(client, tokens):
    assert_problem(client.simulate_get("/api/admin/nope", headers=auth(tokens.all)), 404)
    assert_problem(client.simulate_get(f"{LIST}/", headers=auth(tokens.all)), 400, "operationRun")
    result = client.simulate_post(LIST, headers=auth(tokens.all))
    assert_problem(result, 405)
    assert "GET" in result.headers["allow"]
    assert_problem(client.simulate_delete(f"{LIST}/1", headers=auth(tokens.all)), 405)
    assert_problem(client.simulate_delete(f"{LIST}/1"), 401)  # who you are comes before what you may do


def test_unexpected_errors_are_a_generic_500_and_logged(database_url, tokens, caplog, monkeypatch):
    store = Store(database_url, token_cache_seconds=0)

    def explode(*args, **kwargs):
        raise RuntimeError("SELECT secret FROM somewhere -- internal detail")

    monkeypatch.setattr(store, "list_runs", explode)
    client = falcon.testing.TestClient(create_app(store))
    with caplog.at_level(logging.ERROR, logger="runwatch.api"):
        result = get(client, LIST, tokens.all)
    body = assert_problem(result, 500)
    assert "SELECT" not in result.text and "Traceback" not in result.text and "RuntimeError" not in result.text
    assert body["title"] == "Internal Server Error"
    assert "internal detail" in caplog.text


def test_database_outage_is_503_with_retry_after(tokens):
    # Port 1 on loopback refuses connections at once: a database that is down.
    store = Store("postgresql://postgres@127.0.0.1:1/none", token_cache_seconds=0)
    client = falcon.testing.TestClient(create_app(store))
    result = get(client, LIST, tokens.all)
    assert_problem(result, 503)
    assert result.headers["retry-after"].isdigit()
    assert "127.0.0.1" not in result.text and "psycopg" not in result.text


def test_problem_bodies_are_compact_json(client):
    result = client.simulate_get(LIST)
    assert json.loads(result.text) == result.json and result.json["type"] == "about:blank"
