"""The dead-letter and audit endpoints over real letters: scope, roles, idempotency, bad input."""

from __future__ import annotations

import falcon.testing
import pytest
from runwatch.api.app import create_app
from runwatch.api.store import Store
from runwatch.bridge.actions import execute_once
from runwatch.bridge.keys import Keys
from runwatch.bridge.mirror import mirror_once
from runwatch.bridge.redis_letters import RedisLetters
from sqlalchemy import text

from runwatch.thresholds import ThresholdPolicy
from runwatch.tokens import OPERATOR, create_token
from tests.support.letters import make_dead_letters

LETTERS = "/api/admin/dead-letters"


@pytest.fixture
def api(database_url, engine):
    client = falcon.testing.TestClient(create_app(Store(database_url, token_cache_seconds=0)))
    with engine.begin() as conn:
        client.tokens = {
            "root": create_token(conn, name="root", tenant_ids=None, role=OPERATOR)[0],
            "viewer": create_token(conn, name="viewer", tenant_ids=None)[0],
            "t1": create_token(conn, name="t1", tenant_ids=[1], role=OPERATOR)[0],
            "t3": create_token(conn, name="t3", tenant_ids=[3])[0],
        }
    return client


def _call(api, method, path, token, *, body=None, key=None, **params):
    headers = {"Authorization": f"Bearer {api.tokens[token]}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    kwargs = {"params": params or None, "headers": headers}
    if body is not None:
        kwargs["body"] = body if isinstance(body, str | bytes) else None
        kwargs["json"] = None if isinstance(body, str | bytes) else body
    return api.simulate_request(method, path, **kwargs)


@pytest.fixture
def letters(harness, engine):
    """Letters of tenants 1, 1, 2 and none on queue jobs, one of tenant 1 by another actor; mirrored."""
    made = make_dead_letters(harness, "jobs", [1, 1, 2, None]) + make_dead_letters(harness, "jobs", [1], actor="broken")
    mirror_once(RedisLetters(harness.broker.client, Keys(harness.broker.namespace)), engine)
    return made


def test_list_is_tenant_scoped_filtered_and_paged(api, letters):
    everything = _call(api, "GET", LETTERS, "root")
    assert everything.status_code == 200 and len(everything.json["data"]) == 5
    row = everything.json["data"][0]
    assert set(row) >= {"id", "queue_name", "actor_name", "exception_type", "dead_at", "age_seconds", "tenant_id"}
    mine = _call(api, "GET", LETTERS, "t1").json["data"]
    assert sorted(r["tenant_id"] for r in mine) == [1, 1, 1]  # APPSEC: no tenant 2, no tenant-less letter
    assert _call(api, "GET", LETTERS, "t3").json["data"] == []
    assert len(_call(api, "GET", LETTERS, "t1", tenant_id="2").json["data"]) == 0  # narrows, never widens
    broken = _call(api, "GET", LETTERS, "root", actor="broken", exception_type="KeyError").json["data"]
    assert len(broken) == 1 and broken[0]["exception_type"] == "KeyError"
    assert _call(api, "GET", LETTERS, "root", min_age_seconds="3600").json["data"] == []
    first = _call(api, "GET", LETTERS, "root", limit="2")
    second = api.simulate_get(first.json["links"]["next"], headers={"Authorization": f"Bearer {api.tokens['root']}"})
    third = api.simulate_get(second.json["links"]["next"], headers={"Authorization": f"Bearer {api.tokens['root']}"})
    ids = [r["id"] for page in (first, second, third) for r in page.json["data"]]
    assert sorted(ids) == sorted(r["id"] for r in everything.json["data"]) and third.json["links"]["next"] is None


def test_groups_count_only_what_the_token_sees(api, letters):
    groups = _call(api, "GET", LETTERS + "/groups", "root").json["data"]
    assert [(g["actor_name"], g["exception_type"], g["count"]) for g in groups] == [
        ("doomed", "RuntimeError", 4),
        ("broken", "KeyError", 1),
    ]
    scoped = _call(api, "GET", LETTERS + "/groups", "t1").json["data"]
    assert [(g["actor_name"], g["count"]) for g in scoped] == [("doomed", 2), ("broken", 1)]
    assert scoped[0]["oldest_dead_at"] <= scoped[0]["newest_dead_at"]


def test_preview_counts_within_scope(api, letters):
    everything = _call(api, "POST", LETTERS + "/preview", "t1", body={"filter": {}})
    assert everything.status_code == 200 and everything.json["matched"] == 3
    all_ids = [r["id"] for r in _call(api, "GET", LETTERS, "root").json["data"]]
    picked = _call(api, "POST", LETTERS + "/preview", "t1", body={"ids": all_ids})
    assert picked.json["matched"] == 3  # APPSEC: other tenants' ids select nothing
    viewer = _call(api, "POST", LETTERS + "/preview", "viewer", body={"filter": {"actor": "broken"}})
    assert viewer.status_code == 200 and viewer.json["matched"] == 1


def test_viewer_may_not_requeue_or_purge(api, letters, engine):
    for verb in ("requeue", "purge"):
        answer = _call(api, "POST", f"{LETTERS}/{verb}", "viewer", body={"filter": {}}, key="k")
        assert answer.status_code == 403 and "operator" in answer.json["detail"]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM operator_actions")).scalar() == 0


def test_requeue_is_idempotent_executed_and_audited(api, letters, harness, engine, settings):
    body = {"filter": {"actor": "doomed"}}
    first = _call(api, "POST", LETTERS + "/requeue", "t1", body=body, key="once")
    assert first.status_code == 202 and first.json["status"] == "pending"
    assert first.json["counts"] == {"matched": 2, "done": 0, "skipped": 0}
    assert first.headers["location"].endswith(f"/api/admin/actions/{first.json['id']}")
    again = _call(api, "POST", LETTERS + "/requeue", "t1", body=body, key="once")
    assert again.status_code == 200 and again.json["id"] == first.json["id"]
    conflict = _call(api, "POST", LETTERS + "/purge", "t1", body=body, key="once")
    assert conflict.status_code == 409
    execute_once(RedisLetters(harness.broker.client, Keys(harness.broker.namespace)), engine, ThresholdPolicy(settings))
    detail = _call(api, "GET", f"/api/admin/actions/{first.json['id']}", "t1")
    assert detail.status_code == 200 and detail.json["status"] == "done"
    assert detail.json["counts"] == {"matched": 2, "done": 2, "skipped": 0}
    assert detail.json["requested_by"]["token_name"] == "t1" and not detail.json["items_truncated"]
    assert [i["result"] for i in detail.json["items"]] == ["requeued", "requeued"]
    assert all(i["new_run_id"] for i in detail.json["items"])
    # the run's own timeline shows the action (who, what, when)
    run_id = detail.json["items"][0]["run_id"]
    run = _call(api, "GET", f"/api/admin/operations/{run_id}", "t1", include="diagnostics").json
    kinds = [e["kind"] for e in run["diagnostics"]["events"]]
    assert "operator_action" in kinds
    audit = _call(api, "GET", "/api/admin/actions", "root", kind="requeue").json["data"]
    assert [a["id"] for a in audit] == [first.json["id"]]
    assert _call(api, "GET", "/api/admin/actions", "t3").json["data"] == []  # APPSEC
    missing = _call(api, "GET", "/api/admin/actions/999999", "t3")
    hidden = _call(api, "GET", f"/api/admin/actions/{first.json['id']}", "t3")
    assert hidden.status_code == missing.status_code == 404 and hidden.text == missing.text


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ("not json", "k"),
        ("[1, 2]", "k"),
        ({}, "k"),
        ({"ids": [], "filter": {}}, "k"),
        ({"ids": []}, "k"),
        ({"ids": [0]}, "k"),
        ({"ids": ["1"]}, "k"),
        ({"ids": [True]}, "k"),
        ({"filter": {"queue": None}}, "k"),
        ({"filter": {"queue": "a\x00b"}}, "k"),
        ({"filter": {"colour": "red"}}, "k"),
        ({"filter": {"min_age_seconds": -1}}, "k"),
        ({"filter": {"max_age_seconds": 10**12}}, "k"),
        ({"filter": {"tenant_id": 1e300}}, "k"),
        ({"filter": {"tenant_id": 0}}, "k"),
        ({"filter": []}, "k"),
        ({"other": 1}, "k"),
        ({"filter": {}}, None),
        ({"filter": {}}, ""),
        ({"filter": {}}, "x" * 201),
        ({"filter": {}}, "has space"),
    ],
)
def test_bad_requests_are_400_problems_and_write_nothing(api, engine, body, key):
    answer = _call(api, "POST", LETTERS + "/purge", "root", body=body, key=key)
    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"] == "application/problem+json" and answer.json["status"] == 400
    preview = _call(api, "POST", LETTERS + "/preview", "root", body=body)
    assert preview.status_code == (200 if body == {"filter": {}} else 400)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM operator_actions")).scalar() == 0


def test_bad_query_parameters_are_400(api):
    for params in ({"min_age_seconds": "x"}, {"max_age_seconds": "-1"}, {"cursor": "junk"}, {"colour": "red"}):
        assert _call(api, "GET", LETTERS, "root", **params).status_code == 400
    assert _call(api, "GET", "/api/admin/actions", "root", status="sleeping").status_code == 400
    assert _call(api, "GET", "/api/admin/actions/abc", "root").status_code == 400


def test_maintenance_passes_show_the_last_pass_of_each_job(api, letters, harness, engine, settings):
    execute_once(RedisLetters(harness.broker.client, Keys(harness.broker.namespace)), engine, ThresholdPolicy(settings))
    passes = {p["name"]: p for p in _call(api, "GET", "/api/admin/maintenance/passes", "root").json["data"]}
    assert {"dead_letter_mirror", "operator_actions"} <= set(passes)
    assert passes["dead_letter_mirror"]["result"]["added"] == 5.0
    assert all(isinstance(v, float) for p in passes.values() for v in p["result"].values())
    # APPSEC: a pass's counts span every tenant: a scoped token sees that it ran, not how much it did.
    scoped = {p["name"]: p for p in _call(api, "GET", "/api/admin/maintenance/passes", "t3").json["data"]}
    assert set(scoped) == set(passes) and all(p["result"] == {} for p in scoped.values()), scoped


def test_one_letter_by_id_is_scoped(api, letters):
    rows = _call(api, "GET", LETTERS, "root").json["data"]
    other = next(r for r in rows if r["tenant_id"] == 2)
    one = _call(api, "GET", f"{LETTERS}/{other['id']}", "root").json
    one.pop("age_seconds"), other.pop("age_seconds")
    assert one == other
    hidden = _call(api, "GET", f"{LETTERS}/{other['id']}", "t1")
    missing = _call(api, "GET", f"{LETTERS}/999999", "t1")
    assert hidden.status_code == missing.status_code == 404 and hidden.text == missing.text
    assert _call(api, "GET", f"{LETTERS}/x", "t1").status_code == 400


def test_concurrent_requests_with_one_key_make_one_action(api, letters, engine):
    import threading

    barrier = threading.Barrier(6)
    answers = []

    def ask() -> None:
        barrier.wait()
        answers.append(_call(api, "POST", LETTERS + "/purge", "root", body={"filter": {}}, key="race"))

    threads = [threading.Thread(target=ask) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(a.status_code for a in answers) == [200] * 5 + [202]
    assert len({a.json["id"] for a in answers}) == 1
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM operator_actions")).scalar() == 1
        assert conn.execute(text("SELECT count(*) FROM operator_action_items")).scalar() == 5
