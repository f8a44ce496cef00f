"""The dead-letter store interface: its in-memory twin, and every implementation keeping to it."""

from __future__ import annotations

import inspect

import dramatiq
import pytest
from runwatch.bridge.letter_store import LetterStore, UnknownQueue, location
from runwatch.bridge.memory_letters import MemoryLetters
from runwatch.bridge.rabbitmq_letters import RabbitmqLetters, _dead_at, _letter
from runwatch.bridge.redis_letters import RedisLetters
from runwatch.bridge.requeue import _fresh_message, requeued_message_id


def _message(queue: str = "jobs", actor: str = "job", n: int = 0) -> dramatiq.Message:
    return dramatiq.Message(queue, actor, (n,), {}, {"retries": 3, "traceback": "tb", "runwatch_tenant_id": 4})


#: What the interface names: its methods and its class attributes.
_METHODS = [
    name
    for name, member in vars(LetterStore).items()
    if inspect.isfunction(member) and (not name.startswith("_") or name in ("__enter__", "__exit__"))
]
_ATTRIBUTES = list(LetterStore.__annotations__)


@pytest.mark.parametrize("store", [RedisLetters, RabbitmqLetters, MemoryLetters])
def test_every_store_has_the_interface_with_the_same_parameters(store):
    assert {"scan", "move_to_queue", "__enter__"} <= set(_METHODS) and _ATTRIBUTES == ["broker", "transient_errors"]
    assert all(hasattr(store, name) for name in _ATTRIBUTES)
    for name in _METHODS:
        wanted = list(inspect.signature(getattr(LetterStore, name)).parameters)
        assert list(inspect.signature(getattr(store, name)).parameters) == wanted, name


def test_the_twin_scans_oldest_first_per_queue_and_filters_by_actor():
    letters = MemoryLetters()
    first, second = _message(n=1), _message(actor="other", n=2)
    letters.add("jobs", first, dead_at=10)
    letters.add("jobs", second, dead_at=20)
    letters.add("mail", _message("mail"), dead_at=5)
    assert letters.queues() == ["jobs", "mail"]
    assert [d.message_id for d in letters.scan(queue="jobs")] == [first.message_id, second.message_id]
    assert [d.message_id for d in letters.scan(actor="other")] == [second.message_id]
    assert letters.entries("jobs") == [(first.message_id, 10), (second.message_id, 20)]
    assert [d.message_id for d in letters.fetch("jobs", letters.entries("jobs")[1:])] == [second.message_id]
    with pytest.raises(UnknownQueue):
        letters.check_queue("nowhere")


def test_the_twin_moves_a_letter_once_and_removes_it_once():
    letters = MemoryLetters()
    letter = letters.add("jobs", _message(), dead_at=1)
    fresh = _fresh_message(letter.message, requeued_message_id(letter), 7, letters.fresh_options())
    assert letters.move_to_queue(letter, fresh)
    assert not letters.move_to_queue(letter, fresh)  # taken: nothing enqueued a second time
    assert letters.queued == {"jobs": [fresh]} and not letters.remove(letter)
    assert fresh.options["runwatch_retry_of"] == 7 and "retries" not in fresh.options
    assert "redis_message_id" not in fresh.options  # only a Redis store adds one


def test_an_undecodable_letter_in_the_twin_is_named_by_its_location():
    letters = MemoryLetters()
    junk = letters.add("jobs", None, dead_at=1)
    assert junk.message is None and junk.decode_error and location(letters, junk) == "memory:jobs.XQ/undecodable-0"
    assert junk.redis_message_id is None  # not a Redis letter


class _Props:
    def __init__(self, headers=None, timestamp=None):
        self.headers, self.timestamp = headers, timestamp


def test_a_rabbitmq_letter_dates_from_its_newest_x_death():
    from datetime import UTC, datetime

    message = _message()
    deaths = [
        {"queue": "jobs", "time": datetime(2026, 1, 2, tzinfo=UTC)},
        {"queue": "jobs.DQ", "time": datetime(2026, 1, 1, tzinfo=UTC)},
    ]
    letter = _letter("jobs", _Props({"x-death": deaths}), message.encode())
    assert (letter.letter_id, letter.dead_at) == (message.message_id, datetime(2026, 1, 2, tzinfo=UTC).timestamp())
    assert letter.redis_message_id is None and letter.broker == "rabbitmq"
    assert _dead_at(_Props(), message) == message.message_timestamp / 1000  # published by hand: its send time
    junk = _letter("jobs", _Props(), b"\x00")
    assert junk.message is None and junk.letter_id.startswith("body-sha256:") and junk.decode_error
