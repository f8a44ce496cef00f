"""Query-parameter validation at the edge: every value is checked before any SQL sees it.

Unknown parameters, repeated parameters, NUL bytes, bad enums, non-integers and
out-of-range limits are all a 400 naming the parameter; the raw value is never echoed back.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from datetime import datetime

import falcon

from runwatch.lifecycle import Freshness, Outcome, Status
from runwatch.queries import Position, RunFilters
from runwatch.reasons import CATALOGUE, Source

from . import cursor
from .errors import invalid_param

#: Page size when the client names none, and the most it may ask for.
DEFAULT_LIMIT = 50
MAX_LIMIT = 200
#: Longest ``type`` filter value worth sending to the database (types are short names).
MAX_TEXT_CHARS = 1000

STATUSES = tuple(s.value for s in Status)
OUTCOMES = tuple(o.value for o in Outcome)
FRESHNESS_STATES = tuple(f.value for f in Freshness)
SOURCES = tuple(s.value for s in Source)
REASON_CODES = tuple(CATALOGUE)
INCLUDES = ("diagnostics",)
_BOOLEANS = {"true": True, "1": True, "false": False, "0": False}

LIST_PARAMS = frozenset(
    {"status", "outcome", "type", "tenant_id", "freshness_state", "reconciled", "reconciliation_source",
     "created_after", "created_before", "limit", "cursor", "queue_name", "actor_name", "reason_code", "message_id"}
)  # fmt: skip
#: Most values one multi-valued filter (status, outcome, type) may list.
MAX_VALUES = 20
DETAIL_PARAMS = frozenset({"include"})

_INTEGER = re.compile(r"-?[0-9]{1,4000}")
# RFC 3339 date-time; a space before the offset is a "+" that form decoding turned into a space.
_DATE_TIME = re.compile(
    r"(\d{4}-\d{2}-\d{2})[Tt](\d{2}:\d{2}:\d{2})(\.\d{1,9})?([Zz]|[+\- ]\d{2}:\d{2})"
)  # fmt: skip


def reject_unknown(req: falcon.Request, allowed: Collection[str]) -> None:
    unknown = sorted(set(req.params) - set(allowed))
    if unknown:
        raise invalid_param(unknown[0][:100], "is not supported by this endpoint")


def single(req: falcon.Request, name: str) -> str | None:
    """The one value of ``name``, or ``None``; repeated or NUL-bearing values are a 400.

    A blank value is a value (``type=`` asks for the empty type); each kind then judges it.
    """
    value = req.params.get(name)
    if value is None:
        return None
    if isinstance(value, list):
        raise invalid_param(name, "may be given only once")
    if "\x00" in value:
        raise invalid_param(name, "must not contain NUL characters")
    return value


def choice(req: falcon.Request, name: str, choices: tuple[str, ...]) -> str | None:
    value = single(req, name)
    if value is not None and value not in choices:
        raise invalid_param(name, "must be one of " + ", ".join(choices))
    return value


def integer(req: falcon.Request, name: str) -> int | None:
    value = single(req, name)
    if value is None:
        return None
    if not _INTEGER.fullmatch(value):
        raise invalid_param(name, "must be an integer")
    return int(value)


def boolean(req: falcon.Request, name: str) -> bool | None:
    value = single(req, name)
    if value is None:
        return None
    if value.lower() not in _BOOLEANS:
        raise invalid_param(name, "must be true, false, 1 or 0")
    return _BOOLEANS[value.lower()]


def date_time(req: falcon.Request, name: str) -> datetime | None:
    value = single(req, name)
    if value is None:
        return None
    match = _DATE_TIME.fullmatch(value)
    if match is None:
        raise invalid_param(name, "must be an RFC 3339 date-time with a time zone, e.g. 2026-01-31T12:00:00Z")
    day, clock, fraction, offset = match.groups()
    offset = "+00:00" if offset in ("Z", "z") else "+" + offset[1:] if offset[0] == " " else offset
    fraction = (fraction or ".0")[:7]  # PostgreSQL keeps microseconds; finer digits cannot match anyway
    try:
        return datetime.fromisoformat(f"{day}T{clock}{fraction}{offset}")
    except ValueError:
        raise invalid_param(name, "is not a valid date-time") from None


def several(
    req: falcon.Request, name: str, choices: tuple[str, ...] | None = None, *, repeated: bool = False
) -> tuple[str, ...] | None:
    """One value or several, comma-separated (``status=queued,running``); any of them matches.

    ``repeated`` also accepts the parameter given several times (HTML forms send checkboxes so).
    """
    raw = req.params.get(name)
    if raw is None:
        return None
    if isinstance(raw, list) and not repeated:
        raise invalid_param(name, "may be given only once (list several values with commas)")
    items = raw if isinstance(raw, list) else [raw]
    if any("\x00" in item for item in items):
        raise invalid_param(name, "must not contain NUL characters")
    if any(len(item) > MAX_TEXT_CHARS for item in items):
        raise invalid_param(name, f"must be at most {MAX_TEXT_CHARS} characters")
    values = tuple(v for item in items for v in (item.split(",") if "," in item else [item]))
    if len(values) > MAX_VALUES:
        raise invalid_param(name, f"may list at most {MAX_VALUES} values")
    if choices is not None and any(v not in choices for v in values):
        raise invalid_param(name, "must be one of " + ", ".join(choices) + " (or several, comma-separated)")
    return values


def text_value(req: falcon.Request, name: str) -> str | None:
    value = single(req, name)
    if value is not None and len(value) > MAX_TEXT_CHARS:
        raise invalid_param(name, f"must be at most {MAX_TEXT_CHARS} characters")
    return value


def list_filters(req: falcon.Request, *, repeated: bool = False) -> RunFilters:
    """The filters of a list request: the contract's six, several values for status, outcome and
    type, and the extensions (source, reason code, queue, actor, message id, a created-at range).

    ``repeated`` (the console's forms) also accepts a multi-valued filter given several times.
    """
    filters = RunFilters(
        status=several(req, "status", STATUSES, repeated=repeated),
        outcome=several(req, "outcome", OUTCOMES, repeated=repeated),
        type=several(req, "type", repeated=repeated),
        queue_name=text_value(req, "queue_name"),
        actor_name=text_value(req, "actor_name"),
        reason_code=choice(req, "reason_code", REASON_CODES),
        message_id=text_value(req, "message_id"),
        tenant_id=integer(req, "tenant_id"),
        freshness_state=choice(req, "freshness_state", FRESHNESS_STATES),
        reconciled=boolean(req, "reconciled"),
        reconciliation_source=choice(req, "reconciliation_source", SOURCES),
        created_after=date_time(req, "created_after"),
        created_before=date_time(req, "created_before"),
    )
    return filters


def limit(req: falcon.Request) -> int:
    value = integer(req, "limit")
    if value is None:
        return DEFAULT_LIMIT
    if not 1 <= value <= MAX_LIMIT:
        raise invalid_param("limit", f"must be between 1 and {MAX_LIMIT}")
    return value


def include_diagnostics(req: falcon.Request) -> bool:
    return choice(req, "include", INCLUDES) == "diagnostics"


def after(req: falcon.Request, filters: object, key: Callable[[], bytes], *, issuer: str = "API") -> Position | None:
    """The keyset position of the request's ``cursor`` (None without one); a 400 for a cursor this
    ``issuer`` did not sign for these same filters (garbage, forged, or for other filters)."""
    raw = single(req, "cursor")
    if raw is None:
        return None
    try:
        return cursor.decode(raw, filters_fingerprint=cursor.fingerprint(filters), key=key())
    except cursor.InvalidCursor:
        raise invalid_param("cursor", f"is not a cursor this {issuer} issued for these filters") from None
