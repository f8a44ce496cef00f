"""The fold is order-insensitive: any arrival order of a message's events gives the same row."""

from itertools import permutations

from runwatch import events as ev
from runwatch.fold import fold
from runwatch.settings import Settings
from runwatch.thresholds import ThresholdPolicy

META = {"queue": "q", "actor": "a", "type": "t", "created_at": 100.0, "tenant_id": 3}
POLICY = ThresholdPolicy(Settings(), {})


def _events():
    return [
        ev.new_event(ev.ENQUEUED, "m", 100.0, {**META, "initiator": "alice"}),
        ev.new_event(ev.STARTED, "m", 101.0, META, attempt=1, worker_id="w1"),
        ev.new_event(
            ev.ATTEMPT_FAILED, "m", 102.0, META, attempt=1, error={"exception_type": "E"}, next_retry_at=110.0
        ),
        ev.new_event(ev.STARTED, "m", 110.0, META, attempt=2, worker_id="w2"),
        ev.new_event(ev.COMPLETED, "m", 111.0, META, outcome="partially_succeeded", summary={"skipped": 2}),
    ]


def _strip(row):
    return {k: v for k, v in row.items() if k != "late_event_ids"}


def test_every_arrival_order_folds_to_the_same_row():
    events = _events()
    rows = {repr(sorted(_strip(fold(list(p), POLICY)).items())) for p in permutations(events)}
    assert len(rows) == 1
    row = fold(events, POLICY)
    assert row["status"] == "completed" and row["outcome"] == "partially_succeeded"
    assert row["attempts"] == 2 and row["deliveries"] == 2 and row["worker_id"] == "w2"
    assert row["initiator_name"] == "alice" and row["summary_counts"] == {"skipped": 2}
    assert row["next_retry_at"] is None and row["last_error"] == {"exception_type": "E"}


def test_a_second_terminal_event_is_late_and_changes_nothing():
    first = ev.new_event(ev.COMPLETED, "m", 105.0, META, outcome="succeeded")
    second = ev.new_event(ev.DEAD_LETTERED, "m", 106.0, META, reason_code="run.queue_failure_bridge", evidence={})
    row = fold([second, first], POLICY)
    assert row["outcome"] == "succeeded" and row.get("reconciled_at") is None
    assert row["late_event_ids"] == [second["id"]]


def test_thresholds_come_from_the_actor_before_config_and_default():
    policy = ThresholdPolicy(Settings(queued_stale_seconds=50), {})
    row = fold([ev.new_event(ev.ENQUEUED, "m", 1.0, {**META, "running_stale_seconds": 7})], policy)
    assert (row["queued_stale_seconds"], row["running_stale_seconds"], row["threshold_source"]) == (50, 7, "actor")


def test_a_start_after_the_outcome_in_one_batch_is_still_a_delivery():
    t = 1_700_000_000.0
    meta = {"queue": "q", "actor": "a", "type": "t", "created_at": t}
    events = [
        ev.new_event(ev.STARTED, "m", t + 1, meta, attempt=1, worker_id="w1"),
        ev.new_event(ev.COMPLETED, "m", t + 2, meta, outcome="succeeded"),
        ev.new_event(ev.STARTED, "m", t + 3, meta, attempt=1, worker_id="w2"),  # a duplicate delivery
    ]
    row = fold(events, ThresholdPolicy(Settings(), {}))
    assert row["deliveries"] == 2 and row["status"] == "completed" and row["worker_id"] == "w1"
