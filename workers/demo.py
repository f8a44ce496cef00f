"""``runwatch demo``: sample jobs covering every outcome, recorded, then printed as a table."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from sqlalchemy import text

from runwatch.db import engine_for
from runwatch.migrate import upgrade
from runwatch.report import format_runs, recent_runs
from runwatch.settings import Settings

from . import demo_api, demo_faults
from .broker import install
from .run import current_run

DEMO_NAMESPACE = "runwatch-demo"
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


def run_demo(*, data_dir: str | None = None, keep_servers: bool = False, serve: bool = True) -> int:
    settings = Settings.from_env()
    servers = None
    if not (settings.database_url and settings.redis_url):
        from runwatch import embedded

        print("runwatch demo: RUNWATCH_DATABASE_URL / RUNWATCH_REDIS_URL not set; starting the embedded default")
        servers = embedded.start(Path(data_dir) if data_dir else None)
        os.environ.setdefault("RUNWATCH_DATABASE_URL", servers.database_url)
        os.environ.setdefault("RUNWATCH_REDIS_URL", servers.redis_url)
        settings = Settings.from_env()
        # Another terminal reaches the demo's ledger with these (while it serves, or with --keep-servers).
        print("runwatch demo: the CLI reaches these servers (e.g. `runwatch runs`) with:")
        print(f"  export RUNWATCH_DATABASE_URL={servers.database_url} RUNWATCH_REDIS_URL={servers.redis_url}")
    try:
        print(f"runwatch demo: schema at revision {upgrade(settings.require_database_url())}")
        return _run(settings, serve_forever=serve and sys.stdin.isatty())
    finally:
        if servers is not None and not keep_servers:
            from runwatch import embedded

            embedded.stop(servers)


def _run(settings: Settings, *, serve_forever: bool) -> int:
    # NOTE: the sample failures are on purpose; Dramatiq's tracebacks would bury the table.
    logging.getLogger("dramatiq").setLevel(logging.CRITICAL)
    broker = RedisBroker(url=settings.redis_url, namespace=DEMO_NAMESPACE)
    install(broker, settings=settings)
    broker.emit_after("process_boot")
    actors = declare_actors(broker)
    demo_faults.clean(broker)
    worker = dramatiq.Worker(broker, worker_threads=4, worker_timeout=100)
    worker.start()
    try:
        messages = scenario(actors)
        print(f"runwatch demo: sent {len(messages)} jobs; waiting for every outcome to reach PostgreSQL ...")
        engine = engine_for(settings.require_database_url())
        _wait_terminal(engine, [m.message_id for m in messages], timeout_seconds=60)
        print()
        print("runwatch demo: act 2, faults")
        render_run = _run_id(engine, messages[5].message_id)
        faults = demo_faults.inject(broker, settings, render_run)
        demo_faults.reconcile(broker, settings, faults)
        ids = [m.message_id for m in messages] + faults
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
    print("\n".join(demo_faults.evidence_lines(engine, faults)))
    print()
    print()
    demo_api.serve(settings, wait_for_ctrl_c=serve_forever)
    return 0


def _run_id(engine, message_id: str) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT id FROM operation_runs WHERE message_id = :m"), {"m": message_id}).scalar()


def _wait_terminal(engine, message_ids: list[str], *, timeout_seconds: float) -> None:
    deadline = time.monotonic() + timeout_seconds
    query = text("SELECT count(*) FROM operation_runs WHERE status = 'completed' AND message_id = ANY(:ids)")
    done = -1
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            now_done = conn.execute(query, {"ids": message_ids}).scalar()
        if now_done != done:
            done = now_done
            print(f"runwatch demo: {done}/{len(message_ids)} runs completed")
        if done == len(message_ids):
            return
        time.sleep(0.2)
    raise TimeoutError(f"only {done} of {len(message_ids)} demo runs completed within {timeout_seconds}s")
