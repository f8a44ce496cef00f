"""gunicorn settings for the monitoring API (``runwatch api`` uses this file).

Values come from ``runwatch.settings.Settings``: ``RUNWATCH_API_BIND``, ``RUNWATCH_API_WORKERS``,
``RUNWATCH_API_TIMEOUT_SECONDS``, ``RUNWATCH_API_ACCESS_LOG`` and ``RUNWATCH_API_LOG_LEVEL`` (see
``runwatch config``). Every setting can be overridden on the gunicorn command line or with
``GUNICORN_CMD_ARGS``. ``PROMETHEUS_MULTIPROC_DIR`` (default: a fresh temp dir) is where workers
share latency samples for ``/metrics``, and where gunicorn's control socket goes (``gunicorn.ctl``).

A malformed setting stops gunicorn here, before any worker is forked, with the message and
exit code 2 (gunicorn only catches ``Exception`` around a config file, so ``SystemExit`` passes).

Engines are created per process after fork: ``api.store.Store`` builds its engine lazily,
keyed by pid, and the app is not preloaded, so no socket is ever shared across workers.
"""

from __future__ import annotations

import glob
import os
import sys
import tempfile
from typing import Protocol

from runwatch.errors import ConfigError
from runwatch.settings import Settings

try:
    _settings = Settings.from_env()
    _settings.require_database_url()  # every worker would fail to boot without it
except ConfigError as _exc:
    print(f"runwatch api: error: {_exc}", file=sys.stderr, flush=True)
    raise SystemExit(2) from None

bind = _settings.api_bind
workers = _settings.api_workers
worker_class = "sync"
timeout = _settings.api_timeout_seconds
graceful_timeout = 10
keepalive = 5
# NOTE: no preload: each worker imports the app (and builds its engine) after fork.
preload_app = False
wsgi_app = "runwatch.api.app:get_app()"
accesslog = _settings.api_access_log
errorlog = "-"
loglevel = _settings.api_log_level
proc_name = "runwatch-api"

# Latency histograms are per process; Prometheus multiprocess mode sums them at scrape time.
# It must be configured before any worker imports prometheus_client, hence here.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="runwatch-api-metrics-"))
# NOTE: gunicorn >= 25.1 opens a control socket (``gunicornc``) at one path per user by default
# (``$XDG_RUNTIME_DIR`` or ``~/.gunicorn/gunicorn.ctl``), so a second server on the host took it
# from the first. Each server keeps its own beside its metrics files; ``-- --control-socket PATH``
# moves it, ``-- --no-control-socket`` turns it off. Older gunicorn ignores the setting.
control_socket = os.path.join(os.environ["PROMETHEUS_MULTIPROC_DIR"], "gunicorn.ctl")


def on_starting(server: object) -> None:
    """Start from an empty metrics directory: files of a previous run would be summed in."""
    for path in glob.glob(os.path.join(os.environ["PROMETHEUS_MULTIPROC_DIR"], "*.db")):
        os.remove(path)


class _Worker(Protocol):
    """What ``child_exit`` reads of gunicorn's worker (gunicorn ships no type information)."""

    pid: int


def child_exit(server: object, worker: _Worker) -> None:
    """Drop a dead worker's live gauges (its counters and histograms are kept, as they should be)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
