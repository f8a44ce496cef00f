"""Helpers shared by the benchmark scripts: errors, progress log, databases, private servers.

The throughput benchmark runs its own PostgreSQL and Redis (``private_servers``): on a shared
machine the system's servers also serve other users, and their CPU could not be attributed.
"""

from __future__ import annotations

import contextlib
import http.client
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg

T0 = time.perf_counter()


class BenchError(Exception):
    """A phase failed or the recorded results are wrong: the run exits non-zero."""


def log(message: str) -> None:
    """Progress on stderr, stamped with the seconds since start."""
    print(f"[{time.perf_counter() - T0:7.1f}s] {message}", file=sys.stderr, flush=True)


def cpu_times() -> tuple[int, int]:
    """(busy, total) clock ticks of every CPU since boot, from the first line of /proc/stat."""
    with open("/proc/stat") as f:
        return parse_cpu_line(f.readline())


def parse_cpu_line(line: str) -> tuple[int, int]:
    """(busy, total) ticks of a ``cpu ...`` line of /proc/stat: idle and iowait are not busy; guest
    time is already inside user and nice, so it is not added twice."""
    ticks = [int(v) for v in line.split()[1:9]]  # user nice system idle iowait irq softirq steal
    idle = ticks[3] + ticks[4]
    return sum(ticks) - idle, sum(ticks)


def wait_until_quiet(*, max_busy: float = 0.25, window_seconds: float = 1.0, timeout_seconds: float = 60.0) -> float:
    """Wait until the machine's CPUs were at most ``max_busy`` busy over one window (what the
    previous phase left running, such as autovacuum or a checkpoint, would be booked to the next);
    give up after ``timeout_seconds`` with a warning. Returns the last window's busy fraction."""
    deadline = time.monotonic() + timeout_seconds
    waited = time.monotonic()
    while True:
        busy0, total0 = cpu_times()
        time.sleep(window_seconds)  # NOTE: the measuring window itself, not a wait for a state
        busy1, total1 = cpu_times()
        busy = (busy1 - busy0) / max(total1 - total0, 1)
        if busy <= max_busy:
            if time.monotonic() - waited > 1.5 * window_seconds:
                log(f"  the machine is quiet now ({busy:.0%} busy), after {time.monotonic() - waited:.0f}s")
            return busy
        if time.monotonic() >= deadline:
            log(f"  warning: the machine is still {busy:.0%} busy after {timeout_seconds:.0f}s; measuring anyway")
            return busy


def libpq_url(url: str) -> str:
    """A SQLAlchemy URL (``postgresql+psycopg://``) as the plain libpq URL psycopg takes."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def database_url(server_url: str, name: str) -> str:
    """The URL of database ``name`` on the server of ``server_url``."""
    return libpq_url(server_url).rsplit("/", 1)[0] + "/" + name


def reset_database(admin_url: str, db_url: str, *, template: str | None = None) -> None:
    """Drop and create the database of ``db_url`` (from ``template`` if given), then migrate it."""
    from runwatch.db import engine_for
    from runwatch.migrate import upgrade

    name = db_url.rsplit("/", 1)[1]
    with psycopg.connect(libpq_url(admin_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    upgrade(db_url)
    engine_for(db_url).dispose()


def drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(libpq_url(admin_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def private_servers(data_dir: Path | None = None, *, redis: bool = True) -> Iterator[tuple[str, str, Path]]:
    """A PostgreSQL and a Redis of our own (runwatch.embedded); yield (pg admin URL, Redis URL, data dir).

    Both are stopped on exit. Their processes serve nothing but the benchmark, so every CPU second
    they spend is the benchmark's. ``redis=False`` stops the Redis at once (a RabbitMQ benchmark
    runs none; the URL is then useless).
    """
    from runwatch import embedded

    with contextlib.ExitStack() as stack:
        if data_dir is None:
            data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="runwatch-bench-servers-")))
        servers = embedded.start(data_dir, log=log)
        if not redis:
            embedded.stop_one(servers, "redis")
            log("stopped the private Redis: this benchmark runs without one")
        try:
            yield libpq_url(servers.database_url), servers.redis_url, data_dir
        finally:
            embedded.stop(servers)


def closed_loop(
    port: int, path: str, headers: dict[str, str], *, requests: int, connections: int, warmup: int = 20
) -> dict:
    """Closed-loop latency of GET ``path``: each of ``connections`` threads sends its share back to back.

    Each thread first sends ``warmup`` requests (connection, worker caches, PostgreSQL buffers).
    Returns p50/p95/p99 in ms, requests per second, non-200 answers and the sample size.
    """
    per_thread = max(1, requests // connections)
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()

    def get(conn: http.client.HTTPConnection) -> int:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        resp.read()
        return resp.status

    def worker(_: int) -> None:
        nonlocal errors
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for _ in range(warmup):
            get(conn)
        mine, bad = [], 0
        for _ in range(per_thread):
            started = time.perf_counter()
            status = get(conn)
            mine.append(time.perf_counter() - started)
            bad += status != 200
        conn.close()
        with lock:
            latencies.extend(mine)
            errors += bad

    started = time.perf_counter()
    with ThreadPoolExecutor(connections) as pool:
        list(pool.map(worker, range(connections)))
    elapsed = time.perf_counter() - started
    q = statistics.quantiles(latencies, n=100)
    return {"p50": q[49] * 1000, "p95": q[94] * 1000, "p99": q[98] * 1000,
            "rps": len(latencies) / elapsed, "errors": errors, "n": len(latencies)}  # fmt: skip
