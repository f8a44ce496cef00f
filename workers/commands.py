"""CLI commands that need Dramatiq, registered into ``runwatch`` via an entry point."""

from __future__ import annotations

import argparse


def register_demo(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "demo",
        help="run sample jobs covering every outcome and print the runs (embedded servers by default)",
        description="Starts an embedded PostgreSQL and Redis unless RUNWATCH_DATABASE_URL and "
        "RUNWATCH_REDIS_URL are set, migrates, runs a worker on sample actors and prints the runs. "
        "With --broker rabbitmq the jobs and their run events go through RabbitMQ (RUNWATCH_RABBITMQ_URL, "
        "default amqp://guest:guest@127.0.0.1:5672/%%2F), which must be running; Redis is not used.",
    )
    parser.add_argument(
        "--broker",
        choices=("redis", "rabbitmq"),
        default="redis",
        help="the Dramatiq broker of the demo (default redis: embedded when not configured)",
    )
    parser.add_argument(
        "--data-dir",
        help="where the embedded servers keep their data (default: RUNWATCH_DATA_DIR or ~/.local/share/runwatch)",
    )
    parser.add_argument("--keep-servers", action="store_true", help="leave the embedded servers running at exit")
    parser.add_argument(
        "--no-serve",
        action="store_true",
        help="do not keep the API running at the end (it does not anyway when stdin is not a terminal)",
    )
    parser.set_defaults(func=_demo)


def register_drain(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "drain",
        help="apply recorded run events from Redis or RabbitMQ to PostgreSQL (for RUNWATCH_DRAIN=external)",
    )
    parser.add_argument("--once", action="store_true", help="drain what is there now, then exit")
    parser.set_defaults(func=_drain)


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(
        data_dir=args.data_dir, keep_servers=args.keep_servers, serve=not args.no_serve, broker_kind=args.broker
    )


def _drain(args: argparse.Namespace) -> int:
    import signal
    import threading

    from runwatch.db import engine_for
    from runwatch.exposition import serve
    from runwatch.settings import Settings

    from .drain_setup import drainer_and_collector
    from .transport import Transport

    settings = Settings.from_env()
    transport, engine = Transport.from_settings(settings), engine_for(settings.require_database_url())
    drainer, collector = drainer_and_collector(settings, transport, engine)
    if args.once:
        result = drainer.drain_until_empty(max_seconds=600)
        print(
            f"runwatch: drained {result.entries} entries, {result.events} events "
            f"({result.rejected} rejected, {result.late} late)"
        )
        return 0
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    serve(collector, port=settings.metrics_port, host=settings.metrics_host)
    print(f"runwatch: draining {settings.event_stream!r} into PostgreSQL; Ctrl-C to stop")
    drainer.run(stop)
    return 0
