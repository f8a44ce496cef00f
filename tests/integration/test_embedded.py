"""The embedded default really starts PostgreSQL and Redis on TCP, reuses them, and stops them."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
import redis

from runwatch import embedded


def _answers(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=0.5):
            return True
    except OSError:
        return False


def _wait_closed(url: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while _answers(url):
        assert time.monotonic() < deadline, f"{url} still answers {timeout}s after stop()"
        time.sleep(0.05)


@pytest.mark.embedded
def test_start_connect_reuse_stop(tmp_path: Path) -> None:
    lines: list[str] = []
    servers = embedded.start(tmp_path, log=lines.append)
    try:
        assert servers.data_dir == tmp_path.resolve()
        assert servers.database_url.startswith("postgresql+psycopg://")
        assert servers.redis_url.startswith("redis://127.0.0.1:")
        assert len(lines) == 2 and all("started" in line for line in lines)

        with psycopg.connect(servers.database_url.replace("+psycopg", "", 1)) as conn:
            assert conn.execute("select 1, current_database()").fetchone() == (1, "runwatch")
        client = redis.Redis.from_url(servers.redis_url)
        try:
            assert client.ping() is True
        finally:
            client.close()

        # A second start() in the same data dir reuses the running servers.
        again = embedded.start(tmp_path, log=lines.append)
        assert again == servers
        assert all("reusing" in line for line in lines[2:]) and len(lines) == 4
    finally:
        embedded.stop(servers)

    _wait_closed(servers.database_url)
    _wait_closed(servers.redis_url)
    embedded.stop(servers)  # idempotent: safe to call again (e.g. from atexit)


@pytest.mark.embedded
def test_running_restarts_an_existing_cluster(tmp_path: Path) -> None:
    with embedded.running(tmp_path, log=lambda *_: None) as first:
        pass
    _wait_closed(first.database_url)
    # Second run: the cluster exists (no initdb), the database is still there.
    with (
        embedded.running(tmp_path, log=lambda *_: None) as second,
        psycopg.connect(second.database_url.replace("+psycopg", "", 1)) as conn,
    ):
        assert conn.execute("select current_database()").fetchone() == ("runwatch",)
    _wait_closed(second.database_url)
    _wait_closed(second.redis_url)


@pytest.mark.embedded
def test_stop_one_then_start_keeps_the_urls(tmp_path: Path) -> None:
    servers = embedded.start(tmp_path, log=lambda *_: None)
    try:
        embedded.stop_one(servers, "postgres")
        _wait_closed(servers.database_url)
        client = redis.Redis.from_url(servers.redis_url)
        client.set("kept", "1")
        embedded.stop_one(servers, "redis")
        _wait_closed(servers.redis_url)

        again = embedded.start(tmp_path, log=lambda *_: None)
        assert again == servers  # same ports: clients configured before the outage reconnect
        with psycopg.connect(again.database_url.replace("+psycopg", "", 1)) as conn:
            assert conn.execute("select current_database()").fetchone() == ("runwatch",)
        assert client.get("kept") is None  # Redis persists nothing: an outage loses its data
        client.close()
        with pytest.raises(ValueError):
            embedded.stop_one(servers, "mysql")
    finally:
        embedded.stop(servers)
