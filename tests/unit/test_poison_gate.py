"""The poison gate without PostgreSQL: who is asked, and that an error lets the message run."""

from __future__ import annotations

from types import SimpleNamespace

from runwatch.workers.poison_gate import PoisonGate


class FailingEngine:
    """A ledger that does not answer; counts how often it was asked."""

    def __init__(self) -> None:
        self.asked = 0

    def begin(self):
        self.asked += 1
        raise ConnectionError("ledger down")


def message(redelivered):
    return SimpleNamespace(message_id="m1", redelivered=redelivered)


def test_without_an_engine_nothing_is_refused():
    assert PoisonGate(None).refuse(message(True)) is False


def test_only_redeliveries_ask_the_ledger():
    engine = FailingEngine()
    gate = PoisonGate(engine)
    assert gate.refuse(message(False)) is False
    assert gate.refuse(SimpleNamespace(message_id="m1")) is False  # a broker without redelivery flags (Redis)
    assert engine.asked == 0


def test_a_ledger_error_lets_the_message_run_and_is_not_asked_again_during_the_backoff():
    engine = FailingEngine()
    gate = PoisonGate(engine, backoff_seconds=3600)
    assert gate.refuse(message(True)) is False
    assert gate.refuse(message(True)) is False
    assert engine.asked == 1
    assert PoisonGate(engine, backoff_seconds=0).refuse(message(True)) is False and engine.asked == 2
