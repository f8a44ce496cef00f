"""The run lifecycle (docs/design.md §3), written once in Python.

The database enforces the same rules again (a CHECK constraint on the state pairs and a trigger
on transitions, see ``migrations``); ``tests/integration/test_state_machine_sync.py`` fails when
the two drift apart.
"""

from __future__ import annotations

import enum
from datetime import datetime


class Status(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"


class Outcome(enum.StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    PARTIALLY_SUCCEEDED = "partially_succeeded"
    BLOCKED = "blocked"
    FAILED = "failed"


class Freshness(enum.StrEnum):
    FRESH_ACTIVE = "fresh_active"
    LIKELY_STALE = "likely_stale"
    RECONCILED_FAILED = "reconciled_failed"
    TERMINAL_NORMAL = "terminal_normal"


#: Outcomes a job can end with by itself (terminal_normal).
TERMINAL_OUTCOMES = frozenset({Outcome.SUCCEEDED, Outcome.PARTIALLY_SUCCEEDED, Outcome.BLOCKED, Outcome.FAILED})

#: A lifecycle state: (status, outcome, reconciled).
State = tuple[Status, Outcome, bool]

#: Every state a run may be in. Live runs are pending; only failed runs can be reconciled.
STATES: frozenset[State] = frozenset(
    {(Status.QUEUED, Outcome.PENDING, False), (Status.RUNNING, Outcome.PENDING, False)}
    | {(Status.COMPLETED, outcome, False) for outcome in TERMINAL_OUTCOMES}
    | {(Status.COMPLETED, Outcome.FAILED, True)}
)

_QUEUED: State = (Status.QUEUED, Outcome.PENDING, False)
_RUNNING: State = (Status.RUNNING, Outcome.PENDING, False)
_RECONCILED: State = (Status.COMPLETED, Outcome.FAILED, True)

#: The legal transitions of docs/design.md §3. Staying in the same state is not a transition.
TRANSITIONS: frozenset[tuple[State, State]] = frozenset(
    {(_QUEUED, _RUNNING)}
    | {(_RUNNING, (Status.COMPLETED, outcome, False)) for outcome in TERMINAL_OUTCOMES}
    | {(_QUEUED, (Status.COMPLETED, Outcome.BLOCKED, False))}
    | {(_QUEUED, _RECONCILED), (_RUNNING, _RECONCILED)}
)


#: Two steps in one write, through running: a job shorter than the recorder's flush interval
#: reaches the ledger as "started and finished" at once. Legal only if the row says it started.
THROUGH_RUNNING: frozenset[tuple[State, State]] = frozenset(
    (src, dst)
    for (src, mid) in TRANSITIONS
    if mid == _RUNNING
    for (mid2, dst) in TRANSITIONS
    if mid2 == _RUNNING and (src, dst) not in TRANSITIONS
)


def is_legal(current: State, target: State, *, started: bool = False) -> bool:
    """Tell whether a run in ``current`` may move to ``target`` in one write.

    ``started``: the write records that the run started (``started_at``), so it may pass
    through running on its way to ``target``.
    """
    return (current, target) in TRANSITIONS or (started and (current, target) in THROUGH_RUNNING)


def freshness(
    status: Status | str, outcome: Outcome | str, reconciled: bool, stale_at: datetime | None, now: datetime
) -> Freshness:
    """Derive freshness; the SQL twin is ``report.FRESHNESS_SQL``."""
    if status == Status.COMPLETED:
        if reconciled and outcome == Outcome.FAILED:
            return Freshness.RECONCILED_FAILED
        return Freshness.TERMINAL_NORMAL
    if stale_at is not None and now >= stale_at:
        return Freshness.LIKELY_STALE
    return Freshness.FRESH_ACTIVE
