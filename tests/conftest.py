"""Shared fixtures: real PostgreSQL and Redis, owned by this test session.

Servers come from ``RUNWATCH_DATABASE_URL`` / ``RUNWATCH_REDIS_URL`` when set (CI sets them to
the machine's services), else from the embedded default. Each session creates its own database
and uses its own Redis key namespace, so a developer's demo data is never touched.
"""

from __future__ import annotations

import os
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis
from sqlalchemy import create_engine, text

from runwatch.settings import normalize_database_url


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("runwatch acceptance")
    group.addoption(
        "--scale",
        choices=("quick", "large"),
        default=os.environ.get("RUNWATCH_ACCEPTANCE_SCALE", "quick"),
        help="size of the fault-injection scenarios in tests/acceptance (default quick)",
    )
    group.addoption("--acceptance-report", default=None, help="write the acceptance figures as JSON to this file")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test has a node id of its own: pytest-xdist schedules tests by node id, and of tests
    that share one it runs one, silently (schemathesis' per-operation tests did, under pytest 9.2)."""
    seen = Counter(item.nodeid for item in items)
    if shared := sorted(nodeid for nodeid, count in seen.items() if count > 1):
        raise pytest.UsageError(f"tests share a node id (pytest-xdist would run one of each): {shared}")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    from tests.acceptance import summary

    summary.collect(report)


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    from tests.acceptance import summary

    summary.write(terminalreporter, config.getoption("--acceptance-report"))


#: Test processes of ``-n auto`` (pyproject's addopts) for the whole suite or a directory of it.
#: The suite mostly waits (worker processes, heartbeat timeouts, servers starting), so more
#: processes than the machine's cores pay off. On 2 cores 3 and 4 tied idle (4.7-4.8 min, from
#: 10 serially); with both cores loaded (stress-ng --cpu 2), 4 took 6.5 min and 3 took 7.
TEST_WORKERS = 4


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: ``PYTEST_XDIST_AUTO_NUM_WORKERS`` (pytest-xdist's own variable), else TEST_WORKERS;
    0 (all in this process, as without pytest-xdist: ``-s`` and a debugger work, nothing to start)
    when the run names test files or tests rather than a directory, and for the large acceptance
    scale (heavy scenarios, each timed: one at a time, as they were measured)."""
    if workers := os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return int(workers)
    if config.getoption("--scale") == "large":
        return 0
    here = config.invocation_params.dir
    if all((here / arg.split("::", 1)[0]).is_file() for arg in config.args):
        return 0
    return TEST_WORKERS


@dataclass(frozen=True)
class Servers:
    database_url: str  # server-level URL (the maintenance database)
    redis_url: str


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    db_url, redis_url = os.environ.get("RUNWATCH_DATABASE_URL"), os.environ.get("RUNWATCH_REDIS_URL")
    if db_url and redis_url:
        yield Servers(normalize_database_url(db_url), redis_url)
        return
    from runwatch import embedded

    # NOTE: running() stops only servers it started itself, never a developer's demo servers. Under
    # pytest-xdist every worker is a session of its own that ends when its share is done: each starts
    # servers in a directory of its own, else the first to finish would stop the servers the others use.
    data_dir = tmp_path_factory.mktemp("embedded-servers") if os.environ.get("PYTEST_XDIST_WORKER") else None
    with embedded.running(data_dir, log=lambda *_: None) as started:
        yield Servers(normalize_database_url(db_url or started.database_url), redis_url or started.redis_url)


@pytest.fixture(scope="session")
def session_token() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def database_url(servers: Servers, session_token: str) -> Iterator[str]:
    """A fresh, migrated database for this test session, dropped at the end."""
    from runwatch.migrate import upgrade

    name = f"runwatch_test_{session_token}"
    admin = create_engine(servers.database_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = servers.database_url.rsplit("/", 1)[0] + "/" + name
    upgrade(url)
    yield url
    from runwatch import db

    for (_pid, engine_url), engine in list(db._engines.items()):
        if engine_url == url:
            engine.dispose()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def engine(database_url: str):
    from runwatch.db import engine_for

    engine = engine_for(database_url)
    yield engine
    with engine.begin() as conn:  # every table but the migration bookkeeping, so new tables are covered
        tables = conn.execute(
            text(
                "SELECT string_agg(quote_ident(tablename), ', ') FROM pg_tables "
                "WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
            )
        ).scalar()
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture(scope="session")
def redis_client(servers: Servers) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(servers.redis_url)
    yield client
    client.close()


@pytest.fixture
def namespace(redis_client: redis.Redis, session_token: str) -> Iterator[str]:
    """A Redis key prefix owned by one test; its keys are deleted afterwards."""
    ns = f"rwtest-{session_token}-{uuid.uuid4().hex[:6]}"
    yield ns
    keys = list(redis_client.scan_iter(match=f"{ns}*", count=1000))
    if keys:
        redis_client.delete(*keys)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Headless Chromium, one per test module (the console's browser tests)."""
    from tests.support.browser import launched

    with launched() as browser:
        yield browser


@pytest.fixture
def page(browser, base_url) -> Iterator[object]:
    """A fresh browser tab on the module's ``base_url`` (its own cookies), watched for off-origin
    requests and console errors (``page.watch``)."""
    from tests.support.browser import WAIT_MS, Watch

    context = browser.new_context(base_url=base_url)
    tab = context.new_page()
    tab.set_default_timeout(WAIT_MS)
    tab.watch = Watch(tab)
    yield tab
    context.close()


@pytest.fixture(scope="session")
def rabbitmq_url(session_token: str) -> Iterator[str]:
    """This session's RabbitMQ (its own virtual host where ``rabbitmqctl`` works); skips where none answers."""
    from tests.support import rabbitmq

    why = rabbitmq.unanswered(rabbitmq.server_url())
    if why:
        pytest.skip(why)
    with rabbitmq.session_vhost(rabbitmq.server_url(), session_token) as url:
        yield url
