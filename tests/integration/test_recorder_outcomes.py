"""Outcomes a job declares, retries, and the terminal failures Dramatiq dead-letters."""

from __future__ import annotations

import threading

import dramatiq
import pytest
from runwatch.workers import current_run

from runwatch.errors import InvalidSummary

FAST_RETRY = {"min_backoff": 10, "max_backoff": 20}


def test_partially_succeeded_keeps_counts_and_message(harness, worker):
    @dramatiq.actor(queue_name="q", runwatch_summary_keys=("invoices",))
    def partial():
        current_run().summary(invoices=10, created=8)
        current_run().partially_succeeded("2 invoices skipped", skipped=2)

    message = partial.send()
    harness.settle("q")
    run = harness.run(message.message_id)
    assert (run["status"], run["outcome"]) == ("completed", "partially_succeeded")
    assert run["summary_counts"] == {"invoices": 10, "created": 8, "skipped": 2}
    assert run["operator_message"] == "2 invoices skipped" and run["reconciled_at"] is None


def test_blocked_and_handled_failed_are_terminal_normal_and_acked(harness, worker):
    @dramatiq.actor(queue_name="q", max_retries=3)
    def refuse(kind):
        if kind == "block":
            current_run().block("tenant.not_operable", "Tenant is suspended")
        else:
            current_run().fail("billing.remote_rejected", "The billing provider rejected the batch")

    blocked, failed = refuse.send("block"), refuse.send("fail")
    harness.settle("q")
    run = harness.run(blocked.message_id)
    assert (run["outcome"], run["failure_summary"]) == (
        "blocked",
        [{"code": "tenant.not_operable", "message": "Tenant is suspended"}],
    )
    run = harness.run(failed.message_id)
    assert run["outcome"] == "failed" and run["reconciled_at"] is None and run["attempts"] == 1
    assert run["failure_summary"][0]["code"] == "billing.remote_rejected"
    assert harness.broker.client.zcard(f"{harness.broker.namespace}:q.XQ") == 0  # acked, not dead-lettered


def test_retried_then_successful_job_is_one_run_with_attempts(harness, worker):
    calls = []

    @dramatiq.actor(queue_name="q", max_retries=5, **FAST_RETRY)
    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("transient: password=hunter2")

    message = flaky.send()
    harness.settle("q")
    run = harness.run(message.message_id)
    assert (run["status"], run["outcome"]) == ("completed", "succeeded")
    assert run["attempts"] == 3 and run["deliveries"] == 3
    assert run["last_error"]["exception_type"] == "RuntimeError"
    assert "hunter2" not in str(run["last_error"])
    kinds = [e["kind"] for e in harness.events(message.message_id)]
    assert kinds.count("attempt_failed") == 2 and kinds[-1] == "completed"
    failed_events = [e for e in harness.events(message.message_id) if e["kind"] == "attempt_failed"]
    assert all(e["details"]["next_retry_at"] for e in failed_events)


class _HoldFailedAttempt(dramatiq.Middleware):
    """Holds a failed attempt after Retries re-enqueued it, before the recorder's hook, until the retry is acked.

    Its after hooks run just before the recorder's (it is added after it; after hooks run in reverse).
    """

    def __init__(self) -> None:
        self.succeeded = threading.Event()
        self.retry_acked = threading.Event()

    def after_process_message(self, broker, message, *, result=None, exception=None):
        if exception is None:
            self.succeeded.set()
        elif not message.failed:
            assert self.retry_acked.wait(15), "the retry was never acked while its failed attempt was held"

    def after_ack(self, broker, message):
        if self.succeeded.is_set():  # acked after every after_process_message hook, the recorder's included
            self.retry_acked.set()


def test_a_failed_attempt_is_dated_before_its_retry_even_when_its_hook_runs_late(harness, worker):
    # NOTE: on a loaded host a failed attempt's thread can lose the CPU between Retries'
    # re-enqueue and our hook, and its retry finish first. Its history must still read failed,
    # then completed (a CI run on RabbitMQ saw it the other way round).
    hold = _HoldFailedAttempt()
    harness.broker.add_middleware(hold, after=type(harness.recorder))
    calls = []

    @dramatiq.actor(queue_name="q", max_retries=1, **FAST_RETRY)
    def flaky():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("transient")

    message = flaky.send()
    harness.settle("q")
    assert hold.retry_acked.is_set()
    events = [e for e in harness.events(message.message_id) if e["kind"] in ("attempt_failed", "completed")]
    assert [e["kind"] for e in events] == ["attempt_failed", "completed"]
    assert events[0]["at"] < events[1]["at"]


def test_retries_exhausted_is_reconciled_by_the_failure_callback(harness, worker):
    @dramatiq.actor(queue_name="q", max_retries=1, **FAST_RETRY)
    def doomed():
        raise ValueError("boom")

    message = doomed.send()
    harness.settle("q")
    run = harness.run(message.message_id)
    assert (run["status"], run["outcome"], run["reconciliation_source"]) == ("completed", "failed", "failed_callback")
    assert run["reason_code"] == "run.queue_failure_bridge"
    evidence = run["reconciliation_evidence"]
    assert evidence["exception_type"] == "ValueError" and evidence["retries"] == 2 and evidence["max_retries"] == 1
    assert evidence["dead_letter_key"] == f"{harness.broker.namespace}:q.XQ" and evidence["traceback_digest"]
    assert "boom" not in (run["operator_message"] or "")


def test_time_limit_is_infrastructure_abandonment(harness, worker):
    stop = threading.Event()

    @dramatiq.actor(queue_name="q", max_retries=0, time_limit=200)
    def slow():
        while not stop.wait(0.01):
            pass

    message = slow.send()
    try:
        harness.settle("q")
    finally:
        stop.set()
    run = harness.run(message.message_id)
    assert run["reason_code"] == "run.infrastructure_timeout_or_abandonment"
    assert run["reconciliation_evidence"]["exception_type"] == "TimeLimitExceeded"


def test_age_limit_skip_is_infrastructure_abandonment(harness, worker):
    @dramatiq.actor(queue_name="q", max_age=60_000)
    def old():
        raise AssertionError("must not run")

    # NOTE: a message stamped two minutes ago is past its age limit deterministically.
    message = old.message().copy(message_timestamp=old.message().message_timestamp - 120_000)
    harness.broker.enqueue(message)
    harness.settle("q")
    run = harness.run(message.message_id)
    assert run["reason_code"] == "run.infrastructure_timeout_or_abandonment"
    assert run["reconciliation_evidence"]["exception_type"] == "SkipMessage"


def test_unknown_summary_key_fails_the_job_at_the_call_site(harness, worker):
    errors = []

    @dramatiq.actor(queue_name="q", max_retries=0)
    def sloppy():
        try:
            current_run().summary(colour=3)
        except InvalidSummary as exc:
            errors.append(str(exc))
            raise

    message = sloppy.send()
    harness.settle("q")
    assert errors and "colour" in errors[0]
    assert harness.run(message.message_id)["outcome"] == "failed"


def test_unknown_actor_is_dead_lettered_and_recorded(harness, worker):
    message = dramatiq.Message(queue_name="q", actor_name="no_such_actor", args=(), kwargs={}, options={})
    harness.broker.declare_queue("q")
    harness.broker.enqueue(message)
    harness.settle("q")
    run = harness.run(message.message_id)
    assert run["reason_code"] == "run.queue_failure_bridge" and run["type"] == "no_such_actor"
    assert run["reconciliation_evidence"]["exception_type"] == "ActorNotFound"


def test_delayed_message_is_not_completed_by_its_move_out_of_the_delay_queue(harness, worker):
    release = threading.Event()
    started = threading.Event()

    @dramatiq.actor(queue_name="q")
    def later():
        started.set()
        release.wait(60)  # released by the test; the bound only ends a failed test

    message = later.send_with_options(delay=50)
    assert started.wait(60)
    harness.recorder.shipper.flush()
    harness.drainer.drain_until_empty()
    # NOTE: the move out of q.DQ fired after_ack already; the run must still be running.
    assert harness.run(message.message_id)["status"] == "running"
    release.set()
    harness.settle("q")
    assert harness.run(message.message_id)["outcome"] == "succeeded"


def test_untracked_actors_are_not_recorded(harness, worker):
    @dramatiq.actor(queue_name="q", runwatch_track=False)
    def quiet():
        pass

    message = quiet.send()
    harness.settle("q")
    with pytest.raises(AssertionError, match="no run"):
        harness.run(message.message_id)


def test_a_message_a_middleware_skips_without_failing_it_is_blocked_not_left_running(harness, worker):
    """Acked without running (a dedupe or abort middleware): over, and says why; not a stale run later."""

    class SkipAll(dramatiq.Middleware):
        def before_process_message(self, broker, message):
            if message.actor_name == "never_runs":
                raise dramatiq.middleware.SkipMessage()

    harness.broker.add_middleware(SkipAll())

    @dramatiq.actor(queue_name="q")
    def never_runs():
        raise AssertionError("must not run")

    message = never_runs.send()
    harness.settle("q")
    run = harness.run(message.message_id)
    assert (run["status"], run["outcome"], run["reconciled_at"]) == ("completed", "blocked", None)
    assert run["failure_summary"] == [{"code": "job.skipped", "message": "Skipped by a middleware before it ran"}]
    assert harness.broker.client.zcard(f"{harness.broker.namespace}:q.XQ") == 0  # acked, not dead-lettered
