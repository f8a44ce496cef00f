"""Listings for the CLI: one row model, two renderings (``--format table|json``).

``json`` is JSON Lines: one object per line, one line per listed item (a run, a dead letter, a
token; a pass for ``heal`` and ``prune``), with the keys of the command's column list, in that
order, always present (``null`` when empty); times are ISO-8601 in UTC with a ``Z``. Summary
lines go to stderr then, so stdout holds JSON only and pipes straight into ``jq``.

``table`` is a rich table when stdout is a terminal, and plain aligned text when it is not
(a pipe, a file, cron's mail): no ANSI escape codes, no box drawing, one line per row.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import IO, Any

FORMATS = ("table", "json")
TABLE, JSON = FORMATS
#: Longest cell a plain table prints; JSON always carries the whole value.
MAX_CELL_CHARS = 80
# APPSEC: text from jobs could carry terminal escape sequences; a table never passes them on.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class Column:
    """One listed field: its JSON key, its table header, how a table may shorten it, whether it wraps."""

    key: str
    header: str = ""
    max_chars: int | None = MAX_CELL_CHARS
    wrap: bool = False

    @property
    def title(self) -> str:
        return self.header or self.key


def add_format(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default=TABLE,
        help="table (default; plain text when stdout is not a terminal) or json (JSON Lines, stable keys)",
    )


def is_tty(stream: IO[str]) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def iso(value: datetime | None) -> str | None:
    """ISO-8601 in UTC with ``Z``; naive datetimes are taken as UTC (PostgreSQL ``timestamptz`` never is)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def epoch_iso(seconds: float | None) -> str | None:
    """An epoch time (Redis scores, Dramatiq timestamps) as ``iso`` text."""
    return None if seconds is None else iso(datetime.fromtimestamp(seconds, UTC))


def json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, Mapping):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_value(v) for v in value]
    return value


def json_line(record: Mapping[str, Any]) -> str:
    return json.dumps(json_value(record), ensure_ascii=False, separators=(",", ":"), default=str)


def cell(value: Any, max_chars: int | None = MAX_CELL_CHARS) -> str:
    """A value as table text: ``-`` for none, seconds-precision UTC times, no control characters."""
    if value is None:
        text = "-"
    elif isinstance(value, bool):
        text = "yes" if value else "no"
    elif isinstance(value, datetime):
        text = iso(value.replace(microsecond=0)) or "-"
    elif isinstance(value, Mapping | list | tuple):
        text = json_line(value) if isinstance(value, Mapping) else ",".join(cell(v, None) for v in value)
    elif isinstance(value, float):
        text = f"{value:.0f}" if value.is_integer() or abs(value) >= 100 else f"{value:.1f}"
    else:
        text = str(value)
    text = _CONTROL.sub("?", text)
    if max_chars is not None and len(text) > max_chars:
        text = text[: max_chars - 1] + "…"
    return text


def emit(
    rows: Iterable[Mapping[str, Any]],
    columns: Sequence[Column],
    fmt: str,
    *,
    stream: IO[str] | None = None,
    empty: str = "(none)",
) -> int:
    """Print ``rows`` in ``fmt``; returns how many. An empty table prints ``empty`` (JSON: nothing)."""
    stream = stream or sys.stdout
    rows = list(rows)
    if fmt == JSON:
        for row in rows:
            stream.write(json_line({c.key: row.get(c.key) for c in columns}) + "\n")
    elif not rows:
        stream.write(empty + "\n")
    elif is_tty(stream):
        _rich_table(rows, columns, stream)
    else:
        stream.write(plain_table(rows, columns) + "\n")
    stream.flush()
    return len(rows)


def emit_record(record: Mapping[str, Any], fmt: str, *, stream: IO[str] | None = None) -> None:
    """One document (a pass, an explanation): a JSON line, or a two-column field/value table."""
    stream = stream or sys.stdout
    if fmt == JSON:
        stream.write(json_line(record) + "\n")
        stream.flush()
        return
    rows = [{"field": k, "value": v} for k, v in _flat(record)]
    emit(rows, (Column("field"), Column("value", max_chars=None, wrap=True)), fmt, stream=stream)


def _flat(record: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    """Nested mappings as dotted fields (``evidence_now.worker_alive``): one fact per table line."""
    for key, value in record.items():
        if isinstance(value, Mapping) and value:
            yield from _flat(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def note(text: str, fmt: str) -> None:
    """A summary line: stdout for a table, stderr for JSON (stdout stays machine-readable)."""
    print(text, file=sys.stderr if fmt == JSON else sys.stdout, flush=True)


def plain_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[Column]) -> str:
    table = [[c.title for c in columns]]
    table += [[cell(row.get(c.key), c.max_chars) for c in columns] for row in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(columns))]
    lines = ["  ".join(text.ljust(w) for text, w in zip(r, widths, strict=True)).rstrip() for r in table]
    lines.insert(1, "  ".join("-" * min(w, MAX_CELL_CHARS) for w in widths).rstrip())
    return "\n".join(lines)


def _rich_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[Column], stream: IO[str]) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, header_style="bold", pad_edge=False)
    for c in columns:
        # Short fields keep one line each; long text (``wrap``) folds into the room left.
        table.add_column(c.title, overflow="fold" if c.wrap else "ellipsis", no_wrap=not c.wrap)
    for row in rows:
        # APPSEC: Text(), never a str: rich would read "[...]" in job text as markup.
        table.add_row(*(Text(cell(row.get(c.key), None)) for c in columns))
    Console(file=stream, highlight=False).print(table)
