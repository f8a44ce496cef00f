"""The drain child process gets the worker's settings, whatever the inherited environment says."""

import redis
from runwatch.workers import drain_process
from runwatch.workers.transport import Transport

from runwatch.settings import Settings


def test_the_child_environment_carries_the_settings_given_in_code(monkeypatch):
    started = []
    monkeypatch.setattr(drain_process.subprocess, "Popen", lambda argv, env: started.append((argv, env)))
    monkeypatch.setenv("RUNWATCH_QUEUED_STALE_SECONDS", "5")  # the worker was given other settings in code
    monkeypatch.setenv("RUNWATCH_HEAL_INTERVAL_SECOND", "1")  # a typo: not passed on to be warned about twice
    monkeypatch.setenv("HOME_OF_TEST", "kept")
    settings = Settings(
        database_url="postgresql+psycopg://u:pw@db/ledger", queued_stale_seconds=77, drain_batch=9, event_stream="s"
    )
    client = redis.Redis(host="cache", port=6380, db=3, password="pw")  # NOTE: never connects
    drain_process.spawn(settings, Transport("redis", redis_client=client))

    [(argv, env)] = started
    assert argv[-2:] == ["-m", "runwatch.workers.drain_process_main"]
    assert env["HOME_OF_TEST"] == "kept" and "RUNWATCH_HEAL_INTERVAL_SECOND" not in env
    assert env["RUNWATCH_REDIS_URL"] == "redis://:pw@cache:6380/3"
    assert Settings.from_env(env) == Settings(
        database_url="postgresql+psycopg://u:pw@db/ledger",
        redis_url="redis://:pw@cache:6380/3",
        event_transport="redis",
        queued_stale_seconds=77,
        drain_batch=9,
        event_stream="s",
    )


def test_a_rabbitmq_child_reaches_the_same_rabbitmq_and_no_redis(monkeypatch):
    started = []
    monkeypatch.setattr(drain_process.subprocess, "Popen", lambda argv, env: started.append((argv, env)))
    monkeypatch.delenv("RUNWATCH_REDIS_URL", raising=False)
    settings = Settings(database_url="postgresql+psycopg://u@db/ledger", event_stream="s")
    drain_process.spawn(settings, Transport("rabbitmq", amqp_url="amqp://u:pw@mq:5672/vh"))

    [(_, env)] = started
    child = Settings.from_env(env)
    assert (child.event_transport, child.rabbitmq_url, child.redis_url) == ("rabbitmq", "amqp://u:pw@mq:5672/vh", None)
    assert Transport.from_settings(child).kind == "rabbitmq"
