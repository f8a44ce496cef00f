"""The ``runwatch`` command line.

Core commands live here; commands that need Dramatiq (``demo``, ``drain``) are contributed by
the ``workers`` package through the ``runwatch.commands`` entry point group, so this package
never imports Dramatiq itself.
"""

from __future__ import annotations

import argparse
import logging
import sys
from importlib.metadata import entry_points

from .errors import RunwatchError
from .settings import Settings


def _migrate(args: argparse.Namespace) -> int:
    from .migrate import upgrade

    url = Settings.from_env().require_database_url()
    revision = upgrade(url)
    print(f"runwatch: schema is at revision {revision}")
    return 0


def _runs(args: argparse.Namespace) -> int:
    from .db import engine_for
    from .report import format_runs, recent_runs

    engine = engine_for(Settings.from_env().require_database_url())
    with engine.connect() as conn:
        print(format_runs(recent_runs(conn, limit=args.limit)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="runwatch", description="Run-lifecycle monitoring for Dramatiq.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    migrate = sub.add_parser("migrate", help="create or upgrade the ledger schema (idempotent)")
    migrate.set_defaults(func=_migrate)
    runs = sub.add_parser("runs", help="print the most recent runs as a table")
    runs.add_argument("--limit", type=int, default=30, help="how many runs (default 30)")
    runs.set_defaults(func=_runs)
    for entry in entry_points(group="runwatch.commands"):
        try:
            register = entry.load()
        except ImportError as exc:  # a broken plugin must not take the other commands down
            print(f"runwatch: command {entry.name!r} unavailable: {exc}", file=sys.stderr)
            continue
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.func(args)
    except RunwatchError as exc:
        print(f"runwatch: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
