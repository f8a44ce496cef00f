"""Secrets a failing job carries never leave it unmasked; tracebacks are diagnostics only.

Real Redis broker, real Dramatiq worker, real drainer into PostgreSQL, the API app and the CLI.
"""

from __future__ import annotations

import os
import time

import dramatiq
import pytest
from dramatiq.brokers.redis import RedisBroker
from runwatch.bridge.adapter import reconcile_once
from runwatch.bridge.keys import Keys
from runwatch.bridge.redis_letters import RedisLetters
from runwatch.workers.drainer import Drainer

from runwatch import events as ev
from runwatch import redact, workers
from runwatch.ledger import apply_events
from runwatch.thresholds import ThresholdPolicy
from tests.support.leaks import LIST, cli_text, ledger_text

FAST_RETRY = {"min_backoff": 10, "max_backoff": 20}
HERE = "tests/integration/test_redaction.py"


@pytest.fixture(autouse=True)
def _fresh_default_redactor():
    yield
    redact.set_default(None)  # install() made the test's redactor the process default


@pytest.fixture
def cli_env(monkeypatch, database_url, servers, settings):
    monkeypatch.setenv("RUNWATCH_DATABASE_URL", database_url)
    monkeypatch.setenv("RUNWATCH_REDIS_URL", servers.redis_url)
    monkeypatch.setenv("RUNWATCH_EVENT_STREAM", settings.event_stream)


def test_the_default_detail_has_no_traceback_and_diagnostics_a_masked_one(harness, worker, api):
    @dramatiq.actor(queue_name="q", max_retries=1, **FAST_RETRY)
    def leaky(i):
        raise RuntimeError(f"boom {i} password=hunter2")

    message = leaky.send(0)
    harness.settle("q")
    run = harness.run(message.message_id)
    assert (run["reconciliation_source"], run["reason_code"]) == ("failed_callback", "run.queue_failure_bridge")

    evidence = api.get(f"{LIST}/{run['id']}").json["reconciliation"]["evidence"]
    assert "traceback" not in evidence
    assert evidence["exception_type"] == "RuntimeError" and evidence["exception_message"] == "boom 0 password=***"
    assert evidence["raised_at"].startswith(f"{HERE}:") and evidence["raised_at"].endswith(" in leaky")
    assert evidence["traceback_digest"] and evidence["dead_letter_key"].endswith(":q.XQ")
    assert (evidence["retries"], evidence["max_retries"]) == (2, 1)

    revealed = api.get(f"{LIST}/{run['id']}", include="diagnostics")
    diagnostics = revealed.json["diagnostics"]
    traceback = diagnostics["evidence"]["traceback"]
    assert 'raise RuntimeError(f"boom {i} password=***")' in traceback  # the source line, masked
    assert traceback.endswith("RuntimeError: boom 0 password=***\n") and f'File "{HERE}"' in traceback
    assert 'File "site-packages/dramatiq/worker.py"' in traceback
    (dead,) = [e for e in diagnostics["events"] if e["kind"] == "dead_lettered"]
    assert dead["details"]["evidence"]["traceback"] == traceback
    for where in (revealed.text, ledger_text(harness.engine)):
        assert "hunter2" not in where and os.getcwd() not in where


def test_stored_arguments_are_masked(harness, worker):
    @dramatiq.actor(queue_name="q", runwatch_store_args=True)
    def store(url, *, password, headers):
        pass

    message = store.send(
        "postgresql://app:hunter3@db/x", password="hunter4", headers={"Authorization": "Bearer t5", "Accept": "json"}
    )
    harness.settle("q")
    assert harness.run(message.message_id)["args"] == {
        "args": ["postgresql://app:***@db/x"],
        "kwargs": {"password": "***", "headers": {"Authorization": "***", "Accept": "json"}},
    }


def test_operator_messages_a_job_writes_are_masked_too(harness, worker):
    """A job author may paste a connection string into a message: every surface shows it masked."""

    @dramatiq.actor(queue_name="q")
    def chatty():
        run = workers.current_run()
        run.progress(1, 2, message="connecting to redis://:s3cret@cache:6379")
        run.block("tenant.not_operable", "refused: api_key=k-123 is revoked")

    message = chatty.send()
    harness.settle("q")
    run = harness.run(message.message_id)
    assert run["operator_message"] == "refused: api_key=*** is revoked"
    assert run["failure_summary"] == [{"code": "tenant.not_operable", "message": "refused: api_key=*** is revoked"}]
    assert "s3cret" not in ledger_text(harness.engine) and "k-123" not in ledger_text(harness.engine)


def test_install_takes_a_python_hook_for_custom_rules(settings, servers, namespace, engine):
    broker = RedisBroker(url=servers.redis_url, namespace=namespace)
    recorder = workers.install(broker, settings=settings, redact=lambda s: s.replace("acct-42", "acct-**"))
    broker.emit_after("process_boot")

    @dramatiq.actor(broker=broker, queue_name="q", max_retries=0, runwatch_store_args=True)
    def charge(account):
        raise RuntimeError(f"charge refused for {account}, token=tok6secret")

    worker = dramatiq.Worker(broker, worker_timeout=50, worker_threads=1)
    worker.start()
    try:
        charge.send("acct-42")
        broker.join("q", timeout=20_000)
        recorder.shipper.flush()
        policy = ThresholdPolicy(settings)
        Drainer(broker.client, engine, policy, stream=settings.event_stream, batch_entries=50).drain_until_empty()
    finally:
        worker.stop()
        recorder.shipper.close()
        broker.close()
    text = ledger_text(engine)
    assert "acct-42" not in text and "tok6secret" not in text
    assert "charge refused for acct-**, token=***" in text
    assert _only_run(engine)["args"] == {"args": ["acct-**"], "kwargs": {}}


@pytest.fixture
def bare(servers, namespace):
    """A broker *without* the recorder: its dead letters never get a callback."""
    broker = RedisBroker(url=servers.redis_url, namespace=namespace)
    broker.emit_after("process_boot")
    worker = dramatiq.Worker(broker, worker_timeout=50, worker_threads=1)
    worker.start()
    yield broker
    worker.stop()
    broker.close()


def _leak(note):
    raise RuntimeError(f"lost callback, password={note}")


def test_what_the_adapter_and_the_cli_copy_from_a_dead_letter_is_masked(
    bare, engine, settings, namespace, api, cli_env, capsys
):
    explode = dramatiq.actor(_leak, broker=bare, queue_name="jobs", max_retries=1, **FAST_RETRY)
    message = explode.send("hunter8 token=hunter9")
    bare.join("jobs", timeout=20_000)
    meta = {"queue": "jobs", "actor": "_leak", "type": "_leak", "created_at": message.message_timestamp / 1000}
    with engine.begin() as conn:  # the recorder saw the start, never the failure
        apply_events(conn, [ev.new_event(ev.STARTED, message.message_id, time.time(), meta)], ThresholdPolicy(settings))
    assert reconcile_once(
        RedisLetters(bare.client, Keys(namespace)), engine, ThresholdPolicy(settings), min_age_seconds=0
    ).reconciled
    run = _only_run(engine)
    tail = run["reconciliation_evidence"]["last_enqueued_traceback_tail"]
    assert tail.endswith("RuntimeError: lost callback, password=*** token=***\n") and f'File "{HERE}"' in tail

    assert "last_enqueued_traceback_tail" not in api.get(f"{LIST}/{run['id']}").json["reconciliation"]["evidence"]
    revealed = api.get(f"{LIST}/{run['id']}", include="diagnostics").json["diagnostics"]["evidence"]
    assert revealed["last_enqueued_traceback_tail"] == tail

    out = cli_text(capsys, namespace, [run["id"]])
    assert '"hunter8 token=***"' in out  # the argument as sent, masked
    for where in (out, ledger_text(engine)):
        assert "hunter9" not in where and os.getcwd() not in where


def _only_run(engine):
    from sqlalchemy import text

    with engine.connect() as conn:
        return dict(conn.execute(text("SELECT * FROM operation_runs")).mappings().one())
