"""The healer's rules (``verdicts.decide``) without PostgreSQL or Redis: a typed verdict per case."""

from __future__ import annotations

from datetime import timedelta

import pytest

from runwatch.healer import HealOptions
from runwatch.reasons import ADAPTER_OUT_OF_SYNC, STALE_QUEUED, STALE_RUNNING
from runwatch.verdicts import DEAD_LETTER_GRACE_SECONDS, Action, Observation, Verdict, decide
from tests.support.heal_rows import NOW, candidate

OPTIONS = HealOptions(ceiling_margin_seconds=30)


def run(status="queued", *, age_seconds=600, next_retry_at=None, time_limit_ms=None):
    return candidate(status, age_seconds=age_seconds, next_retry_at=next_retry_at, time_limit_ms=time_limit_ms)


def test_a_queued_run_the_broker_still_holds_is_backlog():
    verdict = decide(run(), Observation(checked=True, found_in="queue", looked_in=("queue",)), OPTIONS)
    assert isinstance(verdict, Verdict)
    assert (verdict.action, verdict.why, verdict.reason) == (Action.SKIP, "backlog", None)
    assert verdict.evidence["message_found_in"] == "queue" and verdict.evidence["age_seconds"] == 600


def test_a_running_run_back_in_the_queue_awaits_redelivery():
    verdict = decide(run("running"), Observation(checked=True, found_in="delay_queue"), OPTIONS)
    assert (verdict.action, verdict.why) == (Action.SKIP, "requeued")


def test_a_queued_run_nowhere_in_the_broker_is_stale_queued():
    verdict = decide(run(), Observation(checked=True, looked_in=("queue", "delay_queue")), OPTIONS)
    assert (verdict.action, verdict.reason) == (Action.RECONCILE, STALE_QUEUED)
    assert verdict.as_dict()["reason_code"] == STALE_QUEUED.code
    assert "reason_code" not in verdict.note_evidence() and verdict.note_evidence()["threshold_seconds"] == 60


@pytest.mark.parametrize(
    ("age", "expected"),
    [(DEAD_LETTER_GRACE_SECONDS - 1, Action.SKIP), (DEAD_LETTER_GRACE_SECONDS + 1, Action.RECONCILE)],
)
def test_a_dead_letter_waits_for_its_callback_then_is_reconciled_from_the_broker(age, expected):
    obs = Observation(checked=True, found_in="dead_letters", dead_letter_key="q.XQ", dead_letter_age_seconds=age)
    verdict = decide(run("running"), obs, OPTIONS)
    assert verdict.action is expected
    if expected is Action.RECONCILE:
        assert verdict.reason is ADAPTER_OUT_OF_SYNC and verdict.evidence["dead_letter_key"] == "q.XQ"
    else:
        assert verdict.why == "dead_letter_fresh"


def test_a_dead_workers_message_is_handed_back_not_failed():
    obs = Observation(checked=True, found_in="in_flight", holder="w0", worker_alive=False)
    verdict = decide(run("running"), obs, OPTIONS)
    assert (verdict.action, verdict.why, verdict.evidence["worker_id"]) == (
        Action.REQUEUE,
        "requeued_from_dead_worker",
        "w0",
    )


def test_a_retry_in_a_live_workers_prefetch_is_backlog():
    obs = Observation(checked=True, found_in="in_flight", worker_alive=True)
    verdict = decide(run("running", next_retry_at=NOW - timedelta(seconds=500)), obs, OPTIONS)
    assert (verdict.action, verdict.why) == (Action.SKIP, "retry_waiting")


@pytest.mark.parametrize(("age", "expected"), [(600, Action.SKIP), (700, Action.RECONCILE)])
def test_a_live_workers_run_is_slow_until_its_time_limit_plus_margin(age, expected):
    # time limit 600 s + margin 30 s: at 600 s slow, at 700 s past the hard ceiling.
    obs = Observation(checked=True, worker_alive=True)
    verdict = decide(run("running", age_seconds=age, time_limit_ms=600_000), obs, OPTIONS)
    assert verdict.action is expected
    assert "hard_ceiling_at" in verdict.evidence
    if expected is Action.RECONCILE:
        assert verdict.reason is STALE_RUNNING and "time limit plus margin" in verdict.note


def test_a_running_run_with_a_dead_worker_and_no_message_is_stale_running():
    verdict = decide(run("running"), Observation(checked=True, worker_alive=False), OPTIONS)
    assert (verdict.action, verdict.reason) == (Action.RECONCILE, STALE_RUNNING)


def test_a_paused_pass_turns_a_reconcile_into_a_skip_that_keeps_its_reason():
    verdict = decide(run(), Observation(checked=True), OPTIONS).skipped("paused", "outage grace")
    assert (verdict.action, verdict.why, verdict.reason) == (Action.SKIP, "paused", STALE_QUEUED)
    assert verdict.as_dict()["note"] == "outage grace"
