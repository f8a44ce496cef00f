"""The run list: every filter alone and in pairs, for every token scope, against a Python model."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from tests.support.api_client import get
from tests.support.seed import TENANTS, TYPES, Run, newest_first

PATH = "/api/admin/operations"
SCOPES: dict[str, frozenset[int] | None] = {"all": None, "t1": frozenset({1}), "t13": frozenset({1, 3})}

#: (query parameter, value, predicate on a seeded run) for every filter value worth asking.
FILTERS: list[tuple[str, str, Callable[[Run], bool]]] = (
    [("status", s, lambda r, s=s: r.status == s) for s in ("queued", "running", "completed")]
    + [("outcome", o, lambda r, o=o: r.outcome == o)
       for o in ("pending", "succeeded", "partially_succeeded", "blocked", "failed")]
    + [("freshness_state", f, lambda r, f=f: r.freshness == f)
       for f in ("fresh_active", "likely_stale", "reconciled_failed", "terminal_normal")]
    + [("reconciled", v, lambda r, b=b: r.reconciled is b)
       for v, b in (("true", True), ("false", False), ("1", True), ("0", False))]
    + [("reconciliation_source", s, lambda r, s=s: r.source == s)
       for s in ("failed_callback", "scheduled_reconciler", "adapter_reconciler")]
    + [("tenant_id", str(t), lambda r, t=t: r.tenant_id == t) for t in (1, 2, 3, 99)]
    + [("type", t, lambda r, t=t: r.type == t) for t in (*TYPES, "no.such.type")]
)  # fmt: skip


def visible(run: Run, scope: frozenset[int] | None) -> bool:
    return scope is None or run.tenant_id in scope


def expected(world: list[Run], scope: frozenset[int] | None, *predicates: Callable[[Run], bool]) -> list[int]:
    return newest_first([r for r in world if visible(r, scope) and all(p(r) for p in predicates)])


def ids(client, token: str, **params: str) -> list[int]:
    result = get(client, PATH, token, limit="200", **params)
    assert result.status_code == 200, result.text
    return [item["id"] for item in result.json["data"]]


@pytest.mark.parametrize("scope", sorted(SCOPES))
def test_unfiltered_list_is_newest_first_within_the_scope(client, tokens, world, scope):
    assert ids(client, getattr(tokens, scope)) == expected(world, SCOPES[scope])


@pytest.mark.parametrize("scope", sorted(SCOPES))
def test_every_single_filter_matches_the_model(client, tokens, world, scope):
    for name, value, predicate in FILTERS:
        got = ids(client, getattr(tokens, scope), **{name: value})
        assert got == expected(world, SCOPES[scope], predicate), f"{name}={value}"


@pytest.mark.parametrize("scope", sorted(SCOPES))
def test_every_pair_of_filters_combines_with_and(client, tokens, world, scope):
    checked = 0
    for (n1, v1, p1), (n2, v2, p2) in itertools.combinations(FILTERS, 2):
        if n1 == n2:
            continue
        got = ids(client, getattr(tokens, scope), **{n1: v1, n2: v2})
        assert got == expected(world, SCOPES[scope], p1, p2), f"{n1}={v1}&{n2}={v2}"
        checked += 1
    assert checked == 288


def test_all_contract_filters_at_once(client, tokens, world):
    params = {"status": "completed", "outcome": "failed", "type": TYPES[0], "tenant_id": "1",
              "freshness_state": "reconciled_failed", "reconciled": "true"}  # fmt: skip
    want = expected(
        world, None,
        lambda r: r.status == "completed" and r.outcome == "failed" and r.type == TYPES[0],
        lambda r: r.tenant_id == 1 and r.freshness == "reconciled_failed" and r.reconciled,
    )  # fmt: skip
    assert want and ids(client, tokens.all, **params) == want


def test_no_filter_ever_reveals_another_tenants_runs(client, tokens, world):
    by_id = {r.id: r for r in world}
    for name, value, _ in FILTERS:
        for scope in ("t1", "t13"):
            for item in get(client, PATH, getattr(tokens, scope), limit="200", **{name: value}).json["data"]:
                assert by_id[item["id"]].tenant_id in SCOPES[scope], (scope, name, value)
    # Asking for another tenant explicitly narrows to nothing rather than widening the scope.
    assert ids(client, tokens.t1, tenant_id="2") == []


def test_runs_without_a_tenant_are_visible_to_all_tenant_tokens_only(client, tokens, world):
    untenanted = {r.id for r in world if r.tenant_id is None}
    assert untenanted <= set(ids(client, tokens.all))
    assert not untenanted & (set(ids(client, tokens.t1)) | set(ids(client, tokens.t13)))


def test_created_range_filters(client, tokens, world):
    now = datetime.now(UTC)
    after = now - timedelta(seconds=650)
    before = now - timedelta(seconds=250)
    got = ids(client, tokens.all, created_after=after.isoformat(), created_before=before.isoformat())
    assert got == expected(world, None, lambda r: 250 < r.age <= 650)
    # "+" in an unencoded offset arrives as a space: still the same instant.
    raw = after.replace(microsecond=0).isoformat().replace("+", " ")
    assert ids(client, tokens.all, created_after=raw) == expected(world, None, lambda r: r.age < 649)
    assert ids(client, tokens.all, created_after=after.strftime("%Y-%m-%dT%H:%M:%SZ")) != []


def test_list_item_has_exactly_the_contract_fields(client, tokens, world):
    items = get(client, PATH, tokens.all, limit="200").json["data"]
    assert {frozenset(i) for i in items} == {frozenset({
        "id", "type", "type_label", "status", "outcome", "freshness_state", "reconciled", "tenant_id",
        "initiator_name", "operator_message", "created_at", "started_at", "completed_at",
    })}  # fmt: skip
    for item in items:
        assert item["created_at"].endswith("Z") and datetime.fromisoformat(item["created_at"]).tzinfo is not None
        assert isinstance(item["type_label"], str) and isinstance(item["operator_message"], str)
    by_id = {r.id: r for r in world}
    assert all(i["freshness_state"] == by_id[i["id"]].freshness for i in items)
    assert all(i["reconciled"] == by_id[i["id"]].reconciled for i in items)
    assert {i["tenant_id"] for i in items} == set(TENANTS)


def test_exactly_the_live_runs_have_a_deadline(engine, world):
    # The freshness filters compare stale_at alone (runwatch/queries.py); that equals FRESHNESS_SQL
    # only because the trigger gives every queued or running run a stale_at and clears it on
    # completion. Keep it so.
    from sqlalchemy import text

    with engine.begin() as conn:
        conn.execute(text("""
            INSERT INTO operation_runs (message_id, type, queue_name, actor_name, status, outcome, created_at,
                                        queued_stale_seconds, running_stale_seconds, threshold_source)
            VALUES ('bare-q', 't', 'q', 'a', 'queued', 'pending', now(), 1, 1, 'default'),
                   ('bare-r', 't', 'q', 'a', 'running', 'pending', now(), 1, 1, 'default')
        """))
        conn.execute(text("UPDATE operation_runs SET status = 'completed', outcome = 'blocked', completed_at = now() "
                          "WHERE message_id = 'bare-q'"))
        wrong = conn.execute(text(
            "SELECT count(*) FROM operation_runs WHERE (status IN ('queued', 'running')) <> (stale_at IS NOT NULL)"
        )).scalar_one()
    assert wrong == 0
