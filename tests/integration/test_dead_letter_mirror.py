"""The mirror pass keeps ``dead_letters`` equal to Redis's dead-letter sets, on real dead letters."""

from __future__ import annotations

import dramatiq
from runwatch.bridge import deadletters as dl
from runwatch.bridge.keys import Keys
from runwatch.bridge.mirror import mirror_once
from runwatch.bridge.redis_letters import RedisLetters
from sqlalchemy import text

from tests.support.letters import make_dead_letters


def _mirror(engine) -> dict[str, dict]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM dead_letters ORDER BY id")).mappings()
        return {r["redis_message_id"]: dict(r) for r in rows}


def test_mirror_copies_letters_with_run_tenant_and_redacted_exception(harness, engine):
    letters = make_dead_letters(harness, "jobs", [7, None, 8], why="bad password=hunter2 given")
    keys = Keys(harness.broker.namespace)
    result = mirror_once(RedisLetters(harness.broker.client, keys), engine)
    assert (result.added, result.in_redis, result.removed) == (3, 3, 0)
    rows = _mirror(engine)
    assert set(rows) == {d.redis_message_id for d in letters}
    assert sorted(str(d.message.options.get("runwatch_tenant_id")) for d in letters) == ["7", "8", "None"]
    for letter in letters:
        tenant = letter.message.options.get("runwatch_tenant_id")
        row = rows[letter.redis_message_id]
        run = harness.run(letter.message_id)
        assert (row["queue_name"], row["actor_name"], row["message_id"]) == ("jobs", "doomed", letter.message_id)
        assert row["tenant_id"] == tenant and row["run_id"] == run["id"] and row["settled"]
        assert row["exception_type"] == "RuntimeError"
        assert "hunter2" not in row["exception_message"] and "bad password" in row["exception_message"]
        assert abs(row["dead_at"].timestamp() - letter.dead_at) < 0.01


def test_mirror_forgets_letters_that_left_redis_and_whole_queues(harness, engine):
    letters = make_dead_letters(harness, "jobs", [1, 2, 3])
    client, keys = harness.broker.client, Keys(harness.broker.namespace)
    mirror_once(RedisLetters(client, keys), engine)
    assert dl.remove(client, keys, letters[0])
    result = mirror_once(RedisLetters(client, keys), engine)
    assert (result.removed, result.added) == (1, 0)
    assert set(_mirror(engine)) == {d.redis_message_id for d in letters[1:]}
    client.delete(keys.dead_letters("jobs"), keys.dead_letter_messages("jobs"))
    assert mirror_once(RedisLetters(client, keys), engine).removed == 2
    assert _mirror(engine) == {}


def test_mirror_work_per_pass_is_bounded_and_the_rest_follows(harness, engine):
    letters = make_dead_letters(harness, "jobs", [None] * 5)
    client, keys = harness.broker.client, Keys(harness.broker.namespace)
    first = mirror_once(RedisLetters(client, keys), engine, max_new=2)
    assert (first.added, first.not_yet_mirrored) == (2, 3)
    # oldest first: the two oldest letters are mirrored first
    assert set(_mirror(engine)) == {d.redis_message_id for d in letters[:2]}
    second = mirror_once(RedisLetters(client, keys), engine, max_new=10)
    assert (second.added, second.not_yet_mirrored) == (3, 0)
    assert set(_mirror(engine)) == {d.redis_message_id for d in letters}


def test_mirror_keeps_undecodable_letters_and_links_runs_recorded_later(harness, engine):
    client, keys = harness.broker.client, Keys(harness.broker.namespace)
    client.zadd(keys.dead_letters("odd"), {"garbage-id": 1_700_000_000_000})
    client.hset(keys.dead_letter_messages("odd"), "garbage-id", b"not json token=s3cret")
    # a decodable letter whose run the ledger does not know yet
    message = dramatiq.Message(queue_name="odd", actor_name="ghost", args=(), kwargs={}, options={})
    client.zadd(keys.dead_letters("odd"), {"ghost-id": 1_700_000_000_500})
    client.hset(keys.dead_letter_messages("odd"), "ghost-id", message.encode())
    mirror_once(RedisLetters(client, keys), engine)
    rows = _mirror(engine)
    assert rows["garbage-id"]["message_id"] is None and rows["garbage-id"]["decode_error"]
    assert "s3cret" not in rows["garbage-id"]["decode_error"]
    assert rows["ghost-id"]["run_id"] is None and not rows["ghost-id"]["settled"]
    letters = make_dead_letters(harness, "jobs", [4])
    with engine.begin() as conn:  # the ghost's run arrives late: the next pass links it
        conn.execute(
            text("UPDATE dead_letters SET message_id = :m WHERE redis_message_id = 'ghost-id'"),
            {"m": letters[0].message_id},
        )
    result = mirror_once(RedisLetters(client, keys), engine)
    assert result.linked >= 1, (result, _mirror(engine), harness.run(letters[0].message_id))
    ghost = _mirror(engine)["ghost-id"]
    assert ghost["run_id"] == harness.run(letters[0].message_id)["id"] and ghost["tenant_id"] == 4 and ghost["settled"]
