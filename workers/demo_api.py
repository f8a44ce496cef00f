"""The demo's last act: serve the monitoring API on the demo's ledger, with a token and curl lines."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

from runwatch.db import engine_for
from runwatch.settings import Settings
from runwatch.tokens import OPERATOR, create_token

#: What the API process needs of the demo's settings: the ledger, and the broker its readiness probes.
_API_VARIABLES = ("RUNWATCH_DATABASE_URL", "RUNWATCH_REDIS_URL", "RUNWATCH_RABBITMQ_URL", "RUNWATCH_BROKER")


def serve(settings: Settings, *, wait_for_ctrl_c: bool) -> None:
    """Start ``runwatch api`` (gunicorn), print how to call it, show one call, then stop it."""
    with engine_for(settings.require_database_url()).begin() as conn:
        # An operator: the console's dead-letter page then shows its requeue and purge controls too.
        secret, _ = create_token(conn, name=f"demo-{int(time.time())}", tenant_ids=None, role=OPERATOR)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    api = subprocess.Popen(
        [sys.executable, "-m", "runwatch.cli", "api", "--bind", f"127.0.0.1:{port}", "--workers", "2"],
        env={**os.environ, **{k: v for k, v in settings.as_env().items() if k in _API_VARIABLES}},
    )
    try:
        _wait_ready(f"{base}/health/live", api)
        auth = f"Authorization: Bearer {secret}"
        print(f"runwatch demo: the monitoring API is up at {base} (gunicorn, 2 workers); an all-tenants operator")
        print("  token (it may requeue and purge):")
        print(f"  export RUNWATCH_TOKEN={secret}")
        print("  try:")
        curl = f'  curl -s -H "Authorization: Bearer $RUNWATCH_TOKEN" "{base}/api/admin/operations'
        for query in ("?freshness_state=reconciled_failed", "?tenant_id=3&limit=2", "/6?include=diagnostics"):
            print(f'{curl}{query}"')
        print(f"  curl -s {base}/metrics | grep runwatch_   ;   curl -s {base}/api/openapi.json")
        request = urllib.request.Request(
            f"{base}/api/admin/operations?freshness_state=reconciled_failed", headers=dict([auth.split(": ", 1)])
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body = json.loads(response.read())
        print(
            f"runwatch demo: GET /api/admin/operations?freshness_state=reconciled_failed -> {response.status}, "
            f"{len(body['data'])} runs: " + ", ".join(f"{r['id']} {r['type']}" for r in body["data"])
        )
        # NOTE: the console's templates and assets ship as package data; this proves they did.
        with urllib.request.urlopen(f"{base}/console/sign-in", timeout=10) as page:
            page.read()
        # The last lines: where to look with a browser, and what to paste there.
        print(f"runwatch demo: open the monitoring console at {base}/console/ and sign in with the token:")
        print(f"  {secret}")
        if wait_for_ctrl_c:
            print("runwatch demo: serving until Ctrl-C ...")
            api.wait()
    except KeyboardInterrupt:
        pass
    finally:
        api.terminate()
        try:
            api.wait(10)
        except subprocess.TimeoutExpired:
            api.kill()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(url: str, api: subprocess.Popen, timeout_seconds: float = 30) -> None:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if api.poll() is not None:
            raise RuntimeError(f"the API exited with code {api.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"the API did not answer {url} within {timeout_seconds} s")
