"""``runwatch heal``: passes, dry runs and ``--explain`` (``runwatch prune`` is in ``runwatch.retention``)."""

from __future__ import annotations

import argparse
import signal
import threading
from typing import Any

from runwatch import output
from runwatch.errors import ConfigError
from runwatch.settings import DEFAULT_HEAL_INTERVAL_SECONDS, Settings

from .keys import DEFAULT_NAMESPACE


def register_heal(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("heal", help="resolve stale runs on broker evidence (single-flight; cron-safe)")
    parser.add_argument(
        "--namespace",
        default=DEFAULT_NAMESPACE,
        help=f"Dramatiq's Redis namespace (Redis only; default {DEFAULT_NAMESPACE})",
    )
    parser.add_argument("--once", action="store_true", help="one pass, then exit (for cron)")
    parser.add_argument(
        "--interval-seconds",
        type=float,
        default=float(DEFAULT_HEAL_INTERVAL_SECONDS),
        help=f"between passes without --once (default {DEFAULT_HEAL_INTERVAL_SECONDS})",
    )
    parser.add_argument("--dry-run", action="store_true", help="show what a pass would do, change nothing")
    # NOTE: no default here: an unset --limit leaves the healer's own (runwatch.healer.DEFAULT_LIMIT).
    parser.add_argument("--limit", type=int, help="at most this many runs per pass (default: the healer's limit)")
    parser.add_argument("--type", action="append", dest="types", help="only this operation type (repeatable)")
    parser.add_argument("--tenant", action="append", type=int, dest="tenants", help="only this tenant (repeatable)")
    parser.add_argument("--explain", type=int, metavar="RUN_ID", help="why this run is (not) healed, and what next")
    output.add_format(parser)
    parser.set_defaults(func=_heal)


#: A pass's decisions as listed (``heal --format json``: the ``decisions`` of each pass's line).
DECISION_COLUMNS = (
    output.Column("id", "run"),
    output.Column("action"),
    output.Column("reason_code", "reason"),
    output.Column("why", wrap=True),
    output.Column("threshold_seconds", "threshold s"),
    output.Column("threshold_source", "source"),
    output.Column("age_seconds", "age s"),
    output.Column("message_found_in", "message found in"),
    output.Column("broker_checked", "broker checked"),
    output.Column("worker_alive", "worker alive"),
)
#: Decisions a table shows; JSON lists them all.
TABLE_DECISIONS = 50


def _heal(args: argparse.Namespace) -> int:
    from runwatch import passes
    from runwatch.counter_store import record_to
    from runwatch.db import engine_for
    from runwatch.exposition import serve
    from runwatch.healer import heal_once, options_from
    from runwatch.terminal import Progress
    from runwatch.thresholds import ThresholdPolicy

    from .keys import Keys
    from .locators import locator_for

    settings = Settings.from_env()
    if args.limit is not None and args.limit < 1:
        raise ConfigError("--limit must be at least 1")
    kind = settings.broker_kind
    if kind == "rabbitmq":
        settings.require_rabbitmq_url()
    elif not settings.redis_url:
        raise ConfigError("RUNWATCH_REDIS_URL is not set (the Redis your Dramatiq broker uses)")
    engine = engine_for(settings.require_database_url())
    client = _redis(settings.redis_url) if settings.redis_url else None
    locator = locator_for(settings, redis_client=client, keys=Keys(args.namespace))
    policy = ThresholdPolicy(settings)
    limit = {} if args.limit is None else {"limit": args.limit}
    options = options_from(settings, dry_run=args.dry_run, types=args.types, tenants=args.tenants, **limit)
    if args.explain is not None:
        return _explain(engine, locator, args.explain, options, args.format)
    store, collector = _metrics(settings, kind, client, engine)

    def step() -> None:
        with Progress("heal: pass running"):  # a spinner while a large pass works; terminals only
            result = heal_once(engine, locator, policy, options)
        record_to(store, result.finished)
        _print_pass(result, args.format)

    if args.once or args.dry_run:
        step()
        return 0
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    # NOTE: the backstop healer runs where no worker may: it serves the same metrics they do.
    serve(collector, port=settings.metrics_port, host=settings.metrics_host)
    passes.loop(step, interval_seconds=args.interval_seconds, stop=stop, jitter=False)
    return 0


def _metrics(settings: Settings, kind: str, client: Any, engine: Any) -> tuple[Any, Any]:
    """Where the ended runs are counted, and the exposition: beside the run events (``workers.drain_setup``)."""
    from runwatch.counter_store import LedgerCounters, RedisCounters
    from runwatch.exposition import RunwatchCollector

    from . import amqp

    if settings.transport_for(kind) == "rabbitmq":
        # NOTE: no Redis in a RabbitMQ shop: the counters live in the ledger, the backlog is the event queue's.
        backlog = amqp.queue_backlog(settings.require_rabbitmq_url(), settings.event_stream)
        collector = RunwatchCollector(
            stream=settings.event_stream, engine=engine, counters_in_ledger=True, backlog=backlog
        )
        return LedgerCounters(engine), collector
    client = client if client is not None else _redis(settings.require_redis_url())
    collector = RunwatchCollector(stream=settings.event_stream, redis_client=client, engine=engine)
    return RedisCounters(client, settings.event_stream), collector


def _print_pass(result: Any, fmt: str) -> None:
    decisions = [{c.key: d.get(c.key) for c in DECISION_COLUMNS} for d in result.decisions]
    verb = "would reconcile" if result.dry_run else "reconciled"
    reconciled = sum(d["action"] == "reconcile" for d in decisions) if result.dry_run else result.reconciled
    if fmt == output.JSON:
        output.emit_record(
            {
                "locked_out": result.locked_out,
                "dry_run": result.dry_run,
                "candidates": result.candidates,
                "reconciled": 0 if result.locked_out else reconciled,
                "skipped": dict(result.skipped),
                "paused": result.paused,
                "duration_ms": result.duration_ms,
                "decisions": decisions,
            },
            fmt,
        )
        return
    if result.locked_out:
        print("heal: another pass holds the lock; nothing done")
        return
    if decisions:
        for d in decisions:  # the table's "why" is the reason when there is one
            d["why"] = d["reason_code"] or d["why"] or ""
            if not d["broker_checked"]:
                d["message_found_in"] = "not checked"
            elif d["message_found_in"] is None:
                d["message_found_in"] = "not found"
        table = [c for c in DECISION_COLUMNS if c.key not in ("reason_code", "broker_checked")]
        output.emit(decisions[:TABLE_DECISIONS], table, fmt)
        if len(decisions) > TABLE_DECISIONS:
            print(f"... and {len(decisions) - TABLE_DECISIONS} more (--format json lists them all)")
    skipped = ", ".join(f"{n} {why}" for why, n in sorted(result.skipped.items())) or "none"
    print(
        f"heal: {result.candidates} stale candidate(s), {verb} {reconciled}, skipped: {skipped}"
        f"{'; paused: ' + result.paused if result.paused else ''} ({result.duration_ms:.0f} ms)"
    )


def _explain(engine, locator, run_id: int, options: Any, fmt: str) -> int:
    """What the next pass would do to one run, judged with the options the passes use."""
    from runwatch.lookups import db_now, run_by_id
    from runwatch.verdicts import Action, decide

    with engine.connect() as conn:
        run = run_by_id(conn, run_id)
        now = db_now(conn)
    if run is None:
        raise ConfigError(f"no run with id {run_id}")
    out: dict[str, Any] = {"run": run_id, "status": run["status"], "outcome": run["outcome"]}
    if run["status"] == "completed":
        out["explanation"] = (
            "reconciled by " + run["reconciliation_source"] if run["reconciled_at"] else "completed by the job itself"
        ) + "; the healer never touches terminal runs"
        out["reconciliation"] = run["reconciliation_evidence"]
    else:
        queued = run["status"] == "queued"
        out.update(
            {
                "threshold_seconds": run["queued_stale_seconds"] if queued else run["running_stale_seconds"],
                "threshold_source": run["threshold_source"],
                "stale_at": run["stale_at"],
                "freshness": "likely_stale" if run["stale_at"] and run["stale_at"] <= now else "fresh_active",
                "healer_last_checked_at": run["healer_checked_at"],
                "healer_last_found": run["healer_note"],
            }
        )
        if run["stale_at"] > now:
            out["next"] = f"nothing until {run['stale_at'].isoformat()}; progress reports push that deadline back"
        else:
            candidate = {**run, "db_now": now}
            verdict = decide(candidate, locator.observe([candidate])[run_id], options)
            out["next"] = (
                f"the next pass reconciles it as {verdict.reason.code}"
                if verdict.reason is not None and verdict.action is Action.RECONCILE
                else f"the next pass leaves it: {verdict.note}"
            )
            out["evidence_now"] = verdict.as_dict()
    output.emit_record(out, fmt)
    return 0


def _redis(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url)
