"""The fold is order-insensitive, in one batch or across batches, on the real ledger."""

from __future__ import annotations

from itertools import permutations

import pytest
from sqlalchemy import text

from runwatch import events as ev
from runwatch.errors import ValidationError
from runwatch.ledger import apply_events
from runwatch.settings import Settings
from runwatch.thresholds import ThresholdPolicy, TypePolicy

T = 1_700_000_000.0
META = {"queue": "q", "actor": "a", "type": "t", "created_at": T, "tenant_id": 3}
POLICY = ThresholdPolicy(Settings(), {})
_VOLATILE = {"id", "message_id", "updated_at", "stale_at"}


def _events(message_id: str) -> list[dict]:
    return [
        ev.new_event(ev.ENQUEUED, message_id, T, {**META, "initiator": "alice"}),
        ev.new_event(ev.STARTED, message_id, T + 1, META, attempt=1, worker_id="w1"),
        ev.new_event(
            ev.ATTEMPT_FAILED, message_id, T + 2, META, attempt=1, error={"exception_type": "E"}, next_retry_at=T + 10
        ),
        ev.new_event(ev.STARTED, message_id, T + 10, META, attempt=2, worker_id="w2"),
        ev.new_event(
            ev.COMPLETED, message_id, T + 11, META, outcome="partially_succeeded", summary={"skipped": 2, "total": 9}
        ),
    ]


def _row(conn, message_id: str) -> dict:
    row = conn.execute(text("SELECT * FROM operation_runs WHERE message_id = :m"), {"m": message_id}).mappings().one()
    return {k: v for k, v in row.items() if k not in _VOLATILE}


def test_every_arrival_order_in_one_batch_folds_to_the_same_row(engine):
    rows = []
    with engine.begin() as conn:
        for i, order in enumerate(permutations(range(5))):
            events = _events(f"m{i}")
            apply_events(conn, [events[k] for k in order], POLICY)
            rows.append(_row(conn, f"m{i}"))
    assert all(r == rows[0] for r in rows)
    row = rows[0]
    assert (row["status"], row["outcome"], row["attempts"], row["deliveries"]) == (
        "completed",
        "partially_succeeded",
        2,
        2,
    )
    assert (row["worker_id"], row["initiator_name"], row["tenant_id"]) == ("w2", "alice", 3)
    assert row["summary_counts"] == {"skipped": 2, "total": 9}
    assert row["next_retry_at"] is None and row["last_error"] == {"exception_type": "E"}


def test_one_event_per_batch_in_any_order_gives_the_batch_row(engine):
    with engine.begin() as conn:
        apply_events(conn, _events("whole"), POLICY)
        whole = _row(conn, "whole")
        events = _events("split")
        for k in (3, 1, 0, 2, 4):  # NOTE: the outcome last: a terminal row is never mutated again
            apply_events(conn, [events[k]], POLICY)
        split = _row(conn, "split")
    split.pop("message_id", None)
    assert split == whole


def test_a_second_terminal_event_is_late_and_changes_nothing(engine):
    first = ev.new_event(ev.COMPLETED, "m", T + 5, META, outcome="succeeded", started_at=T + 1)
    second = ev.new_event(ev.DEAD_LETTERED, "m", T + 6, META, reason_code="run.queue_failure_bridge", evidence={})
    with engine.begin() as conn:
        result = apply_events(conn, [second, first], POLICY)
        row = _row(conn, "m")
    assert row["outcome"] == "succeeded" and row["reconciled_at"] is None
    assert result.late_events == [second["id"]]


def test_thresholds_come_from_the_actor_before_config_and_default(engine):
    policy = ThresholdPolicy(Settings(queued_stale_seconds=50), {"u": TypePolicy(queued_stale_seconds=70)})
    with engine.begin() as conn:
        apply_events(conn, [ev.new_event(ev.ENQUEUED, "a", T, {**META, "running_stale_seconds": 7})], policy)
        apply_events(conn, [ev.new_event(ev.ENQUEUED, "c", T, {**META, "type": "u"})], policy)
        apply_events(conn, [ev.new_event(ev.ENQUEUED, "d", T, META)], policy)
        got = [_row(conn, m) for m in "acd"]
    thresholds = [(r["queued_stale_seconds"], r["running_stale_seconds"], r["threshold_source"]) for r in got]
    assert thresholds == [(50, 7, "actor"), (70, 900, "config"), (50, 900, "default")]


def test_a_start_after_the_outcome_in_one_batch_is_still_a_delivery(engine):
    events = [
        ev.new_event(ev.STARTED, "m", T + 1, META, attempt=1, worker_id="w1"),
        ev.new_event(ev.COMPLETED, "m", T + 2, META, outcome="succeeded"),
        ev.new_event(ev.STARTED, "m", T + 3, META, attempt=1, worker_id="w2"),  # a duplicate delivery
    ]
    with engine.begin() as conn:
        apply_events(conn, events, POLICY)
        row = _row(conn, "m")
    assert (row["deliveries"], row["status"], row["worker_id"]) == (2, "completed", "w1")


def test_a_start_folded_into_its_outcome_counts_and_stays_in_its_outcomes_row(engine):
    done = ev.new_event(ev.COMPLETED, "m", T + 2, META, outcome="succeeded")
    done["start"] = {"at": T + 1, "attempt": 1, "worker_id": "w1", "redis_message_id": "r1"}
    with engine.begin() as conn:
        first = apply_events(conn, [done], POLICY)
        again = apply_events(conn, [done], POLICY)
        kinds = conn.execute(text("SELECT kind, details FROM run_events ORDER BY at")).all()
        row = _row(conn, "m")
    assert (first.events_new, again.events_new, again.events_duplicate) == (1, 0, 1)
    assert [k for k, _ in kinds] == ["completed"]
    assert kinds[0][1]["start"] == {"at": T + 1, "attempt": 1, "worker_id": "w1", "redis_message_id": "r1"}
    assert (row["deliveries"], row["redis_message_id"], row["started_at"].timestamp()) == (1, "r1", T + 1)


def test_a_summary_that_is_not_an_object_fails_validation():
    event = ev.new_event(ev.COMPLETED, "m", T, META, outcome="succeeded", summary=[1])
    with pytest.raises(ValidationError, match="summary"):
        ev.validate(event)


def test_a_delayed_send_is_not_stale_before_its_eta(engine):
    # NOTE: on RabbitMQ a delayed message waits unacknowledged in a worker's prefetch, where the
    # healer's queue counts cannot see it: only the deadline keeps it from being failed early.
    delayed = ev.new_event(ev.ENQUEUED, "later", T, META, delay_ms=7_200_000)
    plain = ev.new_event(ev.ENQUEUED, "now", T, META)
    with engine.begin() as conn:
        apply_events(conn, [delayed, plain], POLICY)
        ages = dict(
            conn.execute(text("SELECT message_id, extract(epoch FROM stale_at - created_at) FROM operation_runs")).all()
        )
    threshold = Settings().queued_stale_seconds
    assert ages == {"later": 7_200 + threshold, "now": threshold}
    with engine.begin() as conn:
        apply_events(conn, [ev.new_event(ev.STARTED, "later", T + 7_200, META, attempt=1, worker_id="w")], POLICY)
        running = conn.execute(
            text(
                "SELECT extract(epoch FROM stale_at - started_at), next_retry_at "
                "FROM operation_runs WHERE message_id = 'later'"
            )
        ).one()
    assert running == (Settings().running_stale_seconds, None)  # started: the running deadline, as ever
