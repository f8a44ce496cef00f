"""Keyset pagination: stable across inserts, signed cursors, links.next keeps the filters."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from tests.support.api_client import get
from tests.support.seed import insert_run

PATH = "/api/admin/operations"


def follow(client, token: str, first: dict[str, str]) -> tuple[list[int], list[str]]:
    """Every page from ``first`` on; returns the ids seen and the next links followed."""
    result = get(client, PATH, token, **first)
    seen, links = [], []
    while True:
        assert result.status_code == 200, result.text
        seen += [i["id"] for i in result.json["data"]]
        nxt = result.json["links"]["next"]
        if nxt is None:
            return seen, links
        links.append(nxt)
        parts = urlsplit(nxt)
        result = client.simulate_get(parts.path, query_string=parts.query, headers={"Authorization": f"Bearer {token}"})


@pytest.fixture
def many(engine) -> list[int]:
    with engine.begin() as conn:
        # Pairs share a created_at second apart only by id order: the tie-break must hold.
        return [insert_run(conn, tenant_id=1 + i % 2, age=1000 - (i // 2)) for i in range(120)]


def whole(client, token: str) -> list[int]:
    return [i["id"] for i in get(client, PATH, token, limit="200").json["data"]]


def test_default_limit_is_50_and_pages_cover_everything_once(client, tokens, many):
    first = get(client, PATH, tokens.all)
    assert len(first.json["data"]) == 50 and first.json["links"]["next"]
    seen, links = follow(client, tokens.all, {})
    assert seen == whole(client, tokens.all) and len(set(seen)) == 120 and len(links) == 2


def test_small_pages_are_newest_first_without_gaps(client, tokens, many):
    seen, _ = follow(client, tokens.all, {"limit": "7"})
    ordered = whole(client, tokens.all)
    assert seen == ordered and sorted(ordered) == sorted(many)
    # Ties on created_at fall back to id, descending.
    assert ordered[:4] == sorted(many[-2:], reverse=True) + sorted(many[-4:-2], reverse=True)


def test_inserts_between_pages_never_duplicate_or_skip(client, tokens, engine, many):
    before = whole(client, tokens.all)
    first = get(client, PATH, tokens.all, limit="10")
    page1 = [i["id"] for i in first.json["data"]]
    link = first.json["links"]["next"]
    with engine.begin() as conn:
        newer = [insert_run(conn, age=0) for _ in range(15)]  # sort before every existing run
        older = insert_run(conn, age=5000)  # sorts after every existing run: must show up once, last
    rest, _ = follow(client, tokens.all, {k: v[0] for k, v in parse_qs(urlsplit(link).query).items()})
    assert page1 + rest == before + [older]
    assert whole(client, tokens.all)[:15] == sorted(newer, reverse=True)


def test_next_link_keeps_filters_and_limit(client, tokens, many):
    result = get(client, PATH, tokens.all, tenant_id="2", limit="5", status="completed")
    query = parse_qs(urlsplit(result.json["links"]["next"]).query)
    assert query["tenant_id"] == ["2"] and query["limit"] == ["5"] and query["status"] == ["completed"]
    seen, _ = follow(client, tokens.all, {"tenant_id": "2", "limit": "5"})
    assert len(seen) == 60 and len(set(seen)) == 60


def test_scoped_token_pages_stay_in_scope(client, tokens, many):
    seen, _ = follow(client, tokens.t1, {"limit": "9"})
    assert seen == [i for i in seen if (i - 1) % 2 == 0] and len(seen) == 60


def cursor_of(client, token: str, **params: str) -> str:
    link = get(client, PATH, token, **params).json["links"]["next"]
    return parse_qs(urlsplit(link).query)["cursor"][0]


@pytest.mark.parametrize("mangle", [
    lambda c: c[:-1] + ("A" if c[-1] != "A" else "B"),  # flipped MAC
    lambda c: ("B" if c[0] != "B" else "C") + c[1:],  # flipped position
    lambda c: c + "AA",
    lambda c: c[:10],
    lambda c: c + "!",
    lambda c: "not-a-cursor",
    lambda c: "%00",
    lambda c: "é" * 10,
    lambda c: "A" * 5000,
])  # fmt: skip
def test_tampered_or_garbage_cursors_are_400(client, tokens, many, mangle):
    cursor = cursor_of(client, tokens.all, limit="5")
    result = get(client, PATH, tokens.all, limit="5", cursor=mangle(cursor))
    assert result.status_code == 400, result.text
    assert result.headers["content-type"] == "application/problem+json"
    assert result.json["parameter"] == "cursor"


def test_a_cursor_is_bound_to_its_filters_not_to_its_limit(client, tokens, many):
    cursor = cursor_of(client, tokens.all, limit="5", tenant_id="1")
    assert get(client, PATH, tokens.all, limit="8", tenant_id="1", cursor=cursor).status_code == 200
    assert get(client, PATH, tokens.all, limit="5", tenant_id="2", cursor=cursor).status_code == 400
    assert get(client, PATH, tokens.all, limit="5", cursor=cursor).status_code == 400


def test_cursor_key_is_shared_by_every_store_of_the_database(client, tokens, many, database_url):
    from runwatch.api.app import create_app
    from runwatch.api.store import Store

    cursor = cursor_of(client, tokens.all, limit="5")
    import falcon.testing

    other = falcon.testing.TestClient(create_app(Store(database_url, token_cache_seconds=0)))
    assert get(other, PATH, tokens.all, limit="5", cursor=cursor).status_code == 200
    keyed = falcon.testing.TestClient(create_app(Store(database_url, cursor_secret="from-env", token_cache_seconds=0)))
    assert get(keyed, PATH, tokens.all, limit="5", cursor=cursor).status_code == 400
