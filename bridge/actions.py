"""The action executor: carry out the requeues and purges operators asked for through the API.

The API only writes an action and the letters it selected (``runwatch.actions``); this pass does
the broker work with the bridge's own code paths over a ``LetterStore``: ``requeue.requeue``
(move, idempotent requeued message id, the new run recorded) and ``LetterStore.remove``. A letter
that is no longer in the broker (requeued, purged or expired meanwhile) is counted as skipped, not as an error. Work per
pass is bounded; an action with letters left stays ``running`` and goes on in the next pass. One
executor at a time across processes (a session advisory lock).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import Engine, text

from runwatch import action_steps as steps
from runwatch import events as ev
from runwatch import passes
from runwatch.actions import PURGE
from runwatch.thresholds import ThresholdPolicy

from . import requeue as rq
from .letter_store import LetterStore

logger = logging.getLogger("runwatch.bridge")

#: Letters handled per pass, over all actions.
DEFAULT_MAX_LETTERS = 500
#: Letters read from the ledger per round trip.
ITEM_BATCH = 100
PASS_NAME = passes.ACTIONS.name
_BROKER = {"redis": "Redis", "rabbitmq": "RabbitMQ"}
_LOCK = text("SELECT pg_try_advisory_lock(:key)")
_UNLOCK = text("SELECT pg_advisory_unlock(:key)")
_GONE = "the dead letter was no longer in the broker (requeued, purged or expired meanwhile)"


@dataclass
class ActionsResult:
    actions: int = 0
    requeued: int = 0
    purged: int = 0
    skipped: int = 0
    finished: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    locked_out: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def execute_once(
    letters: LetterStore, engine: Engine, policy: ThresholdPolicy, *, max_letters: int = DEFAULT_MAX_LETTERS
) -> ActionsResult:
    """Work on open actions, oldest first, up to ``max_letters`` letters; returns what was done."""
    started = time.time()
    result = ActionsResult()
    with engine.connect() as lock:
        if not lock.execute(_LOCK, {"key": passes.ACTIONS.lock_key}).scalar():
            result.locked_out = True
            return result
        lock.commit()  # NOTE: the session lock outlives the transaction; no transaction stays open.
        try:
            budget = max_letters
            with engine.connect() as conn:
                actions = steps.open_actions(conn)
            for action in actions:
                if budget <= 0:
                    break
                result.actions += 1
                budget = _execute(letters, engine, policy, action, budget, result)
            with engine.begin() as conn:
                passes.record(conn, PASS_NAME, started=started, status=passes.PassStatus.OK, result=result.as_dict())
        finally:
            lock.execute(_UNLOCK, {"key": passes.ACTIONS.lock_key})
            lock.commit()
    return result


def _execute(letters: LetterStore, engine, policy, action: dict[str, Any], budget: int, result: ActionsResult) -> int:
    with engine.begin() as conn:
        if not steps.start_action(conn, action["id"]):
            return budget
    while budget > 0:
        with engine.connect() as conn:
            items = steps.open_items(conn, action["id"], limit=min(budget, ITEM_BATCH))
        if not items:
            with engine.begin() as conn:
                if steps.finish_action(conn, action["id"]):
                    result.finished.append(action["id"])
            return budget
        for item in items:
            budget -= 1
            try:
                outcome, new_run, note = _one(letters, engine, policy, action, item)
            except letters.transient_errors as exc:
                # NOTE: transient: the action stays running and the next pass resumes at this letter.
                with engine.begin() as conn:
                    steps.note_error(
                        conn,
                        action["id"],
                        f"retrying: {_BROKER.get(letters.broker, letters.broker)} unavailable ({type(exc).__name__})",
                    )
                raise
            except Exception as exc:  # a letter the broker refuses to move (wrong key types, no queue), or a bug
                logger.exception("operator action %s failed", action["id"])
                error = f"{type(exc).__name__}: {ev.sanitize_error(str(exc))}"
                with engine.begin() as conn:
                    steps.finish_action(conn, action["id"], error=error)
                result.failed.append(action["id"])
                return budget
            setattr(result, outcome, getattr(result, outcome) + 1)
            with engine.begin() as conn:
                steps.finish_item(conn, action, item, outcome, new_run_id=new_run, note=note)
    return budget


def _one(letters: LetterStore, engine, policy, action, item) -> tuple[str, int | None, str | None]:
    """Requeue or purge one selected letter: (result, new run id, note)."""
    letter = letters.get(item["queue_name"], item["redis_message_id"])  # NOTE: the mirror's letter id column
    if letter is None or letter.message_id != item["message_id"]:
        return steps.SKIPPED, None, _GONE
    if action["kind"] == PURGE:
        return (steps.PURGED, None, None) if letters.remove(letter) else (steps.SKIPPED, None, _GONE)
    outcome = rq.requeue(letters, engine, policy, [letter])
    if outcome.requeued:
        _old, new_run, message_id = outcome.requeued[0]
        return steps.REQUEUED, new_run, f"requeued as message {message_id}"
    return steps.SKIPPED, None, ev.sanitize_error("; ".join(outcome.skipped) or _GONE)
