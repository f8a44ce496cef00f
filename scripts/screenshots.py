"""Screenshots of every console page into docs/screenshots/*.png (run by ``scripts/screenshots``).

Makes a scratch database on RUNWATCH_DATABASE_URL's server (or the embedded default), seeds a day
of runs in every state with events, a retry and a healer pass, serves the console on loopback and
has headless Chromium (Debian's ``chromium``, driven by Playwright) capture each page.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import uuid
from contextlib import ExitStack
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, make_server

from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "screenshots"
CHROMIUM = os.environ.get("RUNWATCH_CHROMIUM", "/usr/bin/chromium")

TYPES = ["invoices.sync", "reports.render", "contacts.import", "mail.send"]
# i-th run of 400, 3.6 min apart over the last day: mostly succeeded, some failed or reconciled,
# a few live ones (one stale), one with a hostile operator message to show it renders as text.
SEED = """
INSERT INTO operation_runs (message_id, type, type_label, queue_name, actor_name, status, outcome, tenant_id,
    initiator_name, operator_message, summary_counts, failure_summary, attempts, deliveries, max_retries,
    queued_stale_seconds, running_stale_seconds, threshold_source, created_at, started_at, last_progress_at,
    completed_at, reconciled_at, reconciliation_source, reason_code, reason_message, reconciliation_evidence,
    last_error, worker_id, progress_processed, progress_total)
SELECT 'shot-' || i, t.type, initcap(replace(t.type, '.', ' ')), 'default', t.type, s.status, s.outcome,
    1 + i % 3, (ARRAY['alice', 'bob', 'scheduler'])[1 + i % 3],
    CASE WHEN s.outcome = 'failed' THEN 'Could not reach the billing provider'
         WHEN s.status = 'running' THEN 'Processing batch ' || (i % 7) ELSE 'Done: ' || (i % 50) || ' items' END,
    '{"processed": 40, "skipped": 2}', CASE WHEN s.outcome = 'failed'
        THEN '[{"code": "billing.unreachable", "message": "Provider timed out"}]' ELSE '[]' END::jsonb,
    1 + (i % 3), 1 + (i % 3), 3, 3600, 900, 'default', c.created_at,
    CASE WHEN s.status <> 'queued' THEN c.created_at + interval '2 seconds' END,
    CASE WHEN s.status = 'running' THEN c.created_at + interval '30 seconds' END,
    CASE WHEN s.status = 'completed' THEN c.created_at + make_interval(secs => 20 + i % 90) END,
    CASE WHEN s.rec THEN c.created_at + interval '20 seconds' END,
    CASE WHEN s.rec THEN (ARRAY['failed_callback', 'scheduled_reconciler', 'adapter_reconciler'])[1 + i % 3] END,
    CASE WHEN s.rec THEN (ARRAY['run.queue_failure_bridge', 'run.stale_running', 'run.adapter_out_of_sync'])[1 + i % 3]
    END,
    CASE WHEN s.rec THEN (ARRAY['Queue failure was reconciled', 'Run stopped reporting progress',
                                'Lifecycle was reconciled from related records'])[1 + i % 3] END,
    CASE WHEN s.rec THEN '{"threshold_seconds": 900, "worker_alive": false, "message_found_in": null}'::jsonb END,
    CASE WHEN s.outcome = 'failed' THEN '{"type": "TimeoutError", "message": "billing API timed out"}'::jsonb END,
    'worker-' || (i % 4) || ':' || (1000 + i), CASE WHEN s.status = 'running' THEN 40 END,
    CASE WHEN s.status = 'running' THEN 100 END
FROM generate_series(1, 400) AS i
CROSS JOIN LATERAL (SELECT (ARRAY['invoices.sync', 'reports.render', 'contacts.import', 'mail.send'])[1 + i % 4]
                           AS type) t
CROSS JOIN LATERAL (SELECT now() - make_interval(secs => (400 - i) * 216) AS created_at) c
CROSS JOIN LATERAL (SELECT
    CASE WHEN i > 395 OR i = 300 THEN 'running' ELSE 'completed' END AS status,
    CASE WHEN i > 395 OR i = 300 THEN 'pending' WHEN i % 17 = 0 OR i % 23 = 0 THEN 'failed'
         WHEN i % 29 = 0 THEN 'partially_succeeded' WHEN i % 31 = 0 THEN 'blocked' ELSE 'succeeded' END AS outcome,
    NOT (i > 395 OR i = 300) AND i % 23 = 0 AS rec) s
"""


def seed(conn) -> int:
    conn.execute(text(SEED))
    run_id, message_id = conn.execute(
        text("SELECT id, message_id FROM operation_runs WHERE message_id = 'shot-391'")
    ).one()
    conn.execute(text("UPDATE operation_runs SET retry_of = :id WHERE message_id = 'shot-398'"), {"id": run_id})
    events = [("enqueued", 300, {}), ("started", 298, {"worker_id": "worker-3:1391", "attempt": 1}),
              ("progress", 250, {"processed": 10, "total": 40}),
              ("attempt_failed", 240, {"error": {"type": "TimeoutError", "message": "billing API timed out"},
                                       "retries": 1, "next_retry_at": "in 30 s"}),
              ("started", 200, {"worker_id": "worker-1:1391", "attempt": 2}),
              ("completed", 150, {"outcome": "failed"})]  # fmt: skip
    for kind, ago, details in events:
        conn.execute(text("INSERT INTO run_events (event_uuid, message_id, kind, at, details) VALUES "
                          "(:u, :m, :k, now() - make_interval(secs => :a), CAST(:d AS jsonb))"),
                     {"u": uuid.uuid4(), "m": message_id, "k": kind, "a": ago, "d": json.dumps(details)})  # fmt: skip
    conn.execute(
        text("""INSERT INTO maintenance_passes (name, started_at, finished_at, duration_ms, result) VALUES
        ('healer', now() - interval '40 seconds', now() - interval '40 seconds', 18.4,
         '{"candidates": 3, "reconciled": 1, "skipped": {"backlog": 2}, "paused": null, "dry_run": false}'),
        ('bridge', now() - interval '35 seconds', now() - interval '35 seconds', 6.1,
         '{"scanned": 12, "bridged": 0}')""")
    )
    return run_id


def seed_letters(conn) -> None:
    """Dead letters in three groups, linked to failed runs of the seed (tenant and exception from them)."""
    from runwatch.mirror import MirrorLetter, add_letters

    rows = conn.execute(text("SELECT message_id, actor_name, extract(epoch FROM completed_at) FROM operation_runs "
                             "WHERE outcome = 'failed' ORDER BY id")).all()  # fmt: skip
    add_letters(conn, [
        MirrorLetter(queue_name="default", redis_message_id=f"{1700000000000 + n}-0", dead_at=float(at),
                     message_id=message_id, actor_name=actor, exception_type="TimeoutError",
                     exception_message="billing API timed out")
        for n, (message_id, actor, at) in enumerate(rows)
    ])  # fmt: skip


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from playwright.sync_api import sync_playwright
    from runwatch.api.app import create_app
    from runwatch.api.store import Store

    from runwatch import embedded
    from runwatch.migrate import upgrade
    from runwatch.settings import normalize_database_url
    from runwatch.tokens import create_token

    OUT.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        server = os.environ.get("RUNWATCH_DATABASE_URL") or stack.enter_context(embedded.running()).database_url
        server = normalize_database_url(server)
        name = f"runwatch_shots_{uuid.uuid4().hex[:8]}"
        admin = create_engine(server, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        stack.callback(lambda: admin.connect().execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')))
        url = server.rsplit("/", 1)[0] + "/" + name
        upgrade(url)
        engine = create_engine(url)
        stack.callback(engine.dispose)
        with engine.begin() as conn:
            run_id = seed(conn)
            seed_letters(conn)
            token = create_token(conn, name="sre on call", tenant_ids=None, role="operator")[0]
        store = Store(url, token_cache_seconds=0)
        httpd = make_server("127.0.0.1", 0, create_app(store), handler_class=type(
            "Quiet", (WSGIRequestHandler,), {"log_message": lambda *a: None}))  # fmt: skip
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        stack.callback(httpd.shutdown)
        base = f"http://127.0.0.1:{httpd.server_port}"
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
            page = browser.new_page(base_url=base, viewport={"width": 1280, "height": 900})
            page.goto("/console/sign-in")
            page.screenshot(path=OUT / "sign-in.png")
            page.fill("#token", token)
            page.click("button[type=submit]")
            page.wait_for_url("**/console/")
            page.screenshot(path=OUT / "overview.png", full_page=True)
            page.goto("/console/runs?outcome=failed&outcome=partially_succeeded&limit=15")
            page.screenshot(path=OUT / "runs.png", full_page=True)
            page.goto(f"/console/runs/{run_id}")
            page.click("details.diagnostics summary")
            page.screenshot(path=OUT / "run-detail.png", full_page=True)
            page.goto("/console/dead-letters?limit=10")
            page.check("table.letters tbody tr:nth-child(1) input[type=checkbox]")
            page.check("table.letters tbody tr:nth-child(2) input[type=checkbox]")
            page.screenshot(path=OUT / "dead-letters.png", full_page=True)
            page.click("text=Preview the selected letters")
            page.screenshot(path=OUT / "dead-letters-preview.png", full_page=True)
            page.click("button[type=submit] >> text=Confirm")
            page.wait_for_url("**/console/actions/*")
            page.screenshot(path=OUT / "action.png", full_page=True)
            page.goto("/console/healer")
            page.screenshot(path=OUT / "healer.png", full_page=True)
            browser.close()
    for shot in sorted(OUT.glob("*.png")):
        print(f"screenshots: {shot.relative_to(ROOT)} ({shot.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
