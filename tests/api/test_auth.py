"""Bearer tokens: 401 without a valid one, tenant scope on every endpoint, 404 without an oracle."""

from __future__ import annotations

import pytest

from runwatch.tokens import create_token, revoke_token
from tests.support.api_client import auth, get

LIST = "/api/admin/operations"


@pytest.mark.parametrize("path", [LIST, f"{LIST}/1", f"{LIST}/1?include=diagnostics"])
@pytest.mark.parametrize("header", [
    None, "", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Bearer rw_not-a-real-token", "Bearer not-even-prefixed",
    "Bearer " + "x" * 5000, "bearer\trw_x",
])  # fmt: skip
def test_no_valid_token_is_401_problem_with_a_bearer_challenge(client, tokens, world, path, header):
    path, _, query = path.partition("?")
    result = client.simulate_get(path, query_string=query, headers={"Authorization": header} if header else None)
    assert result.status_code == 401
    assert result.headers["content-type"] == "application/problem+json"
    assert result.headers["www-authenticate"].startswith('Bearer realm="runwatch"')
    assert result.json["status"] == 401 and result.json["title"] == "Unauthorized"


def test_revoked_token_is_401(client, tokens, engine, world):
    with engine.begin() as conn:
        secret, info = create_token(conn, name="short-lived", tenant_ids=None)
    assert get(client, LIST, secret).status_code == 200
    with engine.begin() as conn:
        assert revoke_token(conn, info.id) is True
        assert revoke_token(conn, info.id) is False
    result = get(client, LIST, secret)
    assert result.status_code == 401 and 'error="invalid_token"' in result.headers["www-authenticate"]


def test_scheme_is_case_insensitive(client, tokens, world):
    assert client.simulate_get(LIST, headers={"Authorization": f"bearer {tokens.all}"}).status_code == 200


@pytest.mark.parametrize("path", ["/health/live", "/metrics", "/api/openapi.json"])
def test_probes_metrics_and_the_document_need_no_token(client, path):
    assert client.simulate_get(path).status_code == 200


def test_out_of_scope_run_is_404_byte_identical_to_a_missing_one(client, tokens, world):
    other = next(r for r in world if r.tenant_id == 2)
    untenanted = next(r for r in world if r.tenant_id is None)
    mine = next(r for r in world if r.tenant_id == 1)
    missing = max(r.id for r in world) + 1000
    for token in (tokens.t1, tokens.t13):
        answers = [
            client.simulate_get(f"{LIST}/{run_id}", query_string=query, headers=auth(token))
            for run_id in (other.id, untenanted.id, missing, 2**63 - 1, 2**70, 0, -5)
            for query in ("", "include=diagnostics")
        ]
        assert {a.status_code for a in answers} == {404}
        assert len({a.content for a in answers}) == 1
        assert len({tuple(sorted(a.headers.items())) for a in answers}) == 1
        assert get(client, f"{LIST}/{mine.id}", token).status_code == 200
    # The all-tenant token's 404 for a missing run is the very same body.
    assert get(client, f"{LIST}/{missing}", tokens.all).content == answers[0].content
    for run in (other, untenanted):
        assert get(client, f"{LIST}/{run.id}", tokens.all).status_code == 200


def test_scoped_token_sees_only_its_tenants_in_the_list(client, tokens, world):
    for token, allowed in ((tokens.t1, {1}), (tokens.t13, {1, 3})):
        items = get(client, LIST, token, limit="200").json["data"]
        assert {i["tenant_id"] for i in items} == allowed
        assert len(items) == sum(1 for r in world if r.tenant_id in allowed)
