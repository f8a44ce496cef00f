"""Liveness, readiness (PostgreSQL, Redis, RabbitMQ), and the Prometheus metrics."""

from __future__ import annotations

import json

import falcon.testing
from runwatch.api.app import create_app
from runwatch.api.probes import amqp_ping, redis_ping
from runwatch.api.store import Store
from sqlalchemy import text

from tests.support.api_client import get
from tests.support.net import free_port


def test_live_is_always_200(client):
    assert client.simulate_get("/health/live").json == {"status": "live"}


def test_ready_when_postgresql_and_redis_answer(client):
    result = client.simulate_get("/health/ready")
    assert result.status_code == 200 and result.json["checks"] == {"postgresql": "ok", "redis": "ok"}


def test_not_ready_names_redis_when_it_is_down(store):
    client = falcon.testing.TestClient(create_app(store, redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    result = client.simulate_get("/health/ready")
    assert result.status_code == 503 and result.headers["content-type"] == "application/problem+json"
    assert result.json["checks"] == {"postgresql": "ok", "redis": "down"} and "redis" in result.json["detail"]


def test_ready_probes_rabbitmq_when_the_workers_use_it(store, rabbitmq_url):
    client = falcon.testing.TestClient(create_app(store, rabbitmq_url=rabbitmq_url))
    result = client.simulate_get("/health/ready")
    assert result.status_code == 200
    assert result.json["checks"] == {"postgresql": "ok", "redis": "not_configured", "rabbitmq": "ok"}
    down = falcon.testing.TestClient(create_app(store, rabbitmq_url=f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F"))
    result = down.simulate_get("/health/ready")
    assert (
        result.status_code == 503
        and result.json["checks"]["rabbitmq"] == "down"
        and "rabbitmq" in result.json["detail"]
    )


def test_not_ready_names_postgresql_when_it_is_down(servers):
    store = Store(f"postgresql://postgres@127.0.0.1:{free_port()}/none")
    client = falcon.testing.TestClient(create_app(store, redis_url=servers.redis_url))
    result = client.simulate_get("/health/ready")
    assert result.status_code == 503 and result.json["checks"] == {"postgresql": "down", "redis": "ok"}
    assert "postgresql" in result.json["detail"]


def test_redis_ping_speaks_auth_and_fails_cleanly(servers):
    assert redis_ping(servers.redis_url)
    assert not redis_ping(f"redis://127.0.0.1:{free_port()}/0")
    assert not redis_ping("redis://no-such-host.invalid:6379/0")


def test_amqp_ping_knows_rabbitmq_from_another_server(rabbitmq_url, servers):
    assert amqp_ping(rabbitmq_url)
    redis_port = servers.redis_url.rsplit(":", 1)[1].split("/")[0]
    assert not amqp_ping(f"amqp://127.0.0.1:{redis_port}/%2F")  # answers, but not in AMQP
    assert not amqp_ping(f"amqp://127.0.0.1:{free_port()}/%2F")


def test_metrics_count_runs_reconciliations_and_latency(client, tokens, world, engine):
    get(client, "/api/admin/operations", tokens.all)
    get(client, "/api/admin/operations/1", tokens.all)
    with engine.begin() as conn:
        conn.execute(text("""
            INSERT INTO maintenance_passes (name, started_at, finished_at, duration_ms, result)
            VALUES ('healer', now() - interval '3 seconds', now() - interval '2 seconds', 1500,
                    CAST(:result AS jsonb))
        """), {"result": json.dumps({"candidates": 4, "reconciled": 1, "note": "text is skipped"})})  # fmt: skip
    body = client.simulate_get("/metrics").text
    assert 'runwatch_runs{freshness="likely_stale",status="queued"} 4.0' in body
    assert 'runwatch_runs{freshness="reconciled_failed",status="completed"} 12.0' in body
    assert 'runwatch_runs{freshness="terminal_normal",status="completed"} 16.0' in body
    assert 'runwatch_reconciled_runs{reason_code="run.stale_running",source="scheduled_reconciler"} 4.0' in body
    # NOTE: label "pass", not "job": Prometheus sets "job" on every target it scrapes.
    assert 'runwatch_pass_last_duration_seconds{pass="healer"} 1.5' in body
    assert 'runwatch_pass_last_result{key="candidates",pass="healer"} 4.0' in body
    assert 'runwatch_pass_last_status{pass="healer",status="ok"} 1.0' in body
    assert 'job="' not in body
    assert 'key="note"' not in body and "runwatch_ledger_up 1.0" in body
    latency = 'runwatch_api_request_duration_seconds_count{method="GET",route="/api/admin/operations",status="200"}'
    assert latency in body
    assert 'route="/api/admin/operations/{operationRun}"' in body


def test_metrics_say_the_ledger_is_down_instead_of_failing(servers):
    client = falcon.testing.TestClient(create_app(Store(f"postgresql://postgres@127.0.0.1:{free_port()}/none")))
    result = client.simulate_get("/metrics")
    assert result.status_code == 200 and "runwatch_ledger_up 0.0" in result.text
    assert "runwatch_runs{" not in result.text
