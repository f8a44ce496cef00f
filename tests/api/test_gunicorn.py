"""`runwatch api` really serves: gunicorn with two workers, over HTTP, on a free port."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from runwatch.tokens import create_token
from tests.support.net import free_port


def request(port: int, path: str, token: str | None = None) -> tuple[int, http.client.HTTPMessage, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def wait_ready(proc: subprocess.Popen, port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"gunicorn exited with {proc.returncode}: {proc.stderr.read().decode()[-2000:]}")
        try:
            if request(port, "/health/live")[0] == 200:
                return
        except OSError:
            time.sleep(0.05)  # NOTE: polling a port against a deadline, not waiting for a state
    raise AssertionError(f"gunicorn did not answer within {timeout}s")


@pytest.fixture
def served(database_url: str, servers, tmp_path) -> Iterator[int]:
    port = free_port()
    env = {**os.environ, "RUNWATCH_DATABASE_URL": database_url, "RUNWATCH_REDIS_URL": servers.redis_url,
           "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "runwatch.cli", "api", "--bind", f"127.0.0.1:{port}", "--workers", "2"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        wait_ready(proc, port)
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stderr.close()


def test_runwatch_api_serves_the_contract_over_http(served, engine):
    from tests.support.seed import insert_run

    with engine.begin() as conn:
        token, _ = create_token(conn, name="http", tenant_ids=None)
        run_id = insert_run(conn)
    status, headers, body = request(served, "/api/admin/operations", token)
    assert status == 200 and [i["id"] for i in json.loads(body)["data"]] == [run_id]
    status, headers, body = request(served, "/api/admin/operations")
    assert status == 401 and headers["content-type"] == "application/problem+json"
    assert request(served, f"/api/admin/operations/{run_id}", token)[0] == 200
    assert request(served, "/health/ready")[0] == 200
    # Both workers answer with the same cursor key: follow a page from whichever worker serves it.
    with engine.begin() as conn:
        for _ in range(3):
            insert_run(conn)
    link = json.loads(request(served, "/api/admin/operations?limit=1", token)[2])["links"]["next"]
    for _ in range(6):
        assert request(served, link, token)[0] == 200
    metrics = request(served, "/metrics")[2].decode()
    assert "runwatch_runs{" in metrics and 'route="/api/admin/operations"' in metrics


def _sign_in_cookie(port: int, headers: dict[str, str]) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/console/sign-in", headers=headers)
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200
        return resp.headers["set-cookie"]
    finally:
        conn.close()


def test_console_cookies_are_secure_behind_a_trusted_tls_proxy(served):
    # gunicorn trusts X-Forwarded-Proto from FORWARDED_ALLOW_IPS (default: loopback, as here).
    assert "secure" in _sign_in_cookie(served, {"X-Forwarded-Proto": "https"}).lower()
    plain = _sign_in_cookie(served, {}).lower()
    assert "secure" not in plain and "httponly" in plain and "samesite=strict" in plain


def test_each_server_has_a_control_socket_of_its_own(served, tmp_path):
    # NOTE: gunicorn >= 25.1 defaults to one path per user (~/.gunicorn/gunicorn.ctl): a second
    # server on the host took it from the first. Each now keeps it beside its metrics files.
    assert (tmp_path / "gunicorn.ctl").is_socket()
