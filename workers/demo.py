"""``runwatch demo``: sample jobs covering every outcome, recorded, then printed as a table."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.redis import RedisBroker

from runwatch import lookups
from runwatch.db import engine_for
from runwatch.migrate import upgrade
from runwatch.parsers import mask_url
from runwatch.report import format_runs, recent_runs
from runwatch.settings import Settings

from . import demo_api, demo_faults, demo_rabbitmq
from .broker import install
from .run import current_run

DEMO_NAMESPACE = "runwatch-demo"
DEFAULT_RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
#: What another terminal's CLI needs to reach the demo's ledger and broker.
_CLI_VARIABLES = ("RUNWATCH_DATABASE_URL", "RUNWATCH_REDIS_URL", "RUNWATCH_RABBITMQ_URL", "RUNWATCH_BROKER")
QUEUE = "demo"


def declare_actors(broker: dramatiq.Broker) -> dict[str, dramatiq.Actor]:
    """The sample actors; each shows one outcome a job author can produce."""
    fast: dict[str, Any] = {"broker": broker, "queue_name": QUEUE, "min_backoff": 100, "max_backoff": 200}
    attempts: dict[str, int] = {}

    @dramatiq.actor(runwatch_type="contacts.import", runwatch_label="Import contacts", **fast)
    def import_contacts(count: int) -> None:
        run = current_run()
        for done in range(1, count + 1):
            run.progress(processed=done, total=count)
        run.summary(created=count - 2, updated=2)
        run.message(f"Imported {count} contacts")

    @dramatiq.actor(
        runwatch_type="invoices.sync", runwatch_label="Sync invoices", runwatch_summary_keys=("invoices",), **fast
    )
    def sync_invoices() -> None:
        current_run().partially_succeeded("3 invoices skipped: no billing address", invoices=20, skipped=3)

    @dramatiq.actor(runwatch_type="tenant.export", runwatch_label="Export tenant data", **fast)
    def export_tenant() -> None:
        current_run().block("tenant.not_operable", "Tenant is suspended; export refused")

    @dramatiq.actor(runwatch_type="billing.charge", runwatch_label="Charge card", **fast)
    def charge_card() -> None:
        current_run().fail("billing.card_declined", "The card was declined; customer notified")

    @dramatiq.actor(runwatch_type="feeds.fetch", runwatch_label="Fetch feed", max_retries=5, **fast)
    def fetch_feed(key: str) -> None:
        attempts[key] = attempts.get(key, 0) + 1
        if attempts[key] < 3:
            raise ConnectionError("feed server reset the connection")
        current_run().message(f"Fetched after {attempts[key]} attempts")

    @dramatiq.actor(runwatch_type="reports.render", runwatch_label="Render report", max_retries=1, **fast)
    def render_report() -> None:
        if current_run().meta.get("retry_of") is None:  # fixed by the time an operator requeues it
            raise ValueError("template 'q4' not found")
        current_run().message("Rendered after the template was restored")

    @dramatiq.actor(
        runwatch_type="search.reindex", runwatch_label="Reindex search", max_retries=0, time_limit=300, **fast
    )
    def reindex() -> None:
        threading.Event().wait(5)  # interrupted by the time limit

    return {
        a.actor_name: a
        for a in (import_contacts, sync_invoices, export_tenant, charge_card, fetch_feed, render_report, reindex)
    }


def scenario(actors: dict[str, dramatiq.Actor]) -> list[dramatiq.Message]:
    who: dict[str, Any] = {"runwatch_initiator": "demo"}
    return [
        actors["import_contacts"].send_with_options(args=(50,), runwatch_tenant_id=1, **who),
        actors["sync_invoices"].send_with_options(runwatch_tenant_id=1, **who),
        actors["export_tenant"].send_with_options(runwatch_tenant_id=2, **who),
        actors["charge_card"].send_with_options(runwatch_tenant_id=2, **who),
        actors["fetch_feed"].send_with_options(args=("news",), runwatch_tenant_id=3, **who),
        actors["render_report"].send_with_options(runwatch_tenant_id=3, **who),
        actors["reindex"].send_with_options(**who),
    ]


def run_demo(
    *, data_dir: str | None = None, keep_servers: bool = False, serve: bool = True, broker_kind: str = "redis"
) -> int:
    settings = Settings.from_env()
    if broker_kind == "rabbitmq":
        url = settings.rabbitmq_url or DEFAULT_RABBITMQ_URL
        why = _rabbitmq_unanswered(url)
        if why:
            print(f"runwatch demo --broker rabbitmq needs a RabbitMQ server: {why}", file=sys.stderr)
            print(
                "  start one (e.g. `docker run -d -p 5672:5672 rabbitmq:3`) or set RUNWATCH_RABBITMQ_URL",
                file=sys.stderr,
            )
            return 2
        os.environ["RUNWATCH_RABBITMQ_URL"] = url
        os.environ["RUNWATCH_BROKER"] = "rabbitmq"
    servers = None
    if not (settings.database_url and (settings.redis_url or broker_kind == "rabbitmq")):
        from runwatch import embedded

        print("runwatch demo: RUNWATCH_DATABASE_URL / RUNWATCH_REDIS_URL not set; starting the embedded default")
        servers = embedded.start(Path(data_dir) if data_dir else None)
        os.environ.setdefault("RUNWATCH_DATABASE_URL", servers.database_url)
        if broker_kind == "redis":
            os.environ.setdefault("RUNWATCH_REDIS_URL", servers.redis_url)
    settings = Settings.from_env()
    if servers is not None or broker_kind == "rabbitmq":
        # Another terminal reaches the demo's ledger with these (while it serves, or with --keep-servers).
        reach = {k: v for k, v in settings.as_env().items() if k in _CLI_VARIABLES}
        print("runwatch demo: the CLI reaches these servers (e.g. `runwatch runs`) with:")
        print("  export " + " ".join(f"{k}={v}" for k, v in reach.items()))
    try:
        print(f"runwatch demo: schema at revision {upgrade(settings.require_database_url())}")
        return _run(settings, broker_kind, serve_forever=serve and sys.stdin.isatty())
    finally:
        if servers is not None and not keep_servers:
            from runwatch import embedded

            embedded.stop(servers)


def _rabbitmq_unanswered(url: str) -> str | None:
    import pika.exceptions
    from runwatch.bridge import amqp

    logging.getLogger("pika").setLevel(logging.CRITICAL)  # NOTE: this says why, in one line; pika's log would not
    parts = urlsplit(url)
    try:
        amqp.connect(url, timeout_seconds=3).close()
    except (pika.exceptions.AMQPError, OSError) as exc:
        return f"none answers at {parts.hostname}:{parts.port or 5672} ({type(exc).__name__}; {mask_url(url)})"
    return None


def _broker(settings: Settings, broker_kind: str) -> dramatiq.Broker:
    broker: dramatiq.Broker
    if broker_kind == "rabbitmq":
        rabbit = RabbitmqBroker(url=settings.require_rabbitmq_url(), confirm_delivery=True)
        install(rabbit, settings=settings)
        demo_rabbitmq.clean(rabbit)
        broker = rabbit
    else:
        redis_broker = RedisBroker(url=settings.redis_url, namespace=DEMO_NAMESPACE)
        install(redis_broker, settings=settings)
        demo_faults.clean(redis_broker)
        broker = redis_broker
    broker.emit_after("process_boot")
    return broker


def _run(settings: Settings, broker_kind: str, *, serve_forever: bool) -> int:
    # NOTE: the sample failures are on purpose; Dramatiq's tracebacks would bury the table.
    logging.getLogger("dramatiq").setLevel(logging.CRITICAL)
    broker = _broker(settings, broker_kind)
    faults: Any = demo_rabbitmq if broker_kind == "rabbitmq" else demo_faults
    actors = declare_actors(broker)
    worker = dramatiq.Worker(broker, worker_threads=4, worker_timeout=100)
    worker.start()
    try:
        messages = scenario(actors)
        print(
            f"runwatch demo: sent {len(messages)} jobs on {broker_kind}; "
            "waiting for every outcome to reach PostgreSQL ..."
        )
        engine = engine_for(settings.require_database_url())
        _wait_terminal(engine, [m.message_id for m in messages], timeout_seconds=60)
        print()
        print("runwatch demo: act 2, faults")
        render_run = _run_id(engine, messages[5].message_id)
        fault_ids = faults.inject(broker, settings, render_run)
        faults.reconcile(broker, settings, fault_ids)
        ids = [m.message_id for m in messages] + fault_ids
        with engine.connect() as conn:
            rows = recent_runs(conn, limit=len(ids), message_ids=ids)
    finally:
        demo_faults.stop_rescuers()
        worker.stop()
        broker.close()
    print()
    print(format_runs(rows))
    print()
    print("runwatch demo: how each reconciliation was decided (full evidence: `runwatch heal --explain RUN_ID`,")
    print("               `runwatch deadletters show RUN_ID`):")
    print("\n".join(demo_faults.evidence_lines(engine, fault_ids, rabbitmq=broker_kind == "rabbitmq")))
    print()
    print()
    demo_api.serve(settings, wait_for_ctrl_c=serve_forever)
    return 0


def _run_id(engine, message_id: str) -> int:
    with engine.connect() as conn:
        return lookups.statuses(conn, [message_id])[message_id][1]  # every run is terminal by now


def _wait_terminal(engine, message_ids: list[str], *, timeout_seconds: float) -> None:
    deadline = time.monotonic() + timeout_seconds
    done = -1
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            now_done = lookups.completed(conn, message_ids)
        if now_done != done:
            done = now_done
            print(f"runwatch demo: {done}/{len(message_ids)} runs completed")
        if done == len(message_ids):
            return
        time.sleep(0.2)
    raise TimeoutError(f"only {done} of {len(message_ids)} demo runs completed within {timeout_seconds}s")
