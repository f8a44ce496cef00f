"""The dead-letter adapter: reconcile runs whose failure callback was lost.

A dead letter whose run is not terminal (worker killed between the nack and the write,
events lost) means the broker knows of a failure the ledger never got. Each such run becomes
``completed/failed`` with ``source=adapter_reconciler``, ``run.adapter_out_of_sync`` and
evidence naming the dead-letter entry. The event id is derived from the dead letter, so two
scans at once (or one scan twice) reconcile each run exactly once.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import Engine

from runwatch import events as ev
from runwatch import passes, redact, tracebacks
from runwatch.ledger import apply_events
from runwatch.lookups import statuses
from runwatch.options import INITIATOR_OPTION, RETRY_OF_OPTION, TENANT_OPTION
from runwatch.passes import PassStatus
from runwatch.reasons import ADAPTER_OUT_OF_SYNC
from runwatch.thresholds import ThresholdPolicy

from .letter_store import DeadLetter, LetterStore, location

logger = logging.getLogger("runwatch.bridge")

#: A dead letter younger than this may still have its callback event in flight: leave it.
DEFAULT_MIN_AGE_SECONDS = 60
PASS_NAME = passes.BRIDGE.name
#: How much of a dead letter's own traceback (the previous attempt's) the evidence keeps.
TRACEBACK_TAIL_CHARS = 500
_NAMESPACE = uuid.UUID("6f1c3c1e-5d0b-4c35-9a49-2a8f6f2b6f00")


@dataclass
class AdapterResult:
    scanned: int = 0
    undecodable: list[str] = field(default_factory=list)  # "<dead-letter key>/<letter id>: error"
    already_terminal: int = 0
    too_recent: int = 0
    candidates: int = 0
    reconciled: int = 0
    oldest_unbridged_age_seconds: float | None = None
    dry_run: bool = False
    locked_out: bool = False  # another scan was running: this one did nothing
    duration_seconds: float = 0.0
    #: The runs this pass ended (``statements._FINISHED_COLUMNS``), for the run counters in /metrics.
    finished: list[dict[str, Any]] = field(default_factory=list)

    @property
    def status(self) -> PassStatus:
        return PassStatus.OK

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "finished"}


def reconcile_once(
    letters: LetterStore,
    engine: Engine,
    policy: ThresholdPolicy,
    *,
    now: float | None = None,
    min_age_seconds: float = DEFAULT_MIN_AGE_SECONDS,
    dry_run: bool = False,
    queue: str | None = None,
) -> AdapterResult:
    """One scan of every dead-letter queue of ``letters``; returns what it found and did."""
    now = time.time() if now is None else now

    # NOTE: concurrent scans are harmless (event ids dedupe) but wasteful: one at a time.
    def body(conn, result: AdapterResult) -> None:
        _scan(conn, letters, policy, result, now=now, min_age_seconds=min_age_seconds, queue=queue)

    return passes.run_once(engine, passes.BRIDGE, body, AdapterResult(dry_run=dry_run))


def _scan(conn, store: LetterStore, policy, result: AdapterResult, *, now, min_age_seconds, queue) -> None:
    letters: list[DeadLetter] = []
    message_ids: list[str] = []  # of ``letters``, one each
    for letter in store.scan(queue=queue):
        result.scanned += 1
        if letter.message is None:
            # NOTE: a decoder's error may quote the payload it choked on.
            error = ev.sanitize_error(str(letter.decode_error))
            result.undecodable.append(f"{location(store, letter)}: {error}")
            logger.warning("undecodable dead letter %s skipped: %s", location(store, letter), error)
        else:
            letters.append(letter)
            message_ids.append(letter.message.message_id)
    known = statuses(conn, message_ids)
    unbridged = [
        d for d, message_id in zip(letters, message_ids, strict=True)
        if message_id not in known or known[message_id][0] != "completed"
    ]  # fmt: skip
    result.already_terminal = len(letters) - len(unbridged)
    if unbridged:
        result.oldest_unbridged_age_seconds = round(now - min(d.dead_at for d in unbridged), 3)
    due = [d for d in unbridged if now - d.dead_at >= min_age_seconds]
    result.too_recent = len(unbridged) - len(due)
    result.candidates = len(due)
    if due and not result.dry_run:
        applied = apply_events(conn, [_event(store, d, now) for d in due], policy)
        result.reconciled = applied.runs_written
        result.finished.extend(applied.finished)


def _event(store: LetterStore, letter: DeadLetter, now: float) -> dict[str, Any]:
    message = letter.message
    assert message is not None
    options = message.options
    meta = {
        "queue": letter.queue,
        "actor": message.actor_name,
        "type": message.actor_name,  # the actor's runwatch_type is unknown here; an existing row keeps its own
        "created_at": message.message_timestamp / 1000,
        "tenant_id": options.get(TENANT_OPTION),
        "initiator": options.get(INITIATOR_OPTION),
        "retry_of": options.get(RETRY_OF_OPTION),
        "max_retries": options.get("max_retries"),
    }
    traceback_text = options.get("traceback")
    evidence = {
        **store.evidence(letter),
        "dead_lettered_at": letter.dead_at,
        "found_by": "dead-letter scan: the run was not terminal, its failure callback never reached the ledger",
        "queue": letter.queue,
        "actor": message.actor_name,
        "retries": options.get("retries", 0),
        "max_retries": options.get("max_retries"),
        # NOTE: the dead-letter copy holds the options of the last *enqueue*: this traceback is the
        # previous attempt's, which is why the failure callback captures the final one in the worker.
        "last_enqueued_traceback_tail": _traceback_tail(traceback_text),
    }
    event = ev.new_event(
        ev.DEAD_LETTERED,
        message.message_id,
        now,
        meta,
        reason_code=ADAPTER_OUT_OF_SYNC.code,
        evidence=evidence,
        failure_summary=[{"code": "job.dead_lettered", "message": ADAPTER_OUT_OF_SYNC.message}],
    )
    event["id"] = uuid.uuid5(_NAMESPACE, f"{letter.queue}/{letter.letter_id}").hex
    return event


def _traceback_tail(text: object) -> str | None:
    """The end of Dramatiq's copy of a traceback: host paths made relative, masked before it is cut."""
    if not isinstance(text, str) or not text:
        return None
    return redact.default().text(tracebacks.relative_frames(text))[-TRACEBACK_TAIL_CHARS:]
