"""The healer's rules on a broker that counts messages but cannot find one (RabbitMQ): ``decide``
with ``Observation(counted_only=True)``, no servers."""

from __future__ import annotations

from datetime import timedelta

import pytest

from runwatch.healer import HealOptions
from runwatch.reasons import STALE_QUEUED, STALE_RUNNING
from runwatch.verdicts import Action, Observation, decide
from tests.support.heal_rows import NOW, candidate

OPTIONS = HealOptions(ceiling_margin_seconds=30)
COUNTS = {"q": {"ready": 0, "consumers": 1, "unacked": "unknown"}, "q.DQ": {"ready": 0, "consumers": 1}}


def run(status="queued", *, age_seconds=600, time_limit_ms=600_000):
    return candidate(status, age_seconds=age_seconds, time_limit_ms=time_limit_ms, redis_message_id=None)


def counted(found_in=None, may_be_held=None, detail="seen"):
    return Observation(
        checked=True,
        found_in=found_in,
        looked_in=("q", "q.DQ"),
        counted_only=True,
        may_be_held=may_be_held,
        queue_counts=COUNTS,
        detail=detail,
    )


@pytest.mark.parametrize("where", ["queue", "delay_queue"])
def test_a_queued_run_with_ready_messages_in_its_queues_is_backlog(where):
    verdict = decide(run(), counted(where), OPTIONS)
    assert (verdict.action, verdict.why) == (Action.SKIP, "backlog")
    assert verdict.evidence["broker_queue_counts"] == COUNTS and verdict.evidence["looked_for_message_in"] == [
        "q",
        "q.DQ",
    ]


def test_a_queued_run_with_empty_queues_and_no_possible_holder_is_stale_queued():
    verdict = decide(run(), counted(may_be_held=False, detail="queue empty; 0 consumers"), OPTIONS)
    assert (verdict.action, verdict.reason) == (Action.RECONCILE, STALE_QUEUED)
    assert verdict.evidence["broker_detail"] == "queue empty; 0 consumers" and verdict.evidence["broker_checked"]
    assert verdict.note == "no message waits in its queues"


# A consumer may hold it prefetched behind busy threads (the acceptance suite's RabbitMQ restart
# failed such runs): backlog until the hard ceiling, 600 s + 30 s after it was queued.
@pytest.mark.parametrize("may_be_held", [None, True])
@pytest.mark.parametrize(("age", "expected"), [(600, Action.SKIP), (700, Action.RECONCILE)])
def test_a_queued_run_a_consumer_may_hold_is_backlog_until_the_hard_ceiling(may_be_held, age, expected):
    verdict = decide(run(age_seconds=age), counted(may_be_held=may_be_held), OPTIONS)
    assert verdict.action is expected
    if expected is Action.SKIP:
        assert verdict.why == "may_be_held" and "prefetched, not lost" in verdict.note
    else:
        assert verdict.reason == STALE_QUEUED and verdict.note.startswith("a consumer may hold it")


# time limit 600 s + margin 30 s: at 600 s before the hard ceiling, at 700 s past it.
@pytest.mark.parametrize(("age", "expected"), [(600, Action.SKIP), (700, Action.RECONCILE)])
def test_a_running_run_with_ready_messages_awaits_redelivery_until_the_hard_ceiling(age, expected):
    verdict = decide(run("running", age_seconds=age), counted("queue"), OPTIONS)
    assert verdict.action is expected
    assert verdict.evidence["hard_ceiling_at"] == (NOW - timedelta(seconds=age - 630)).isoformat()
    if expected is Action.SKIP:
        assert verdict.why == "requeued" and "redelivery" in verdict.note
    else:
        assert verdict.reason is STALE_RUNNING and "past its time limit plus margin" in verdict.note


def test_a_pending_retry_with_ready_messages_is_backlog_past_the_hard_ceiling():
    # The acceptance suite's PostgreSQL outage on RabbitMQ left retries behind a long backlog.
    pending = {**run("running", age_seconds=700), "next_retry_at": NOW - timedelta(seconds=700)}
    verdict = decide(pending, counted("queue"), OPTIONS)
    assert (verdict.action, verdict.why) == (Action.SKIP, "retry_waiting")
    assert "time limit not begun" in verdict.note


def test_a_delayed_queued_run_a_consumer_may_hold_waits_from_its_eta():
    delayed = {**run(age_seconds=700), "next_retry_at": NOW - timedelta(seconds=100)}
    verdict = decide(delayed, counted(may_be_held=None), OPTIONS)
    assert (verdict.action, verdict.why) == (Action.SKIP, "may_be_held")
    assert verdict.evidence["hard_ceiling_at"] == (NOW + timedelta(seconds=530)).isoformat()


def test_a_running_run_nobody_can_hold_is_stale_running_at_its_threshold():
    verdict = decide(run("running", age_seconds=200), counted(may_be_held=False), OPTIONS)
    assert (verdict.action, verdict.reason) == (Action.RECONCILE, STALE_RUNNING)
    assert verdict.note == "no message waits in its queues and no consumer can hold it"
    assert "hard_ceiling_at" not in verdict.evidence


@pytest.mark.parametrize(("may_be_held", "says"), [(None, "could not tell"), (True, "holds unacked messages")])
@pytest.mark.parametrize(("age", "expected"), [(600, Action.SKIP), (700, Action.RECONCILE)])
def test_a_running_run_a_consumer_may_hold_is_slow_until_the_hard_ceiling(may_be_held, says, age, expected):
    verdict = decide(run("running", age_seconds=age), counted(may_be_held=may_be_held), OPTIONS)
    assert verdict.action is expected and "hard_ceiling_at" in verdict.evidence
    if expected is Action.SKIP:
        assert verdict.why == "may_be_held" and says in verdict.note
    else:
        assert verdict.reason is STALE_RUNNING and verdict.note.startswith("a consumer may hold it")


def test_a_run_without_a_time_limit_gets_the_default_ceiling():
    verdict = decide(run("running", age_seconds=620, time_limit_ms=None), counted(), OPTIONS)
    assert verdict.why == "may_be_held"  # 600 s default limit + 30 s margin


def test_counted_evidence_never_asks_for_a_requeue():
    for found_in in (None, "queue", "delay_queue"):
        for held in (None, True, False):
            for age in (200, 600, 5000):
                verdict = decide(run("running", age_seconds=age), counted(found_in, held), OPTIONS)
                assert verdict.action is not Action.REQUEUE
