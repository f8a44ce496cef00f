"""``runwatch runs``: the API's run list (same filters, same query) for an operator's terminal.

A message id from a worker log finds its run in one command, with the runs that requeued it
(``--message-id``); ``--queue``, ``--actor`` and ``--since`` narrow a listing the way an
incident is usually described ("the invoices queue, the last two hours").
"""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from . import output
from .lifecycle import Freshness, Outcome, Status
from .reasons import Source

DEFAULT_LIMIT = 30
#: Columns of ``runwatch runs``, in JSON key order (the API's list item names where they overlap).
COLUMNS = (
    output.Column("id"),
    output.Column("created_at", "created"),
    output.Column("started_at", "started"),
    output.Column("completed_at", "completed"),
    output.Column("type"),
    output.Column("queue_name", "queue"),
    output.Column("actor_name", "actor"),
    output.Column("status"),
    output.Column("outcome"),
    output.Column("freshness_state", "freshness"),
    output.Column("reconciled"),
    output.Column("reconciliation_source", "source"),
    output.Column("reason_code", "reason"),
    output.Column("tenant_id", "tenant"),
    output.Column("attempts"),
    output.Column("retry_of"),
    output.Column("message_id", "message id", max_chars=None, wrap=True),
    output.Column("initiator_name", "initiator"),
    output.Column("operator_message", "message", max_chars=60, wrap=True),
)
#: Columns a terminal table leaves out (JSON keeps them all): a terminal has 80 to 200 columns.
_TABLE_SKIPS = frozenset({"started_at", "reconciled", "reconciliation_source", "initiator_name", "actor_name"})
_AGO = re.compile(r"(\d+)\s*([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def since(value: str) -> datetime:
    """``2h``, ``30m``, ``7d``, ``1w``, ``90s`` ago, or an ISO-8601 time (no zone: UTC)."""
    match = _AGO.fullmatch(value.strip().lower())
    if match:
        return datetime.now(UTC) - timedelta(seconds=int(match[1]) * _UNIT_SECONDS[match[2]])
    try:
        moment = datetime.fromisoformat(value.strip().replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is neither a duration (90s, 30m, 2h, 7d, 1w) nor an ISO-8601 time"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def register_runs(sub: argparse._SubParsersAction) -> None:
    runs = sub.add_parser(
        "runs",
        help="list runs, newest first, filtered like the API",
        description="Runs, newest first. Filters combine with AND; times are UTC.",
    )
    runs.add_argument("--limit", type=_positive, default=DEFAULT_LIMIT, help=f"how many runs (default {DEFAULT_LIMIT})")
    runs.add_argument("--status", choices=[s.value for s in Status])
    runs.add_argument("--outcome", choices=[o.value for o in Outcome])
    runs.add_argument("--type", help="operation type, e.g. invoices.sync")
    runs.add_argument("--tenant", type=int, metavar="ID", help="tenant id")
    runs.add_argument("--freshness", choices=[f.value for f in Freshness], help="freshness state")
    runs.add_argument("--reconciled", action=argparse.BooleanOptionalAction, help="only (not) reconciled runs")
    runs.add_argument("--source", choices=[s.value for s in Source], help="reconciliation source")
    runs.add_argument("--message-id", help="the run of this Dramatiq message id, with its requeues")
    runs.add_argument("--queue", help="Dramatiq queue name")
    runs.add_argument("--actor", help="Dramatiq actor name")
    runs.add_argument("--since", type=since, metavar="WHEN", help="created since: 2h, 30m, 7d, or an ISO-8601 time")
    runs.add_argument("--until", type=since, metavar="WHEN", help="created before: same forms as --since")
    output.add_format(runs)
    runs.set_defaults(func=_runs)


def filters_of(args: argparse.Namespace):
    from .queries import RunFilters

    return RunFilters(
        status=args.status,
        outcome=args.outcome,
        type=args.type,
        tenant_id=args.tenant,
        freshness_state=args.freshness,
        reconciled=args.reconciled,
        reconciliation_source=args.source,
        created_after=args.since,
        created_before=args.until,
        message_family=args.message_id,
        queue_name=args.queue,
        actor_name=args.actor,
    )


def rows_for_output(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Operator messages masked (jobs write them verbatim; errors and reasons are masked when stored)."""
    from . import redact

    redactor = redact.default()
    for row in rows:
        # APPSEC: the recorder stores operator messages as the job wrote them; mask them on the way out.
        if row.get("operator_message"):
            row["operator_message"] = redactor.text(row["operator_message"])
    return rows


def _runs(args: argparse.Namespace) -> int:
    from .db import engine_for
    from .queries import list_runs
    from .settings import Settings

    engine = engine_for(Settings.from_env().require_database_url())
    with engine.connect() as conn:
        # APPSEC: the CLI reads the database directly, so it is not a tenant-scoped principal.
        rows = list_runs(conn, tenant_ids=None, filters=filters_of(args), limit=args.limit, operator_columns=True)
    rows = rows_for_output(rows)
    columns: tuple[output.Column, ...] = COLUMNS
    if args.format == output.TABLE:
        columns = tuple(c for c in COLUMNS if c.key not in _TABLE_SKIPS)
        for row in rows:  # seconds are enough on a terminal; JSON keeps microseconds
            for key in ("created_at", "started_at", "completed_at"):
                if row[key]:
                    row[key] = row[key][:19] + "Z"
    output.emit(rows, columns, args.format, empty="(no runs match)")
    if len(rows) == args.limit:
        output.note(f"({len(rows)} runs shown, --limit reached; older ones may match too)", args.format)
    return 0
