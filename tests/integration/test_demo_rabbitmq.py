"""``runwatch demo --broker rabbitmq``: every outcome and every reconciliation source on RabbitMQ, no Redis."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.support.net import free_port

DEMO_TIMEOUT_SECONDS = 240


def _demo(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RUNWATCH_")}
    return subprocess.run(
        [sys.executable, "-m", "runwatch.cli", "demo", "--broker", "rabbitmq", "--no-serve"],
        env={**clean, **env}, capture_output=True, text=True, timeout=DEMO_TIMEOUT_SECONDS, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def test_the_demo_shows_every_outcome_and_reconciliation_on_rabbitmq(rabbitmq_url, database_url, engine):
    env = {"RUNWATCH_DATABASE_URL": database_url, "RUNWATCH_RABBITMQ_URL": rabbitmq_url,
           "RUNWATCH_METRICS_PORT": str(free_port())}  # fmt: skip
    result = _demo(env)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "RUNWATCH_REDIS_URL" not in out and "RUNWATCH_BROKER=rabbitmq" in out
    for outcome in ("succeeded", "partially_succeeded", "blocked", "failed"):
        assert f" {outcome} " in out, outcome
    for source in ("failed_callback", "scheduled_reconciler", "adapter_reconciler"):
        assert source in out, source
    for reason in ("run.queue_failure_bridge", "run.infrastructure_timeout_or_abandonment", "run.stale_queued",
                   "run.adapter_out_of_sync"):  # fmt: skip
        assert reason in out, reason
    evidence = out[out.find("how each reconciliation was decided") :]
    assert "requeued from run" in evidence, evidence
    assert "RabbitMQ gave its unacknowledged message back; delivered 2 times, then succeeded" in evidence, evidence
    assert "nobody can hold the message" in evidence and ".XQ/" in evidence, evidence
    assert "-> 200, 4 runs" in out
    assert "Traceback" not in result.stderr, result.stderr[-3000:]


def test_the_rabbitmq_demo_says_clearly_when_no_rabbitmq_answers(database_url):
    result = _demo({"RUNWATCH_DATABASE_URL": database_url,
                    "RUNWATCH_RABBITMQ_URL": f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F"})  # fmt: skip
    assert result.returncode == 2
    assert "needs a RabbitMQ server: none answers at 127.0.0.1:" in result.stderr and "Traceback" not in result.stderr
