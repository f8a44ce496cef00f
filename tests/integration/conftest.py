"""Integration fixtures: a Redis broker with the recorder, a worker and a drainer per test; a bare broker; the API."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import dramatiq
import falcon.testing
import pytest
from dramatiq.brokers.redis import RedisBroker
from runwatch.api.app import create_app
from runwatch.api.store import Store
from runwatch.workers.drainer import Drainer
from sqlalchemy import text

from runwatch import workers
from runwatch.queries import dispose_api_engines
from runwatch.settings import Settings
from runwatch.thresholds import ThresholdPolicy
from runwatch.tokens import create_token
from tests.support.leaks import Api


@dataclass
class Harness:
    broker: RedisBroker
    recorder: workers.Recorder
    drainer: Drainer
    engine: Any

    def settle(self, *queues: str, timeout: float = 20.0) -> None:
        """Wait until the queues are processed, then drain every event into PostgreSQL."""
        for queue in queues:
            self.broker.join(queue, timeout=int(timeout * 1000))
        self.recorder.shipper.flush()
        self.drainer.drain_until_empty()

    def run(self, message_id: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            row = conn.execute(text("SELECT * FROM operation_runs WHERE message_id = :m"), {"m": message_id})
            found = row.mappings().first()
        assert found is not None, f"no run for message {message_id}"
        return dict(found)

    def events(self, message_id: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                text("SELECT * FROM run_events WHERE message_id = :m ORDER BY at, id"), {"m": message_id}
            )
            return [dict(r) for r in rows.mappings()]


@pytest.fixture
def settings(database_url: str, servers, namespace: str) -> Settings:
    return Settings(
        database_url=database_url,
        redis_url=servers.redis_url,
        event_stream=f"{namespace}:runwatch:events",
        flush_interval_ms=10,
        drain_mode="external",
        heal_interval_seconds=0,
        progress_interval_ms=0,
    )


@pytest.fixture
def harness(settings: Settings, servers, namespace: str, engine) -> Iterator[Harness]:
    broker = RedisBroker(url=servers.redis_url, namespace=namespace)
    recorder = workers.install(broker, settings=settings)
    broker.emit_after("process_boot")
    dramatiq.set_broker(broker)
    drainer = Drainer(broker.client, engine, ThresholdPolicy(settings), stream=settings.event_stream, batch_entries=50)
    yield Harness(broker, recorder, drainer, engine)
    recorder.shipper.close()
    broker.close()


@pytest.fixture
def worker(harness: Harness) -> Iterator[dramatiq.Worker]:
    worker = dramatiq.Worker(harness.broker, worker_timeout=50, worker_threads=2)
    worker.start()
    yield worker
    worker.stop()


@pytest.fixture
def bare(servers, namespace):
    """A broker *without* the recorder: its dead letters have no callback, as if it were lost."""
    broker = RedisBroker(url=servers.redis_url, namespace=namespace)
    broker.emit_after("process_boot")
    worker = dramatiq.Worker(broker, worker_timeout=50, worker_threads=2)
    worker.start()
    yield broker
    worker.stop()
    broker.close()


@pytest.fixture
def cli_env(monkeypatch, database_url, servers):
    monkeypatch.setenv("RUNWATCH_DATABASE_URL", database_url)
    monkeypatch.setenv("RUNWATCH_REDIS_URL", servers.redis_url)


@pytest.fixture
def api(database_url: str, engine, servers) -> Iterator[Api]:
    """The monitoring API over the test ledger, with an all-tenants token."""
    with engine.begin() as conn:
        token = create_token(conn, name="leak check", tenant_ids=None)[0]
    yield Api(falcon.testing.TestClient(create_app(Store(database_url, token_cache_seconds=0))), token)
    dispose_api_engines()
