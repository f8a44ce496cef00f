"""A RabbitMQ node of a test's own, from the installed ``rabbitmq-server``, in a temporary directory.

The acceptance suite stops and restarts its broker; doing that to the machine's server (5672)
would break every other test session using it. This node has its own name, AMQP and
distribution ports, data and log directories, an empty plugins file and its own config (the
machine's ``/etc/rabbitmq`` files are not read: they name port 5672), so restarting it disturbs
nothing else. Its durable queues and persistent messages live in its data directory and survive
``restart`` as on any RabbitMQ server.

Runs as the current user: Debian's ``/usr/sbin/rabbitmq-server`` is a wrapper that switches to
the ``rabbitmq`` user, so the script it wraps is started directly (HOME is the node's directory,
where Erlang writes the node's cookie). ``missing()`` says why no node can start (no binary).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from tests.support.net import free_port

#: A cold start of RabbitMQ 3.10 takes ~5 s on an idle 2-core machine; a loaded one, much more.
START_SECONDS = 120
STOP_SECONDS = 60


def server_script() -> Path | None:
    """The ``rabbitmq-server`` script to run (the one Debian's su-wrapper wraps), or None."""
    found = shutil.which("rabbitmq-server") or shutil.which("rabbitmq-server", path="/usr/lib/rabbitmq/bin")
    if found is None:
        return None
    path = Path(found).resolve()
    if path.name == "rabbitmq-script-wrapper":  # Debian: /usr/lib/rabbitmq/bin/rabbitmq-server is the real one
        path = path.with_name("rabbitmq-server")
    return path if path.exists() else None


def missing() -> str | None:
    """Why no node of our own can start here (None: it can)."""
    return None if server_script() is not None else "no rabbitmq-server binary on this machine"


class RabbitNode:
    """One RabbitMQ node: ``start``, ``stop`` (graceful, like a service stop) and ``restart``."""

    def __init__(self, base: Path, *, management: bool = False) -> None:
        script = server_script()
        if script is None:
            raise RuntimeError(missing())
        self.script, self.base = script, base
        self.port, self.dist_port = free_port(), free_port()
        self.name = f"rw-test-{uuid.uuid4().hex[:8]}@localhost"
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        config = f"listeners.tcp.local = 127.0.0.1:{self.port}\ndisk_free_limit.absolute = 50MB\n"
        #: The HTTP API of the management plugin, when the node runs it (``management=True``).
        self.management_url: str | None = None
        if management:
            http_port = free_port()
            self.management_url = f"http://guest:guest@127.0.0.1:{http_port}"
            config += f"management.tcp.ip = 127.0.0.1\nmanagement.tcp.port = {http_port}\n"
            config += "collect_statistics_interval = 500\n"  # NOTE: unacked counts within a second, not 5 s
        (base / "plugins").write_text("[rabbitmq_management].\n" if management else "")
        (base / "rabbitmq-env.conf").write_text("")
        (base / "rabbitmq.conf").write_text(config)

    def env(self) -> dict[str, str]:
        b = self.base
        return {
            **os.environ,
            "HOME": str(b),
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_MNESIA_BASE": str(b / "mnesia"),
            "RABBITMQ_LOG_BASE": str(b / "log"),
            "RABBITMQ_PID_FILE": str(b / "node.pid"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(b / "plugins"),
            "RABBITMQ_CONFIG_FILE": str(b / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(b / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(b / "rabbitmq-env.conf"),
        }

    def start(self) -> RabbitNode:
        """Start the node and return once it accepts AMQP connections."""
        self.starts += 1
        log = open(self.base / f"server.{self.starts}.log", "wb")  # noqa: SIM115 (the child keeps it)
        self.proc = subprocess.Popen(
            [str(self.script)], env=self.env(), cwd=self.base, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: stop() reaches beam and its helpers, nothing else
        )  # fmt: skip
        log.close()
        self._wait_ready()
        return self

    def stop(self) -> None:
        """Stop the node gracefully (SIGTERM, as a service stop does) and wait until it is gone."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        with contextlib.suppress(ProcessLookupError):  # epmd is a daemon of its own; anything else goes
            os.killpg(proc.pid, signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    def answers(self) -> bool:
        import pika
        import pika.exceptions
        from runwatch.bridge import amqp

        try:
            amqp.connect(self.url, timeout_seconds=2).close()
        except (pika.exceptions.AMQPError, OSError):
            return False
        if self.management_url is None:
            return True
        from runwatch.bridge import management

        try:  # NOTE: the plugin starts after the AMQP listener
            management.unacked_counts(self.management_url, "/", [], credentials=("guest", "guest"))
        except management.ManagementUnavailable:
            return False
        return True

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_SECONDS
        while not self.answers():
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"RabbitMQ node {self.name} exited {self.proc.returncode}: {self._log_tail()}")
            if time.monotonic() >= deadline:
                raise TimeoutError(f"RabbitMQ node {self.name}: no AMQP within {START_SECONDS}s: {self._log_tail()}")
            time.sleep(0.2)

    def _log_tail(self) -> str:
        path = self.base / f"server.{self.starts}.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else "(no log)"


@contextlib.contextmanager
def rabbit_node(base: Path, *, management: bool = False) -> Iterator[RabbitNode]:
    """A started node in ``base`` (with the management plugin if asked), stopped at the end."""
    node = RabbitNode(base, management=management)
    try:
        yield node.start()
    finally:
        node.stop()
