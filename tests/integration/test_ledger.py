"""Order-insensitivity, idempotence and late outcomes at the ledger, on real PostgreSQL."""

from __future__ import annotations

import json

from sqlalchemy import text

from runwatch import events as ev
from runwatch.ledger import apply_events
from runwatch.settings import Settings
from runwatch.thresholds import ThresholdPolicy

POLICY = ThresholdPolicy(Settings(queued_stale_seconds=60, running_stale_seconds=30), {})
META = {"queue": "q", "actor": "a", "type": "t", "created_at": 1_700_000_000.0, "tenant_id": 4}


def _apply(engine, events):
    with engine.begin() as conn:
        return apply_events(conn, events, POLICY)


def _row(engine, message_id="m"):
    with engine.connect() as conn:
        return dict(
            conn.execute(text("SELECT * FROM operation_runs WHERE message_id=:m"), {"m": message_id}).mappings().one()
        )


def _lifecycle(message_id="m"):
    t = META["created_at"]
    return [
        ev.new_event(ev.ENQUEUED, message_id, t, {**META, "initiator": "alice"}),
        ev.new_event(ev.STARTED, message_id, t + 1, META, attempt=1, worker_id="w"),
        ev.new_event(ev.COMPLETED, message_id, t + 2, META, outcome="succeeded", summary={"created": 2}),
    ]


def test_worker_events_arriving_before_the_producers_give_the_same_row(engine):
    enqueued, started, completed = _lifecycle("late-producer")
    _apply(engine, [started])
    assert _row(engine, "late-producer")["status"] == "running"
    _apply(engine, [completed])
    _apply(engine, [enqueued])  # the producer's event, last (django_dramatiq #154)
    late = _row(engine, "late-producer")
    _apply(engine, _lifecycle("in-order"))
    ordered = _row(engine, "in-order")
    for column in (
        "status",
        "outcome",
        "created_at",
        "started_at",
        "completed_at",
        "tenant_id",
        "attempts",
        "deliveries",
        "summary_counts",
        "stale_at",
    ):
        assert late[column] == ordered[column], column


def test_redelivered_events_change_nothing(engine):
    events = _lifecycle()
    first = _apply(engine, events)
    before = _row(engine)
    second = _apply(engine, events)
    # NOTE: the plain enqueue leaves no log row, so it cannot be told from a new one; applied again it
    # changes nothing.
    assert (first.events_new, second.events_new, second.events_duplicate) == (3, 1, 2)
    assert _row(engine) == before
    with engine.connect() as conn:
        assert conn.execute(text("SELECT kind FROM run_events ORDER BY at")).scalars().all() == ["started", "completed"]


def test_late_outcome_after_reconciliation_is_an_event_and_the_reconciliation_stands(engine):
    enqueued, started, completed = _lifecycle()
    dead = ev.new_event(
        ev.DEAD_LETTERED,
        "m",
        META["created_at"] + 1.5,
        META,
        reason_code="run.queue_failure_bridge",
        evidence={"exception_type": "E"},
    )
    _apply(engine, [enqueued, started, dead])
    result = _apply(engine, [completed])
    row = _row(engine)
    assert (row["outcome"], row["reconciliation_source"]) == ("failed", "failed_callback")
    assert result.late_events == [completed["id"]]
    with engine.connect() as conn:
        late = conn.execute(text("SELECT kind, late, details FROM run_events WHERE late")).mappings().all()
    assert [(r["kind"], r["details"]["outcome"]) for r in late] == [("completed", "succeeded")]


def test_progress_extends_freshness_and_stale_at_follows_the_threshold(engine):
    t = META["created_at"]
    _apply(engine, [ev.new_event(ev.STARTED, "m", t, META, attempt=1)])
    first = _row(engine)["stale_at"]
    _apply(engine, [ev.new_event(ev.PROGRESS, "m", t + 100, META, progress_processed=5, progress_total=10)])
    row = _row(engine)
    assert (row["stale_at"] - first).total_seconds() == 100
    assert (row["stale_at"] - row["last_progress_at"]).total_seconds() == 30
    assert (row["progress_processed"], row["progress_total"]) == (5, 10)


def test_events_are_stored_without_repeating_run_metadata(engine):
    _apply(engine, _lifecycle())
    with engine.connect() as conn:
        details = conn.execute(text("SELECT details FROM run_events")).scalars().all()
    assert all("meta" not in d for d in details)
    assert json.dumps(details)  # plain JSON


def test_start_and_completion_in_one_batch_after_the_queued_row_exists(engine):
    """A job shorter than the flush interval: its start and end reach the ledger together."""
    enqueued, started, completed = _lifecycle("fast-job")
    _apply(engine, [enqueued])
    result = _apply(engine, [started, completed])
    row = _row(engine, "fast-job")
    assert (row["status"], row["outcome"], row["deliveries"]) == ("completed", "succeeded", 1)
    assert result.runs_written == 1 and row["started_at"] is not None


def test_a_completion_without_a_start_cannot_skip_running(engine):
    """The database still refuses queued -> succeeded when nothing says the run ever started."""
    import pytest
    from sqlalchemy.exc import IntegrityError

    enqueued, _, _ = _lifecycle("never-started")
    _apply(engine, [enqueued])
    with pytest.raises(IntegrityError, match="runwatch_legal_transition|illegal run transition"), engine.begin() as c:
        c.execute(text("UPDATE operation_runs SET status='completed', outcome='succeeded', completed_at=now() "
                       "WHERE message_id='never-started'"))


def test_a_completion_applied_before_its_start_is_not_rejected(engine):
    """Two drainers, or a bisected batch: the completion can reach the ledger before the start."""
    enqueued, started, completed = _lifecycle("split")
    completed["started_at"] = started["at"]  # what the recorder always sends with an outcome
    _apply(engine, [enqueued])
    _apply(engine, [completed])
    _apply(engine, [started])
    row = _row(engine, "split")
    assert (row["status"], row["outcome"], row["deliveries"]) == ("completed", "succeeded", 1)  # the start still counts
    assert row["started_at"] is not None


def test_a_retry_of_a_run_that_no_longer_exists_is_still_recorded(engine):
    enqueued, _, _ = _lifecycle("orphan-retry")
    enqueued["meta"] = {**enqueued["meta"], "retry_of": 424242}
    _apply(engine, [enqueued])
    assert _row(engine, "orphan-retry")["retry_of"] is None


def test_deliveries_arriving_after_the_outcome_are_still_counted(engine):
    """Found by the acceptance suite: two drainers apply a delivery's start and its outcome in either
    order, and a duplicate delivery's start can reach a terminal run; both are deliveries."""
    enqueued, started, completed = _lifecycle("out-of-order")
    _apply(engine, [enqueued, completed])  # the outcome's drainer was first
    assert _row(engine, "out-of-order")["deliveries"] == 0
    _apply(engine, [started])
    again = ev.new_event(ev.STARTED, "out-of-order", META["created_at"] + 5, META, attempt=1, worker_id="w2")
    late = ev.new_event(ev.COMPLETED, "out-of-order", META["created_at"] + 6, META, outcome="failed")
    _apply(engine, [again, late])  # a duplicate delivery, after the run ended
    row = _row(engine, "out-of-order")
    assert row["deliveries"] == 3 - 1 and row["outcome"] == "succeeded" and row["completed_at"] is not None
    # Redelivered stream entries count nothing twice.
    _apply(engine, [started, again, late])
    assert _row(engine, "out-of-order")["deliveries"] == 2


def test_the_newest_redis_id_wins_whatever_order_the_events_are_applied_in(engine):
    """Found by the large PostgreSQL-outage scenario: after an outage, drainers apply the backlog in
    any order. A retried message's attempt_failed event (its delay-queue id) applied after the
    later "moved" event (its new queue id) overwrote the newer id, and the healer, not finding the
    message under the old one, failed a run that was waiting in the queue."""
    t = META["created_at"]
    enqueued = ev.new_event(ev.ENQUEUED, "moved", t, META, redis_message_id="first")
    started = ev.new_event(ev.STARTED, "moved", t + 1, META, attempt=1, worker_id="w", redis_message_id="first")
    failed = ev.new_event(ev.ATTEMPT_FAILED, "moved", t + 2, META, attempt=1, next_retry_at=t + 2.1,
                          redis_message_id="in-delay-queue")  # fmt: skip
    moved = ev.new_event(ev.ENQUEUED, "moved", t + 3, META, redis_message_id="back-in-queue")
    _apply(engine, [enqueued, started])
    _apply(engine, [moved])
    _apply(engine, [failed])
    assert _row(engine, "moved")["redis_message_id"] == "back-in-queue"
    # ... and in one batch, too.
    for event in (enqueued, started, failed, moved):
        event["message_id"] = "one-batch"
        event["id"] = ev.new_event_id()
    _apply(engine, [moved, failed, started, enqueued])
    assert _row(engine, "one-batch")["redis_message_id"] == "back-in-queue"
