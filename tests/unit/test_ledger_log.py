"""Which events get a row of their own in run_events: one per transition, never a plain enqueue."""

from __future__ import annotations

import pytest

from runwatch import events as ev
from runwatch.ledger import logged


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({}, False),  # the run row's creation records a plain enqueue
        ({"delay_ms": 500}, True),
        ({"moved_out_of_delay_queue": True}, True),
        ({"requeued_from": "8b0b1fd6"}, True),  # an operator's requeue is evidence in the log
    ],
)
def test_an_enqueue_is_logged_only_when_it_says_more_than_the_run_row(extra, expected):
    assert logged(ev.new_event(ev.ENQUEUED, "m-1", 1.0, {"queue": "q"}, **extra)) is expected


@pytest.mark.parametrize("kind", sorted(ev.KINDS - {ev.ENQUEUED}))
def test_every_other_transition_is_logged(kind):
    assert logged({"kind": kind, "message_id": "m-1", "id": "e-1"})
