"""Server time of each console page on a million runs, under gunicorn, from a loopback client.

    python bench/console_latency.py [--runs 1000000] [--requests 400] [--connections 4] [--workers 2]
                                    [--reseed] [--json out.json]

Seeds like ``bench/api_latency.py`` (its own database, ``runwatch_consolebench``: N runs 1 s apart over 100 tenants,
so the newest 86,400 fall in the overview's 24-hour window) and its gunicorn harness. A browser's
session is opened straight in the ledger (``runwatch.sessions``) for an all-tenant and a one-tenant
token; each page is then requested with that cookie by C keep-alive connections, R requests in all,
and p50/p95/p99 are reported in ms (the target is p95 < 50 ms). Also reports each page's weight with
its assets (the target is < 150 KB).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import signal
import sys
from pathlib import Path

from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import api_latency  # noqa: E402
import common  # noqa: E402
from api_latency import free_port, seed, start_gunicorn  # noqa: E402

from runwatch import sessions  # noqa: E402
from runwatch.tokens import authenticate, create_token  # noqa: E402

DATABASE = "runwatch_consolebench"
_ASSET = re.compile(r'(?:src|href)="(/console/static/[^"]+)"')


def fetch(conn: http.client.HTTPConnection, path: str, cookie: str) -> tuple[int, bytes]:
    conn.request("GET", path, headers={"Cookie": f"rw_session={cookie}"})
    resp = conn.getresponse()
    return resp.status, resp.read()


def measure(port: int, path: str, cookie: str, requests: int, connections: int) -> dict:
    return common.closed_loop(
        port, path, {"Cookie": f"rw_session={cookie}"}, requests=requests, connections=connections, warmup=5
    )


def weight(port: int, path: str, cookie: str) -> int:
    """Bytes of the page plus every asset it links (what a first visit downloads)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    _status, body = fetch(conn, path, cookie)
    total = len(body)
    for asset in set(_ASSET.findall(body.decode())):
        total += len(fetch(conn, asset.replace("&amp;", "&"), cookie)[1])
    conn.close()
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=400, help="measured requests per page")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--reseed", action="store_true")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    server = os.environ.get("RUNWATCH_DATABASE_URL")
    if not server:
        raise SystemExit("set RUNWATCH_DATABASE_URL to a PostgreSQL server (the bench creates its own database)")
    # NOTE: its own database, so that it never reseeds the API benchmark's under a concurrent run.
    api_latency.DATABASE = DATABASE
    url = seed(server, args.runs, args.reseed)
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        cookies = {}
        for name, tenants in (("all", None), ("tenant 42", [42])):
            secret = create_token(conn, name=f"console-bench-{name}", tenant_ids=tenants)[0]
            cookies[name] = sessions.create_session(conn, authenticate(conn, secret), ttl_seconds=3600)
        run_id, message_id = conn.execute(text(
            "SELECT id, message_id FROM operation_runs WHERE tenant_id = 42 ORDER BY id DESC OFFSET 100 LIMIT 1"
        )).one()  # fmt: skip
        conn.execute(text("DELETE FROM run_events WHERE message_id = :m"), {"m": message_id})
        conn.execute(text("""
            INSERT INTO run_events (event_uuid, message_id, kind, at, details)
            SELECT gen_random_uuid(), :m, (ARRAY['enqueued', 'started', 'progress', 'attempt_failed'])[1 + g % 4],
                   now() - make_interval(secs => 100 - g), '{"error": {"type": "ValueError", "message": "boom"}}'
            FROM generate_series(1, 40) AS g"""), {"m": message_id})  # fmt: skip
    engine.dispose()
    port = free_port()
    proc = start_gunicorn(url, port, args.workers)
    pages = {
        "overview": ("/console/", "all"),
        "overview, one-tenant token": ("/console/", "tenant 42"),
        "runs": ("/console/runs", "all"),
        "runs status=queued&status=running": ("/console/runs?status=queued&status=running", "all"),
        "runs outcome=failed, type=billing.charge": ("/console/runs?outcome=failed&type=billing.charge", "all"),
        "runs reason_code=run.stale_running": ("/console/runs?reason_code=run.stale_running", "all"),
        "runs, one-tenant token": ("/console/runs", "tenant 42"),
        "run detail (40 events)": (f"/console/runs/{run_id}", "all"),
        "healer": ("/console/healer", "all"),
    }
    results = {}
    try:
        print(f"{'page':<42} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'req/s':>7} {'errors':>6} {'KB':>6}")
        for name, (path, who) in pages.items():
            r = results[name] = measure(port, path, cookies[who], args.requests, args.connections)
            r["bytes_with_assets"] = weight(port, path, cookies[who])
            print(f"{name:<42} {r['p50']:>7.2f} {r['p95']:>7.2f} {r['p99']:>7.2f} {r['rps']:>7.0f} "
                  f"{r['errors']:>6} {r['bytes_with_assets'] / 1024:>6.1f}")  # fmt: skip
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
