"""``runwatch deadletters ...`` and ``runwatch bridge scan``: the SRE side of dead letters.

They talk to the broker ``RUNWATCH_BROKER`` names (``Settings.broker_kind``: RabbitMQ when only
``RUNWATCH_RABBITMQ_URL`` is set), through a ``LetterStore`` opened for the command and closed after.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime

from runwatch import output
from runwatch.errors import ConfigError
from runwatch.terminal import Progress, confirm

from .keys import DEFAULT_NAMESPACE


def register_deadletters(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("deadletters", help="list, show, requeue or purge Dramatiq dead letters")
    parser.add_argument(
        "--namespace",
        default=DEFAULT_NAMESPACE,
        help=f"Dramatiq's Redis namespace (default {DEFAULT_NAMESPACE}; Redis only)",
    )
    dsub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = dsub.add_parser("list", help="dead letters with their run ids, reason and age")
    _filters(listing)
    listing.add_argument("--limit", type=int, default=100, help="at most this many rows (default 100)")
    output.add_format(listing)
    listing.set_defaults(func=_list)
    show = dsub.add_parser("show", help="one run's dead letter with the run's evidence")
    show.add_argument("run_id", type=int)
    show.set_defaults(func=_show)
    requeue = dsub.add_parser("requeue", help="enqueue dead letters again, each as a new run linked to the old")
    requeue.add_argument("run_ids", type=int, nargs="*", help="runs to requeue (or use --queue/--actor/--all)")
    _filters(requeue)
    requeue.add_argument("--all", action="store_true", help="every dead letter (of --queue, if given)")
    requeue.add_argument("--dry-run", action="store_true", help="show what would be requeued, change nothing")
    requeue.add_argument("--yes", action="store_true", help="requeue by --all/--queue/--actor without asking")
    requeue.set_defaults(func=_requeue)
    purge = dsub.add_parser("purge", help="delete dead letters (asks first; --yes when not at a terminal)")
    _filters(purge)
    purge.add_argument("--all", action="store_true", help="every queue's dead letters")
    purge.add_argument("--yes", action="store_true", help="delete without asking")
    purge.add_argument("--dry-run", action="store_true", help="count what would be deleted")
    purge.set_defaults(func=_purge)


def register_bridge(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("bridge", help="reconcile runs from the dead-letter queues")
    bsub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    scan = bsub.add_parser("scan", help="one adapter pass: dead letters whose run is not terminal get reconciled")
    scan.add_argument("--namespace", default=DEFAULT_NAMESPACE)
    scan.add_argument("--queue", help="only this queue")
    scan.add_argument("--min-age-seconds", type=float, default=None, help="skip younger dead letters (default 60)")
    scan.add_argument("--dry-run", action="store_true", help="report candidates, change nothing")
    scan.set_defaults(func=_scan)
    from .console_commands import register

    register(bsub)


def _filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--queue", help="only this queue")
    parser.add_argument("--actor", help="only this actor")


def _scope(args: argparse.Namespace) -> str:
    """What a bulk action covers, in words: ' of queue jobs, actor send_invoice'."""
    parts = [f"queue {args.queue}" if args.queue else "", f"actor {args.actor}" if args.actor else ""]
    return (" of " + ", ".join(p for p in parts if p)) if any(parts) else " of every queue"


def _context(args: argparse.Namespace):
    """``(settings, letters, engine, policy)``; use ``letters`` in a ``with`` block (it closes its connection)."""
    from runwatch.db import engine_for
    from runwatch.settings import Settings
    from runwatch.thresholds import ThresholdPolicy

    from .letter_store import letter_store

    settings = Settings.from_env()
    if settings.broker_kind == "rabbitmq":
        settings.require_rabbitmq_url()
    else:
        settings.require_redis_url()
    engine = engine_for(settings.require_database_url())
    letters = letter_store(settings, namespace=args.namespace, engine=engine)
    return settings, letters, engine, ThresholdPolicy(settings)


def _letters(args, letters):
    if args.queue:
        letters.check_queue(args.queue)
    return letters.scan(queue=args.queue, actor=args.actor)


#: Columns of ``deadletters list``, in JSON key order.
LETTER_COLUMNS = (
    output.Column("run_id", "run"),
    output.Column("queue"),
    output.Column("actor"),
    output.Column("dead_lettered_at", "dead lettered"),
    output.Column("age_seconds", "age"),
    output.Column("reason", wrap=True),
    output.Column("message_id", "message id", max_chars=None),
    output.Column("redis_message_id", "redis id", max_chars=None),
)


def _age(seconds: float) -> str:
    seconds = int(seconds)
    return (
        f"{seconds // 86400}d{seconds % 86400 // 3600}h"
        if seconds >= 86400
        else f"{seconds // 3600}h{seconds % 3600 // 60}m{seconds % 60}s"
    )


def _list(args: argparse.Namespace) -> int:
    from runwatch import redact
    from runwatch.lookups import reasons, statuses

    _, store, engine, _ = _context(args)
    letters = []
    with store:
        for letter in _letters(args, store):
            letters.append(letter)
            if len(letters) >= args.limit:
                break
    with engine.connect() as conn:
        runs = statuses(conn, [d.message_id for d in letters if d.message_id])
        found = reasons(conn, runs) if runs else {}
    # APPSEC: a decode error can quote the payload it choked on; it is masked before it is printed.
    redactor = redact.default()
    now = time.time()
    rows = []
    for d in letters:
        run = runs.get(d.message_id)
        age = max(0.0, now - d.dead_at)
        rows.append(
            {
                "run_id": run[1] if run else None,
                "queue": d.queue,
                "actor": d.actor_name,
                "dead_lettered_at": output.epoch_iso(d.dead_at),
                "age_seconds": round(age, 3) if args.format == output.JSON else _age(age),
                "reason": found.get(d.message_id) or redactor.text(d.decode_error or "no run recorded"),
                "message_id": d.message_id,
                "redis_message_id": d.redis_message_id,
            }
        )
        if args.format == output.TABLE:
            rows[-1]["actor"] = d.actor_name or "<undecodable>"
            rows[-1]["dead_lettered_at"] = rows[-1]["dead_lettered_at"][:19] + "Z"
    output.emit(rows, LETTER_COLUMNS, args.format, empty="(no dead letters)")
    if letters:
        limited = "; --limit reached" if len(letters) >= args.limit else ""
        output.note(f"({len(letters)} dead letter(s){limited})", args.format)
    return 0


def _show(args: argparse.Namespace) -> int:
    from runwatch import redact
    from runwatch.lookups import run_by_id

    from .requeue import letter_of_run

    _, store, engine, _ = _context(args)
    with store:
        letter = letter_of_run(store, engine, args.run_id)
    with engine.connect() as conn:
        run = run_by_id(conn, args.run_id)
    assert run is not None  # letter_of_run raised UnknownRun otherwise
    out = {
        "run": {
            k: run[k]
            for k in (
                "id",
                "type",
                "status",
                "outcome",
                "reconciliation_source",
                "reason_code",
                "reason_message",
                "attempts",
                "tenant_id",
            )
        },
        "evidence": run["reconciliation_evidence"],
        "dead_letter": {
            "key": store.dead_letter_name(letter.queue),
            "redis_message_id": letter.redis_message_id,
            "message_id": letter.message_id,
            "dead_lettered_at": datetime.fromtimestamp(letter.dead_at, UTC).isoformat(),
            "actor": letter.actor_name,
            # APPSEC: the dead letter holds the job's arguments as sent: print them masked.
            "args": redact.default().value(list(letter.message.args)) if letter.message else None,
        },
    }
    print(json.dumps(out, indent=2, default=str))
    return 0


def _requeue(args: argparse.Namespace) -> int:
    from .requeue import letter_of_run, requeue

    if args.run_ids and (args.all or args.queue or args.actor):
        raise ConfigError("give run ids, or filters (--queue/--actor/--all), not both")
    if not args.run_ids and not (args.all or args.queue or args.actor):
        raise ConfigError("say what to requeue: run ids, --queue/--actor, or --all")
    _, store, engine, policy = _context(args)
    with store:
        letters = [letter_of_run(store, engine, run_id) for run_id in args.run_ids] or list(_letters(args, store))
        if letters and not args.run_ids and not args.dry_run:
            # A bulk requeue enqueues every job again: asked like purge, refused off a terminal without --yes.
            confirm(f"requeue {len(letters)} dead letter(s){_scope(args)}", yes=args.yes)
        with Progress("requeue", total=len(letters)) as bar:
            result = requeue(store, engine, policy, letters, dry_run=args.dry_run, progress=bar.update)
    verb = "would requeue" if args.dry_run else "requeued"
    for old, new, message_id in result.requeued:
        print(
            f"{verb} run {old if old is not None else '-'} -> "
            f"{'new run ' + str(new) if new is not None else 'a new run'} (message {message_id})"
        )
    for skipped in result.skipped:
        print(f"skipped {skipped}", file=sys.stderr)
    print(f"{verb} {len(result.requeued)} dead letter(s), skipped {len(result.skipped)}")
    return 0


def _purge(args: argparse.Namespace) -> int:
    from .requeue import purge

    if not (args.all or args.queue or args.actor):
        raise ConfigError("say what to purge: --queue Q, --actor A, or --all")
    _, store, _, _ = _context(args)
    with store:
        letters = list(_letters(args, store))
        if letters and not args.dry_run:
            confirm(f"delete {len(letters)} dead letter(s){_scope(args)}", yes=args.yes)
        count = purge(store, letters, dry_run=args.dry_run)
    print(f"{'would delete' if args.dry_run else 'deleted'} {count} dead letter(s)")
    return 0


def _scan(args: argparse.Namespace) -> int:
    from .adapter import DEFAULT_MIN_AGE_SECONDS, reconcile_once

    settings, store, engine, policy = _context(args)
    min_age = DEFAULT_MIN_AGE_SECONDS if args.min_age_seconds is None else args.min_age_seconds
    with store:
        if args.queue:
            store.check_queue(args.queue)
        result = reconcile_once(store, engine, policy, min_age_seconds=min_age, dry_run=args.dry_run, queue=args.queue)
    count_finished(settings, engine, result.finished)
    for line in result.undecodable:
        print(f"undecodable dead letter skipped: {line}", file=sys.stderr)
    lag = result.oldest_unbridged_age_seconds
    print(
        f"scanned {result.scanned} dead letter(s): {result.already_terminal} already terminal, "
        f"{result.candidates} to reconcile, {result.too_recent} too recent, {len(result.undecodable)} undecodable; "
        f"{'would reconcile' if args.dry_run else 'reconciled'} "
        f"{result.candidates if args.dry_run else result.reconciled}"
        f"; oldest unbridged dead letter: {'none' if lag is None else f'{lag:.0f} s'}"
    )
    return 0


def count_finished(settings, engine, finished) -> None:
    """Add the runs a pass ended to /metrics' run counters, where the run events travel (as the drainer does)."""
    from runwatch.counter_store import CounterStore, LedgerCounters, RedisCounters, record_to

    store: CounterStore
    if settings.transport_for(settings.broker_kind) == "rabbitmq":
        store = LedgerCounters(engine)
    else:
        import redis

        store = RedisCounters(redis.Redis.from_url(settings.require_redis_url()), settings.event_stream)
    record_to(store, finished)
