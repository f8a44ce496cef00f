"""``runwatch heal --explain`` judges a run with the options the passes use, not the defaults."""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timedelta

import pytest
from runwatch.bridge.keys import Keys
from sqlalchemy import text

from runwatch.cli import main
from runwatch.variables import VARIABLES

#: Running for 700 s with a 60 s time limit, held by a worker that still heartbeats.
_SLOW_RUN = text("""
INSERT INTO operation_runs (message_id, type, queue_name, actor_name, status, outcome, created_at, started_at,
    last_progress_at, worker_id, redis_message_id, time_limit_ms, queued_stale_seconds, running_stale_seconds,
    threshold_source)
VALUES (:message_id, 't', 'q', 'a', 'running', 'pending', now() - interval '700 seconds',
    now() - interval '700 seconds', now() - interval '700 seconds', 'alive', 'rid-1', 60000, 60, 60, 'default')
RETURNING id
""")


@pytest.mark.parametrize(
    "margin, seconds_past_start, next_step",
    [
        (None, 60 + 60, "the next pass reconciles it as run.stale_running"),
        ("86400", 60 + 86400, "the next pass leaves it: slow, not dead: its worker heartbeats"),
    ],
)
def test_explain_uses_the_configured_ceiling_margin(
    engine, database_url, servers, namespace, redis_client, monkeypatch, capsys, margin, seconds_past_start, next_step
):
    redis_client.zadd(Keys(namespace).heartbeats(), {"alive": time.time() * 1000})
    with engine.begin() as conn:
        run_id = conn.execute(_SLOW_RUN, {"message_id": uuid.uuid4().hex}).scalar()
        started_at = conn.execute(text("SELECT started_at FROM operation_runs WHERE id = :i"), {"i": run_id}).scalar()
    for var in VARIABLES:
        monkeypatch.delenv(var.name, raising=False)
    monkeypatch.setenv("RUNWATCH_DATABASE_URL", database_url)
    monkeypatch.setenv("RUNWATCH_REDIS_URL", servers.redis_url)
    monkeypatch.setenv("RUNWATCH_EVENT_STREAM", f"{namespace}:events")
    if margin is not None:
        monkeypatch.setenv("RUNWATCH_CEILING_MARGIN_SECONDS", margin)

    assert main(["heal", "--namespace", namespace, "--explain", str(run_id), "--format", "json"]) == 0
    explained = json.loads(capsys.readouterr().out)
    assert explained["next"] == next_step
    ceiling = datetime.fromisoformat(explained["evidence_now"]["hard_ceiling_at"])
    assert ceiling - started_at == timedelta(seconds=seconds_past_start)
    with engine.connect() as conn:  # an explanation changes nothing
        status = conn.execute(text("SELECT status FROM operation_runs WHERE id = :i"), {"i": run_id}).scalar()
    assert status == "running"
