"""What RabbitMQ's queue counts say about a run's message (``rabbitmq_locator.observation``), and
the management API's answer read (``management.parse_unacked``): no servers."""

from __future__ import annotations

import pytest
from runwatch.bridge.management import ManagementUnavailable, _split_auth, parse_unacked
from runwatch.bridge.rabbitmq_locator import TIME_ALONE, QueueFacts, RabbitmqLocator, observation

GONE = QueueFacts("q.DQ", None, None, None)


def facts(ready=0, consumers=0, unacked=None, dq_ready=0, dq_consumers=0, dq_unacked=None):
    return QueueFacts("q", ready, consumers, unacked), QueueFacts("q.DQ", dq_ready, dq_consumers, dq_unacked)


def test_a_missing_queue_means_the_message_is_gone():
    obs = observation(QueueFacts("q", None, None, None), GONE, unacked_unknown=TIME_ALONE)
    assert (obs.checked, obs.counted_only, obs.found_in, obs.may_be_held) == (True, True, None, False)
    assert "does not exist" in obs.detail and obs.looked_in == ("q", "q.DQ")
    assert obs.queue_counts == {"q": {"exists": False}, "q.DQ": {"exists": False}}


@pytest.mark.parametrize(("ready", "dq_ready", "where"), [(3, 0, "queue"), (0, 2, "delay_queue"), (1, 1, "queue")])
def test_ready_messages_are_found_in_the_queue_that_holds_them(ready, dq_ready, where):
    obs = observation(*facts(ready=ready, dq_ready=dq_ready, consumers=1), unacked_unknown=TIME_ALONE)
    assert obs.found_in == where and obs.may_be_held is None
    assert f"{ready} in q, {dq_ready} in q.DQ" in obs.detail and "time alone" in obs.detail
    assert obs.queue_counts["q"] == {"ready": ready, "consumers": 1, "unacked": "unknown"}


def test_empty_queues_without_consumers_hold_nothing_even_without_the_management_api():
    obs = observation(*facts(), unacked_unknown=TIME_ALONE)
    assert (obs.found_in, obs.may_be_held) == (None, False)
    assert "0 consumers: nobody can hold the message" in obs.detail and "time alone" in obs.detail


def test_empty_queues_with_consumers_and_no_management_api_cannot_tell():
    obs = observation(*facts(consumers=2, dq_consumers=2), unacked_unknown=TIME_ALONE)
    assert (obs.found_in, obs.may_be_held) == (None, None)
    assert "4 consumers, unacked messages unknown" in obs.detail and "time alone" in obs.detail


def test_the_management_api_tells_held_from_not_held():
    held = observation(*facts(consumers=1, unacked=2, dq_consumers=1, dq_unacked=0), unacked_unknown=None)
    assert held.may_be_held is True and "holding 2 unacked message(s)" in held.detail
    assert held.queue_counts["q"] == {"ready": 0, "consumers": 1, "unacked": 2}
    idle = observation(*facts(consumers=1, unacked=0, dq_consumers=1, dq_unacked=0), unacked_unknown=None)
    assert idle.may_be_held is False and "0 unacked messages (management API)" in idle.detail
    assert "time alone" not in idle.detail


def test_a_queue_without_statistics_yet_is_unknown_even_with_the_management_api():
    obs = observation(*facts(consumers=1, unacked=None, dq_unacked=0), unacked_unknown=None)
    assert obs.may_be_held is None


def test_the_management_answer_is_read_per_queue():
    listed = [
        {"name": "q", "messages_unacknowledged": 4},
        {"name": "q.DQ"},  # no statistics yet
        {"name": "other", "messages_unacknowledged": 9},
    ]
    assert parse_unacked(listed, ["q", "q.DQ", "missing"]) == {"q": 4, "q.DQ": None, "missing": None}
    with pytest.raises(ManagementUnavailable):
        parse_unacked({"error": "not_authorised"}, ["q"])


def test_management_credentials_come_from_the_url_else_from_the_amqp_user():
    bare, auth = _split_auth("http://ops:s%40cret@mq.example:15672/", ("guest", "guest"))
    assert bare == "http://mq.example:15672" and auth == {"Authorization": "Basic b3BzOnNAY3JldA=="}
    bare, auth = _split_auth("https://mq.example/rabbit", ("guest", "guest"))
    assert bare == "https://mq.example/rabbit" and auth == {"Authorization": "Basic Z3Vlc3Q6Z3Vlc3Q="}


def test_rabbitmq_requeues_and_dead_letters_nothing_by_id():
    locator = RabbitmqLocator("amqp://guest:guest@127.0.0.1:1/%2F", event_queue="events")
    assert locator.requeue_in_flight("q", "w", "id") is False
    assert locator.dead_letter_if_queued("q", "id") is None
