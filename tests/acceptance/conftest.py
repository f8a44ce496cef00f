"""The acceptance harness: its own PostgreSQL, Redis and RabbitMQ, real worker processes, one checker.

The servers are the embedded default started in a temporary directory, and a RabbitMQ node of the
suite's own (tests/support/rabbit_node.py, started by the first RabbitMQ scenario), never the
machine's or a developer's: a scenario stops and restarts them. Each scenario starts from an empty
ledger and an empty broker, runs its processes, waits for the ledger to settle, then hands the
final state to the history checker (checker.py); any violation fails the scenario and is listed.

The ``world`` fixture runs on Redis; ``@pytest.mark.parametrize("world", BROKERS, indirect=True)``
runs a broker-neutral scenario on each broker, with the same checker.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from runwatch.bridge import amqp
from sqlalchemy import create_engine, text

from runwatch import embedded
from runwatch.migrate import upgrade
from runwatch.settings import DEFAULT_EVENT_STREAM
from tests.support import rabbit_node

from . import summary
from .actors import QUEUE
from .world import SCALES, Scale, World


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Scenarios get the time their scale needs, not the suite's default per-test timeout."""
    seconds = 900 if config.getoption("--scale") == "large" else 240
    for item in items:
        if item.path.name.startswith("test_faults"):
            item.add_marker(pytest.mark.timeout(seconds))


@pytest.fixture(scope="session")
def scale(pytestconfig: pytest.Config) -> Scale:
    return SCALES[pytestconfig.getoption("--scale")]


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[embedded.EmbeddedServers]:
    servers = embedded.start(tmp_path_factory.mktemp("acceptance-servers"), log=lambda *_: None)
    try:
        upgrade(servers.database_url)
        yield servers
    finally:
        embedded.stop(servers)


@pytest.fixture(scope="session")
def rabbit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[rabbit_node.RabbitNode]:
    """The suite's own RabbitMQ node: a scenario restarts it, which must disturb no one else."""
    if reason := rabbit_node.missing():
        pytest.skip(reason)
    with rabbit_node.rabbit_node(tmp_path_factory.mktemp("acceptance-rabbitmq")) as node:
        yield node


def _empty_rabbitmq(node: rabbit_node.RabbitNode) -> None:
    """Delete the queues a scenario uses (the job queue's family, the run-event queue and its rejects)."""
    if not node.answers():  # back up if a failed scenario left it down
        node.restart()
    events = DEFAULT_EVENT_STREAM
    conn = amqp.connect(node.url)
    try:
        channel = conn.channel()
        for name in (*amqp.queue_family(QUEUE), events, amqp.rejected_queue(events)):
            channel.queue_delete(name)
    finally:
        conn.close()


@pytest.fixture
def world(cluster, scale: Scale, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[World]:
    broker = getattr(request, "param", "redis")
    embedded.start(cluster.data_dir, log=lambda *_: None)  # back up if a failed scenario left one down
    node = None
    if broker == "rabbitmq":
        node = request.getfixturevalue("rabbit")
        _empty_rabbitmq(node)
    else:
        client = redis.Redis.from_url(cluster.redis_url)
        client.flushall()
        client.close()
    admin = create_engine(cluster.database_url)
    with admin.begin() as conn:
        tables = conn.execute(text(
            "SELECT string_agg(quote_ident(tablename), ', ') FROM pg_tables "
            "WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
        )).scalar()
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    admin.dispose()
    w = World(cluster, scale, tmp_path, request.node.name.removeprefix("test_"), node)
    try:
        yield w
    finally:
        w.close()
        if w.summary is not None:
            summary.attach(request.node, w.summary)

