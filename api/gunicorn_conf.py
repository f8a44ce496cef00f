"""gunicorn settings for the monitoring API (``runwatch api`` uses this file).

Every setting can be overridden on the gunicorn command line or with ``GUNICORN_CMD_ARGS``.

| variable | default | meaning |
|---|---|---|
| ``RUNWATCH_API_BIND`` | ``127.0.0.1:8000`` | address to listen on (``0.0.0.0:8000`` in a container) |
| ``RUNWATCH_API_WORKERS`` | ``2`` | worker processes (sync workers; one request at a time each) |
| ``RUNWATCH_API_TIMEOUT_SECONDS`` | ``30`` | a worker silent this long is killed and replaced |
| ``PROMETHEUS_MULTIPROC_DIR`` | a fresh temp dir | where workers share latency samples for ``/metrics`` |

Engines are created per process after fork: ``api.store.Store`` builds its engine lazily,
keyed by pid, and the app is not preloaded, so no socket is ever shared across workers.
"""

from __future__ import annotations

import glob
import os
import tempfile

bind = os.environ.get("RUNWATCH_API_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("RUNWATCH_API_WORKERS", "2"))
worker_class = "sync"
timeout = int(os.environ.get("RUNWATCH_API_TIMEOUT_SECONDS", "30"))
graceful_timeout = 10
keepalive = 5
# NOTE: no preload: each worker imports the app (and builds its engine) after fork.
preload_app = False
wsgi_app = "api.app:get_app()"
accesslog = os.environ.get("RUNWATCH_API_ACCESS_LOG") or None
errorlog = "-"
loglevel = os.environ.get("RUNWATCH_API_LOG_LEVEL", "info")
proc_name = "runwatch-api"

# Latency histograms are per process; Prometheus multiprocess mode sums them at scrape time.
# It must be configured before any worker imports prometheus_client, hence here.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="runwatch-api-metrics-"))


def on_starting(server: object) -> None:
    """Start from an empty metrics directory: files of a previous run would be summed in."""
    for path in glob.glob(os.path.join(os.environ["PROMETHEUS_MULTIPROC_DIR"], "*.db")):
        os.remove(path)


def child_exit(server: object, worker: object) -> None:
    """Drop a dead worker's live gauges (its counters and histograms are kept, as they should be)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[attr-defined]
