"""``runwatch api``: serve the monitoring API with gunicorn (registered via an entry point)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from runwatch.settings import DEFAULT_API_BIND, DEFAULT_API_WORKERS, Settings

#: The documented gunicorn configuration shipped with the package.
GUNICORN_CONF = Path(__file__).with_name("gunicorn_conf.py")


def register_api(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "api",
        help="serve the monitoring API with gunicorn (config: api/gunicorn_conf.py)",
        description="Runs gunicorn with api/gunicorn_conf.py. Needs RUNWATCH_DATABASE_URL; RUNWATCH_REDIS_URL "
        "is probed by /health/ready. Extra gunicorn options go after '--'.",
    )
    parser.add_argument("--bind", help=f"address to listen on (default RUNWATCH_API_BIND or {DEFAULT_API_BIND})")
    parser.add_argument(
        "--workers", type=int, help=f"worker processes (default RUNWATCH_API_WORKERS or {DEFAULT_API_WORKERS})"
    )
    parser.add_argument("gunicorn_args", nargs=argparse.REMAINDER, help="passed to gunicorn as is")
    parser.set_defaults(func=_api)


def gunicorn_argv(args: argparse.Namespace) -> list[str]:
    """The gunicorn command line ``runwatch api`` runs."""
    argv = [sys.executable, "-m", "gunicorn", "--config", str(GUNICORN_CONF)]
    if args.bind:
        argv += ["--bind", args.bind]
    if args.workers:
        argv += ["--workers", str(args.workers)]
    extra = list(args.gunicorn_args or ())
    return argv + (extra[1:] if extra[:1] == ["--"] else extra)


def _api(args: argparse.Namespace) -> int:
    # NOTE: every setting is checked here (exit 2 with the message), not in gunicorn's workers.
    Settings.from_env().require_database_url()
    argv = gunicorn_argv(args)
    # NOTE: exec, not an in-process gunicorn: the config must set up Prometheus multiprocess mode
    # before anything imports prometheus_client, and signals should reach gunicorn directly.
    os.execv(argv[0], argv)
    return 0  # pragma: no cover (execv does not return)
