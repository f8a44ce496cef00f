"""Operator actions end to end below the API: request, execute, audit, timeline; real letters."""

from __future__ import annotations

import pytest
from runwatch.bridge import deadletters as dl
from runwatch.bridge import requeue as rq
from runwatch.bridge.actions import execute_once
from runwatch.bridge.keys import Keys
from runwatch.bridge.mirror import mirror_once
from runwatch.bridge.redis_letters import RedisLetters
from sqlalchemy import text

from runwatch import actions
from runwatch.dead_letters import LetterFilters, Selection
from runwatch.thresholds import ThresholdPolicy
from runwatch.tokens import OPERATOR, Principal, create_token
from tests.support.letters import make_dead_letters


def _principal(engine, name: str, tenants: list[int] | None) -> Principal:
    with engine.begin() as conn:
        _, info = create_token(conn, name=name, tenant_ids=tenants, role=OPERATOR)
    return Principal(info.id, info.name, None if tenants is None else frozenset(tenants), OPERATOR)


def _request(engine, principal, kind, selection, key="k1", **kw):
    with engine.begin() as conn:
        return actions.request_action(conn, principal, kind=kind, selection=selection, idempotency_key=key, **kw)


def _get(engine, action_id):
    with engine.connect() as conn:
        return actions.get_action(conn, action_id, tenant_ids=None)


def _timeline(engine, message_id):
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT details FROM run_events WHERE message_id = :m AND kind = 'operator_action'"), {"m": message_id}
        )
        return [r.details for r in rows]


@pytest.fixture
def cli_env(monkeypatch, database_url, servers):
    monkeypatch.setenv("RUNWATCH_DATABASE_URL", database_url)
    monkeypatch.setenv("RUNWATCH_REDIS_URL", servers.redis_url)


@pytest.fixture
def world(harness, engine):
    letters = make_dead_letters(harness, "jobs", [1, 1, 2, None])
    client, keys = harness.broker.client, Keys(harness.broker.namespace)
    mirror_once(RedisLetters(client, keys), engine)
    return client, keys, letters


def _tenant(letter):
    return letter.message.options.get("runwatch_tenant_id")


def test_requeue_takes_exactly_the_scoped_selection_and_writes_audit_and_timeline(harness, engine, settings, world):
    client, keys, letters = world
    alice = _principal(engine, "alice", [1])
    action, created = _request(engine, alice, "requeue", Selection(filters=LetterFilters(queue="jobs")))
    assert created and action["status"] == "pending" and action["matched"] == 2  # APPSEC: tenant 1's only
    ran = execute_once(RedisLetters(client, keys), engine, ThresholdPolicy(settings))
    assert (ran.requeued, ran.skipped, ran.finished) == (2, 0, [action["id"]])
    done = _get(engine, action["id"])
    assert (done["status"], done["matched"], done["done"], done["skipped"]) == ("done", 2, 2, 0)
    assert done["finished_at"] is not None and done["token_name"] == "alice"
    left = {d.redis_message_id for d in dl.scan(client, keys, queue="jobs")}
    assert left == {d.redis_message_id for d in letters if _tenant(d) != 1}
    queued = {m.decode() for m in client.lrange(keys.queue("jobs"), 0, -1)}
    assert len(queued) == 2
    for letter in (d for d in letters if _tenant(d) == 1):
        timeline = _timeline(engine, letter.message_id)
        assert len(timeline) == 1 and timeline[0]["action"] == "requeue" and timeline[0]["result"] == "requeued"
        assert timeline[0]["requested_by"] == {"token_id": alice.token_id, "token_name": "alice"}
        new_run = harness.run(rq.requeued_message_id(letter))
        assert timeline[0]["new_run_id"] == new_run["id"]
        assert new_run["retry_of"] == harness.run(letter.message_id)["id"]
    with engine.connect() as conn:
        mirrored = set(conn.execute(text("SELECT redis_message_id FROM dead_letters")).scalars())
        items, truncated = actions.action_items(conn, action["id"])
    assert mirrored == left
    assert not truncated and [i["result"] for i in items] == ["requeued", "requeued"]
    # a second pass has nothing left to do
    assert execute_once(RedisLetters(client, keys), engine, ThresholdPolicy(settings)).requeued == 0


def test_purge_of_explicit_ids_counts_a_letter_already_gone_as_skipped(harness, engine, settings, world):
    client, keys, letters = world
    root = _principal(engine, "root", None)
    with engine.connect() as conn:
        ids = dict(conn.execute(text("SELECT redis_message_id, id FROM dead_letters")).all())
    chosen = letters[:3]
    action, _ = _request(engine, root, "purge", Selection(ids=tuple(ids[d.redis_message_id] for d in chosen)))
    assert action["matched"] == 3
    assert dl.remove(client, keys, chosen[0])  # someone else purged it meanwhile
    ran = execute_once(RedisLetters(client, keys), engine, ThresholdPolicy(settings))
    assert (ran.purged, ran.skipped, ran.failed) == (2, 1, [])
    done = _get(engine, action["id"])
    assert (done["status"], done["done"], done["skipped"], done["error"]) == ("done", 2, 1, None)
    assert {d.redis_message_id for d in dl.scan(client, keys, queue="jobs")} == {letters[3].redis_message_id}
    assert _timeline(engine, chosen[0].message_id) == []
    assert [t["result"] for t in _timeline(engine, chosen[1].message_id)] == ["purged"]


def test_idempotency_key_names_one_action_per_token(engine, world):
    root, other = _principal(engine, "root", None), _principal(engine, "other", None)
    selection = Selection(filters=LetterFilters(actor="doomed"))
    first, created = _request(engine, root, "purge", selection, key="same")
    again, created_again = _request(engine, root, "purge", selection, key="same")
    assert created and not created_again and again["id"] == first["id"]
    with pytest.raises(actions.IdempotencyConflict):
        _request(engine, root, "requeue", selection, key="same")
    with pytest.raises(actions.IdempotencyConflict):
        _request(engine, root, "purge", Selection(filters=LetterFilters(actor="other")), key="same")
    theirs, created_theirs = _request(engine, other, "purge", selection, key="same")
    assert created_theirs and theirs["id"] != first["id"]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM operator_actions")).scalar() == 2


def test_selection_too_large_is_refused_and_writes_nothing(engine, world):
    root = _principal(engine, "root", None)
    with pytest.raises(actions.SelectionTooLarge):
        _request(engine, root, "purge", Selection(filters=LetterFilters()), max_letters=3)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM operator_actions")).scalar() == 0


def test_work_per_pass_is_bounded_and_the_action_resumes(engine, settings, world):
    client, keys, letters = world
    root = _principal(engine, "root", None)
    action, _ = _request(engine, root, "purge", Selection(filters=LetterFilters()))
    policy = ThresholdPolicy(settings)
    first = execute_once(RedisLetters(client, keys), engine, policy, max_letters=3)
    assert first.purged == 3 and first.finished == [] and _get(engine, action["id"])["status"] == "running"
    second = execute_once(RedisLetters(client, keys), engine, policy, max_letters=3)
    assert second.purged == 1 and second.finished == [action["id"]]
    assert _get(engine, action["id"])["done"] == 4 and client.zcard(keys.dead_letters("jobs")) == 0


def test_audit_is_tenant_scoped(engine, world):
    root, alice = _principal(engine, "root", None), _principal(engine, "alice", [1])
    wide, _ = _request(engine, root, "purge", Selection(filters=LetterFilters()), key="a")
    narrow, _ = _request(engine, alice, "purge", Selection(filters=LetterFilters()), key="b")
    with engine.connect() as conn:
        assert [a["id"] for a in actions.list_actions(conn, tenant_ids=None)] == [narrow["id"], wide["id"]]
        assert [a["id"] for a in actions.list_actions(conn, tenant_ids=frozenset({1, 2}))] == [narrow["id"]]
        assert actions.list_actions(conn, tenant_ids=frozenset({2})) == []
        assert actions.get_action(conn, wide["id"], tenant_ids=frozenset({1})) is None
        assert actions.get_action(conn, narrow["id"], tenant_ids=frozenset({1}))["matched"] == 2


def test_a_letter_redis_refuses_to_move_fails_the_action_with_a_redacted_error(engine, settings, world):
    client, keys, _ = world
    root = _principal(engine, "root", None)
    action, _ = _request(engine, root, "requeue", Selection(filters=LetterFilters()))
    client.set(keys.queue("jobs"), "not a list")  # the Lua move refuses wrong key types before any write
    ran = execute_once(RedisLetters(client, keys), engine, ThresholdPolicy(settings))
    assert ran.failed == [action["id"]] and ran.requeued == 0
    failed = _get(engine, action["id"])
    assert failed["status"] == "failed" and "ResponseError" in failed["error"] and failed["finished_at"]
    assert client.zcard(keys.dead_letters("jobs")) == 4  # nothing lost
    assert execute_once(RedisLetters(client, keys), engine, ThresholdPolicy(settings)).actions == 0  # failed is final


def test_cli_runs_the_mirror_and_the_executor(engine, world, namespace, cli_env, capsys):
    from runwatch.cli import main

    client, keys, _ = world
    root = _principal(engine, "root", None)
    action, _ = _request(engine, root, "purge", Selection(filters=LetterFilters(tenant_id=2)))
    assert main(["bridge", "actions", "--namespace", namespace]) == 0
    assert f"1 purged, 0 skipped (already gone); finished [{action['id']}]" in capsys.readouterr().out
    client.delete(keys.dead_letters("jobs"))
    assert main(["bridge", "mirror", "--namespace", namespace]) == 0
    assert "0 added, 3 removed" in capsys.readouterr().out
    assert main(["bridge", "mirror", "--namespace", namespace, "--max-new", "0"]) == 2


def test_the_workers_maintenance_pass_executes_actions_and_refreshes_the_mirror(harness, engine, settings, world):
    from runwatch.workers.maintenance import Maintenance

    client, keys, letters = world
    root = _principal(engine, "root", None)
    action, _ = _request(engine, root, "purge", Selection(filters=LetterFilters(tenant_id=2)))
    Maintenance(client, settings, namespace=harness.broker.namespace).run_once()
    assert _get(engine, action["id"])["status"] == "done"
    with engine.connect() as conn:
        tenants = sorted(conn.execute(text("SELECT coalesce(tenant_id, 0) FROM dead_letters")).scalars())
    assert tenants == [0, 1, 1] and client.zcard(keys.dead_letters("jobs")) == 3
