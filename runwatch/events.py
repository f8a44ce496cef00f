"""Run events: what the execution side observed, in the wire form shipped through Redis.

An event is a plain ``dict`` (cheap to build on the per-message path, one JSON encode per
batch). Every event carries the run's metadata so that whichever event reaches the ledger first
can create the row (docs/design.md §3: order-insensitive). ``validate`` is the gate the drainer puts
in front of the ledger: anything that does not pass is rejected with its reason, never applied.
"""

from __future__ import annotations

import itertools
import math
import os
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from . import redact
from .errors import InvalidSummary, InvalidTenantId, ValidationError
from .lifecycle import Outcome
from .reasons import CATALOGUE

ENQUEUED = "enqueued"
STARTED = "started"
PROGRESS = "progress"
ATTEMPT_FAILED = "attempt_failed"
COMPLETED = "completed"
DEAD_LETTERED = "dead_lettered"
KINDS = frozenset({ENQUEUED, STARTED, PROGRESS, ATTEMPT_FAILED, COMPLETED, DEAD_LETTERED})

#: Summary keys every operation type may report; an actor can allow more.
DEFAULT_SUMMARY_KEYS = frozenset(
    {"total", "processed", "succeeded", "failed", "skipped", "created", "updated", "deleted", "errors", "warnings"}
)
#: Operator-facing text is capped so a runaway message cannot bloat a row.
MAX_TEXT_CHARS = 1000
_REASON_CODE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$")


class _EventIds:
    """Unique 128-bit event ids, cheaper than ``uuid4()`` on the per-message path.

    A random 80-bit prefix per process (renewed in forked children) and a 48-bit counter.
    """

    def __init__(self) -> None:
        self._renew()
        os.register_at_fork(after_in_child=self._renew)

    def _renew(self) -> None:
        self._prefix = os.urandom(10).hex()
        self._counter = itertools.count()

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._counter) & 0xFFFFFFFFFFFF:012x}"


new_event_id = _EventIds()


def new_event(kind: str, message_id: str, at: float, meta: Mapping[str, Any], **fields: Any) -> dict[str, Any]:
    """Build one event; ``at`` is epoch seconds from the observer's clock."""
    return {"id": new_event_id(), "kind": kind, "message_id": message_id, "at": at, "meta": meta, **fields}


def expand(events: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Unfold a start the recorder folded into a later event (a job shorter than a flush) into its own event."""
    for event in events:
        start = event.get("start")
        if start is not None:
            # NOTE: a deterministic id, so a redelivered stream entry dedupes this one too.
            started_id = uuid.uuid5(uuid.UUID(event["id"]), "started").hex
            yield {"id": started_id, "kind": STARTED, "message_id": event["message_id"], "meta": event["meta"], **start}
            event = {k: v for k, v in event.items() if k != "start"}
        yield event


def validate_tenant_id(value: object) -> int | None:
    """Accept ``None`` or a positive integer; anything else fails at the call site."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidTenantId(f"tenant id must be a positive integer or None, got {value!r}")
    return value


def validate_summary(counts: Mapping[str, object], allowed: Iterable[str] = DEFAULT_SUMMARY_KEYS) -> dict[str, float]:
    """Return ``counts`` if every key is known and every value a finite, non-negative number."""
    allowed = frozenset(allowed)
    unknown = sorted(set(counts) - allowed)
    if unknown:
        raise InvalidSummary(f"unknown summary key(s) {unknown}; allowed: {sorted(allowed)}")
    clean: dict[str, float] = {}
    for key, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
            raise InvalidSummary(f"summary count {key!r} must be a finite number >= 0, got {value!r}")
        clean[key] = value
    return clean


def validate_reason_code(code: str) -> str:
    """Reason codes are dotted lower-case names, like ``tenant.not_operable``."""
    if not isinstance(code, str) or not _REASON_CODE.match(code):
        raise ValidationError(f"reason code must look like 'area.reason' (lower case, dotted), got {code!r}")
    return code


def operator_text(text: object) -> str:
    """Operator-safe text: a string, single line, capped."""
    if not isinstance(text, str):
        raise ValidationError(f"operator message must be a string, got {type(text).__name__}")
    return " ".join(text.split())[:MAX_TEXT_CHARS]


def job_text(text: object, redactor: redact.Redactor | None = None) -> str:
    """A message a job wrote for operators: ``operator_text`` with secrets masked.

    APPSEC: job authors paste connection strings and keys into messages too; every surface (API,
    console, CLI) then shows the masked text, because only the masked text is shipped.
    """
    if not isinstance(text, str):
        operator_text(text)  # raises the ValidationError that names the type
    return sanitize_error(str(text), redactor)


def sanitize_error(text: str, redactor: redact.Redactor | None = None) -> str:
    """Exception text for evidence: secrets masked (``runwatch.redact``), one line, capped."""
    # NOTE: joined into one line first (a key and its value may sit on two lines) and masked
    # before it is cut, so a cut can never separate a secret from its key.
    return operator_text((redactor or redact.default()).text(" ".join(text.split())))


#: Epoch seconds outside 2000-01-01 .. 2200-01-01 are a clock or encoding bug, not a time.
_EPOCH_RANGE = (946_684_800, 7_258_118_400)


def _check_epoch(what: str, value: object) -> None:
    # PERF: the common case first (three times per event in the drainer); a bool, NaN or an
    # infinity fails this range test and meets the checks below.
    if (type(value) is float or type(value) is int) and _EPOCH_RANGE[0] <= value <= _EPOCH_RANGE[1]:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValidationError(f"{what} is not a number")
    if not _EPOCH_RANGE[0] <= value <= _EPOCH_RANGE[1]:
        raise ValidationError(f"{what} {value!r} is outside the years 2000-2200")


_OUTCOMES = {o.value for o in Outcome} - {Outcome.PENDING.value}
_ABSENT = object()
_REQUIRED_META = ("queue", "actor", "type", "created_at")
_REQUIRED_META_KEYS = frozenset(_REQUIRED_META)


def _is_mapping(value: object) -> bool:
    """PERF: a decoded event is a dict; the ABC check costs ~1 us, three times per event."""
    return type(value) is dict or isinstance(value, Mapping)


def validate(event: Mapping[str, Any]) -> dict[str, Any]:
    """Check an event decoded from the wire; raise ``ValidationError`` naming what is wrong."""
    if not _is_mapping(event):
        raise ValidationError("event is not an object")
    for key in ("id", "kind", "message_id", "at", "meta"):
        if key not in event:
            raise ValidationError(f"event lacks {key!r}")
    if event["kind"] not in KINDS:
        raise ValidationError(f"unknown event kind {event['kind']!r}")
    _check_epoch("event time", event["at"])
    meta = event["meta"]
    if not _is_mapping(meta) or not meta.keys() >= _REQUIRED_META_KEYS:
        raise ValidationError(f"event meta lacks one of {_REQUIRED_META}")
    _check_epoch("created_at", meta["created_at"])
    validate_tenant_id(meta.get("tenant_id"))
    retry_of = meta.get("retry_of")
    if retry_of is not None and (isinstance(retry_of, bool) or not isinstance(retry_of, int) or retry_of < 1):
        raise ValidationError(f"retry_of must be a run id, got {retry_of!r}")
    start = event.get("start")
    if start is not None:
        if not _is_mapping(start):
            raise ValidationError("event start is not an object")
        _check_epoch("start time", start.get("at"))
    summary = event.get("summary", _ABSENT)
    if summary is not _ABSENT and summary != {}:  # PERF: most outcomes report no counts
        if not _is_mapping(summary):
            raise ValidationError("event summary is not an object")
        # NOTE: keys were checked against the actor's catalogue at the call site; here only values.
        validate_summary(summary, summary.keys())
    if event["kind"] == COMPLETED and event.get("outcome") not in _OUTCOMES:
        raise ValidationError(f"completed event has outcome {event.get('outcome')!r}")
    if event["kind"] == DEAD_LETTERED and event.get("reason_code") not in CATALOGUE:
        raise ValidationError(f"dead_lettered event has reason code {event.get('reason_code')!r}")
    return event if isinstance(event, dict) else dict(event)  # PERF: no copy of a decoded event
