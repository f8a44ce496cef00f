"""``locator_for`` picks the healer's evidence by broker; no server is contacted to build one."""

from __future__ import annotations

import pika.exceptions
import pytest
import redis
from runwatch.bridge.keys import Keys
from runwatch.bridge.locator import RedisLocator
from runwatch.bridge.locators import BROKER_ERRORS, locator_for
from runwatch.bridge.rabbitmq_locator import RabbitmqLocator

from runwatch.errors import ConfigError
from runwatch.settings import Settings

AMQP = "amqp://guest:guest@127.0.0.1:5672/%2F"


def test_rabbitmq_when_only_its_url_is_set():
    locator = locator_for(Settings(rabbitmq_url=AMQP, rabbitmq_management_url="http://127.0.0.1:15672"))
    assert isinstance(locator, RabbitmqLocator)
    assert locator._management_url == "http://127.0.0.1:15672" and locator._event_queue == Settings().event_stream


def test_a_worker_names_its_broker_and_its_url():
    settings = Settings(redis_url="redis://127.0.0.1:6379/0")
    assert isinstance(locator_for(settings, kind="rabbitmq", rabbitmq_url=AMQP), RabbitmqLocator)
    with pytest.raises(ConfigError, match="RUNWATCH_RABBITMQ_URL"):
        locator_for(settings, kind="rabbitmq")


def test_redis_by_default_on_the_given_client_and_keys():
    client = redis.Redis.from_url("redis://127.0.0.1:1/0")  # never contacted
    locator = locator_for(Settings(redis_url="redis://127.0.0.1:6379/0"), redis_client=client, keys=Keys("ns"))
    assert isinstance(locator, RedisLocator) and locator._keys == Keys("ns") and locator._client is client


def test_both_brokers_errors_count_as_an_outage():
    assert issubclass(redis.ConnectionError, BROKER_ERRORS)
    assert issubclass(pika.exceptions.AMQPConnectionError, BROKER_ERRORS)
    assert not issubclass(ValueError, BROKER_ERRORS)


def test_run_events_through_redis_beside_rabbitmq_are_checked_in_the_stream():
    client = redis.Redis.from_url("redis://127.0.0.1:1/0")  # never contacted
    settings = Settings(
        rabbitmq_url=AMQP, redis_url="redis://127.0.0.1:1/0", broker="rabbitmq", event_transport="redis"
    )
    locator = locator_for(settings, redis_client=client)
    assert isinstance(locator, RabbitmqLocator)
    assert (
        locator._unapplied.__self__._client is client and locator._unapplied.__self__._stream == settings.event_stream
    )
    assert locator_for(Settings(rabbitmq_url=AMQP))._unapplied is None  # events in RabbitMQ: its event queue


def test_the_delegate_answers_for_the_event_queue():
    locator = RabbitmqLocator(AMQP, event_queue="never-asked", unapplied=lambda: {"m1"})
    assert locator.unapplied_message_ids() == {"m1"}
