"""Latency of the monitoring API on a million runs, under gunicorn, from a loopback load generator.

    python bench/api_latency.py [--runs 1000000] [--requests 2000] [--connections 8] [--workers 2]
                                [--reseed] [--json out.json]

1. seed ``runwatch_apibench`` on RUNWATCH_DATABASE_URL's server (kept between runs unless
   ``--reseed`` or the run count differs): N runs over 100 tenants with one
   ``INSERT ... SELECT generate_series``; ~2 % likely_stale, a few fresh live runs, a mix of
   outcomes, ~4 % reconciled, ~1 % without a tenant; then VACUUM ANALYZE;
2. start ``gunicorn -c api/gunicorn_conf.py`` with W workers on a free loopback port;
3. warm every scenario up; then per scenario, C threads, each with its own keep-alive ``http.client``
   connection, send R requests in total; report p50/p95/p99 (ms), requests/s and errors
   (any status other than 200);
4. print EXPLAIN (ANALYZE, BUFFERS) of the main queries as the API issues them.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine, event, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import common  # noqa: E402

from runwatch.migrate import upgrade  # noqa: E402
from runwatch.queries import Position, RunFilters, get_run, list_runs  # noqa: E402
from runwatch.settings import normalize_database_url  # noqa: E402
from runwatch.tokens import create_token  # noqa: E402

DATABASE = "runwatch_apibench"
TYPES = ["contacts.import", "invoices.sync", "tenant.export", "billing.charge", "feeds.fetch",
         "reports.render", "search.reindex", "mail.send", "audit.rollup", "cache.warm"]  # fmt: skip

# One row per i: live & stale when i % 50 = 7 (2 %), live & fresh for the newest 200 runs,
# otherwise completed with an outcome drawn from i (85 % succeeded, 8 % failed of which half
# reconciled, 4 % partially succeeded, 3 % blocked). created_at runs 1 s apart, newest last.
SEED = """
INSERT INTO operation_runs (message_id, type, queue_name, actor_name, status, outcome, tenant_id,
    initiator_name, operator_message, summary_counts, failure_summary, attempts, deliveries,
    queued_stale_seconds, running_stale_seconds, threshold_source, created_at, started_at,
    last_progress_at, completed_at, reconciled_at, reconciliation_source, reason_code,
    reason_message, reconciliation_evidence)
SELECT 'bench-' || i, t.type, 'default', t.type, s.status, s.outcome,
    CASE WHEN i % 101 = 0 THEN NULL ELSE 1 + i % 100 END, 'bench', 'Benchmark run',
    '{"processed": 10, "total": 10}', '[]', 1, 1, 3600, 900, 'default', c.created_at,
    CASE WHEN s.status <> 'queued' THEN c.created_at + interval '1 second' END,
    CASE WHEN s.status = 'running' THEN c.created_at + interval '2 seconds' END,
    CASE WHEN s.status = 'completed' THEN c.created_at + interval '5 seconds' END,
    CASE WHEN s.rec THEN c.created_at + interval '5 seconds' END,
    CASE WHEN s.rec THEN (ARRAY['failed_callback', 'scheduled_reconciler', 'adapter_reconciler'])[1 + i % 3] END,
    CASE WHEN s.rec
         THEN (ARRAY['run.queue_failure_bridge', 'run.stale_running', 'run.adapter_out_of_sync'])[1 + i % 3] END,
    CASE WHEN s.rec THEN 'Reconciled' END,
    CASE WHEN s.rec THEN '{"bench": true}'::jsonb END
FROM generate_series(1, :n) AS i
CROSS JOIN LATERAL (SELECT (ARRAY[{types}])[1 + (i * 7) % 10] AS type) t
CROSS JOIN LATERAL (SELECT now() - make_interval(secs => (:n - i) * 1.0) AS created_at) c
CROSS JOIN LATERAL (SELECT
    CASE WHEN i % 50 = 7 OR i > :n - 200 THEN (CASE WHEN (i / 50) % 2 = 0 THEN 'queued' ELSE 'running' END)
         ELSE 'completed' END AS status,
    CASE WHEN i % 50 = 7 OR i > :n - 200 THEN 'pending'
         WHEN i % 100 < 85 THEN 'succeeded' WHEN i % 100 < 93 THEN 'failed'
         WHEN i % 100 < 97 THEN 'partially_succeeded' ELSE 'blocked' END AS outcome,
    NOT (i % 50 = 7 OR i > :n - 200) AND i % 100 BETWEEN 85 AND 88 AS rec) s
"""


def bench_url(server_url: str) -> str:
    return normalize_database_url(server_url).rsplit("/", 1)[0] + "/" + DATABASE


def seed(server_url: str, runs: int, reseed: bool) -> str:
    url = bench_url(server_url)
    admin = create_engine(normalize_database_url(server_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": DATABASE}).first()
        if exists and reseed:
            conn.execute(text(f'DROP DATABASE "{DATABASE}" WITH (FORCE)'))
        if not exists or reseed:
            conn.execute(text(f'CREATE DATABASE "{DATABASE}"'))
    admin.dispose()
    upgrade(url)
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        have = conn.execute(text("SELECT count(*) FROM operation_runs")).scalar_one()
        if have != runs:
            started = time.monotonic()
            conn.execute(text("TRUNCATE operation_runs, run_events RESTART IDENTITY CASCADE"))
            types = ", ".join(f"'{t}'" for t in TYPES)
            conn.execute(text(SEED.replace("{types}", types)), {"n": runs})
            conn.execute(text("VACUUM ANALYZE operation_runs"))
            conn.execute(text("CHECKPOINT"))  # flush the load now, not during the measurements
            print(f"seeded {runs:,} runs in {time.monotonic() - started:.1f} s", file=sys.stderr)
        conn.execute(text("TRUNCATE api_tokens RESTART IDENTITY CASCADE"))
    engine.dispose()
    return url


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(conn: http.client.HTTPConnection, path: str, token: str) -> tuple[int, bytes]:
    conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
    resp = conn.getresponse()
    return resp.status, resp.read()


def start_gunicorn(url: str, port: int, workers: int) -> subprocess.Popen:
    env = {**os.environ, "RUNWATCH_DATABASE_URL": url, "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp()}
    argv = [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "api" / "gunicorn_conf.py"),
            "--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--log-level", "warning"]  # fmt: skip
    proc = subprocess.Popen(argv, env=env, cwd=ROOT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health/live")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("gunicorn did not come up")


def measure(port: int, path: str, token: str, requests: int, connections: int) -> dict:
    return common.closed_loop(
        port, path, {"Authorization": f"Bearer {token}"}, requests=requests, connections=connections, warmup=20
    )


def deep_link(port: int, token: str, pages: int) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    path = "/api/admin/operations"
    for _ in range(pages):
        path = json.loads(get(conn, path, token)[1])["links"]["next"]
    return path


def explain(url: str) -> None:
    """The plans of the main queries, captured exactly as runwatch.queries sends them."""
    engine = create_engine(url)
    captured: list[tuple[str, str, object]] = []
    title = ""

    def capture(conn, cursor, statement, parameters, context, executemany):
        if not statement.startswith("EXPLAIN"):
            captured.append((title, statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    cases = {
        "list, unfiltered": (None, RunFilters()),
        "list, freshness_state=likely_stale": (None, RunFilters(freshness_state="likely_stale")),
        "list, status=queued": (None, RunFilters(status="queued")),
        "list, reconciled=true": (None, RunFilters(reconciled=True)),
        "list, type=billing.charge": (None, RunFilters(type="billing.charge")),
        "list, tenant-scoped token (tenant 42)": (frozenset({42}), RunFilters()),
        "list, deep cursor (5,000 runs in)": (None, RunFilters()),
    }
    with engine.connect() as conn:
        deep = conn.exec_driver_sql(
            "SELECT created_at, id FROM operation_runs ORDER BY created_at DESC, id DESC OFFSET 5000 LIMIT 1"
        ).one()
        run_id = conn.exec_driver_sql("SELECT max(id) - 1000 FROM operation_runs").scalar_one()
        captured.clear()
        for title, (tenants, filters) in cases.items():
            after = Position(deep.created_at, deep.id) if "deep" in title else None
            list_runs(conn, tenant_ids=tenants, filters=filters, after=after, limit=51)
        title = "detail (tenant-scoped token)"
        get_run(conn, run_id, tenant_ids=frozenset({1 + run_id % 100}))
        for name, statement, parameters in list(captured):
            plan = conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters).scalars().all()
            print(f"\n-- {name}\n" + "\n".join(plan))
    engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=2000, help="measured requests per scenario")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--deep-pages", type=int, default=100)
    parser.add_argument("--reseed", action="store_true")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    server = os.environ.get("RUNWATCH_DATABASE_URL")
    if not server:
        raise SystemExit("set RUNWATCH_DATABASE_URL to a PostgreSQL server (the bench creates its own database)")
    url = seed(server, args.runs, args.reseed)
    engine = create_engine(url)
    with engine.begin() as conn:
        all_token = create_token(conn, name="bench-all", tenant_ids=None)[0]
        tenant_token = create_token(conn, name="bench-42", tenant_ids=[42])[0]
        run_id = conn.execute(text("SELECT id FROM operation_runs WHERE tenant_id = 42 ORDER BY id DESC "
                                   "OFFSET 1000 LIMIT 1")).scalar_one()  # fmt: skip
    engine.dispose()
    port = free_port()
    proc = start_gunicorn(url, port, args.workers)
    base = "/api/admin/operations"
    try:
        scenarios = {
            # The floor on this machine: gunicorn + Falcon + the load generator, no database.
            "baseline GET /health/live (no query)": ("/health/live", all_token),
            "list unfiltered": (base, all_token),
            "list status=queued": (f"{base}?status=queued", all_token),
            "list status=completed": (f"{base}?status=completed", all_token),
            "list outcome=failed": (f"{base}?outcome=failed", all_token),
            "list outcome=pending": (f"{base}?outcome=pending", all_token),
            "list type=billing.charge": (f"{base}?type=billing.charge", all_token),
            "list tenant_id=42": (f"{base}?tenant_id=42", all_token),
            "list freshness_state=likely_stale": (f"{base}?freshness_state=likely_stale", all_token),
            "list freshness_state=fresh_active": (f"{base}?freshness_state=fresh_active", all_token),
            "list freshness_state=reconciled_failed": (f"{base}?freshness_state=reconciled_failed", all_token),
            "list reconciled=true": (f"{base}?reconciled=true", all_token),
            "list tenant-scoped token": (base, tenant_token),
            f"list deep cursor (page {args.deep_pages + 1})": (deep_link(port, all_token, args.deep_pages), all_token),
            "detail": (f"{base}/{run_id}", all_token),
            "detail ?include=diagnostics": (f"{base}/{run_id}?include=diagnostics", all_token),
        }
        warm = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for path, token in scenarios.values():  # every worker's caches and the buffer cache, once
            for _ in range(50):
                get(warm, path, token)
        warm.close()
        results = {}
        print(f"{'scenario':<42} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'req/s':>7} {'errors':>6}")
        for name, (path, token) in scenarios.items():
            r = results[name] = measure(port, path, token, args.requests, args.connections)
            print(f"{name:<42} {r['p50']:>7.2f} {r['p95']:>7.2f} {r['p99']:>7.2f} {r['rps']:>7.0f} {r['errors']:>6}")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    explain(url)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
