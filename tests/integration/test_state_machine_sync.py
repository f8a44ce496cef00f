"""The Python state machine and the database constraints agree (procrastinate's test_enum_synced)."""

from __future__ import annotations

from itertools import product

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from runwatch.lifecycle import STATES, Outcome, Status, is_legal

ALL_COMBOS = list(product(Status, Outcome, (False, True)))


def _state_columns(status, outcome, reconciled):
    completed = status == Status.COMPLETED
    return {
        "status": status.value,
        "outcome": outcome.value,
        "completed_at": "2026-01-01T00:00:02Z" if completed else None,
        "reconciled_at": "2026-01-01T00:00:02Z" if reconciled else None,
        "source": "scheduled_reconciler" if reconciled else None,
        "reason_code": "run.stale_running" if reconciled else None,
        "reason_message": "Run stopped reporting progress" if reconciled else None,
        "evidence": "{}" if reconciled else None,
    }


INSERT = text("""
INSERT INTO operation_runs (message_id, type, queue_name, actor_name, status, outcome, created_at,
    completed_at, reconciled_at, reconciliation_source, reason_code, reason_message, reconciliation_evidence,
    queued_stale_seconds, running_stale_seconds, threshold_source)
VALUES (:message_id, 't', 'q', 'a', :status, :outcome, '2026-01-01T00:00:00Z', :completed_at,
    :reconciled_at, :source, :reason_code, :reason_message, CAST(:evidence AS jsonb), 60, 60, 'default')
""")
UPDATE = text("""
UPDATE operation_runs SET status = :status, outcome = :outcome, completed_at = :completed_at,
    started_at = CASE WHEN :started THEN created_at END,
    reconciled_at = :reconciled_at, reconciliation_source = :source, reason_code = :reason_code,
    reason_message = :reason_message, reconciliation_evidence = CAST(:evidence AS jsonb)
WHERE message_id = :message_id
""")


def _accepted(engine, statement, params) -> bool:
    try:
        with engine.begin() as conn:
            conn.execute(statement, params)
        return True
    except IntegrityError:
        return False


def test_database_accepts_exactly_the_python_states(engine):
    for i, combo in enumerate(ALL_COMBOS):
        accepted = _accepted(engine, INSERT, {"message_id": f"s{i}", **_state_columns(*combo)})
        assert accepted == (combo in STATES), combo


@pytest.mark.parametrize("started", [False, True], ids=["not-started", "started"])
@pytest.mark.parametrize("src", sorted(STATES), ids=lambda s: "/".join(map(str, s)))
def test_database_accepts_exactly_the_python_transitions(engine, src, started):
    for i, dst in enumerate(sorted(STATES)):
        if dst == src:
            continue
        message_id = f"t{i}"
        assert _accepted(engine, INSERT, {"message_id": message_id, **_state_columns(*src)})
        accepted = _accepted(engine, UPDATE, {"message_id": message_id, "started": started, **_state_columns(*dst)})
        assert accepted == is_legal(src, dst, started=started), (src, dst, started)


def test_terminal_rows_reject_any_change_of_their_outcome_record(engine):
    with engine.begin() as conn:
        conn.execute(INSERT, {"message_id": "done", **_state_columns(Status.COMPLETED, Outcome.SUCCEEDED, False)})
    assert not _accepted(engine, text("UPDATE operation_runs SET completed_at = now() WHERE message_id = 'done'"), {})
    assert not _accepted(engine, UPDATE, {"message_id": "done", "started": True,
                                          **_state_columns(Status.COMPLETED, Outcome.FAILED, False)})
    assert _accepted(engine, text("UPDATE operation_runs SET operator_message = 'x' WHERE message_id = 'done'"), {})


def test_stale_at_is_derived_by_the_database(engine):
    with engine.begin() as conn:
        conn.execute(INSERT, {"message_id": "q", **_state_columns(Status.QUEUED, Outcome.PENDING, False)})
        stale_at = conn.execute(text("SELECT stale_at - created_at FROM operation_runs WHERE message_id='q'"))
        assert stale_at.scalar().total_seconds() == 60
        conn.execute(
            text(
                "UPDATE operation_runs SET status='running', started_at=created_at + interval '5 s' "
                "WHERE message_id='q'"
            )
        )
        stale_at = conn.execute(text("SELECT stale_at - started_at FROM operation_runs WHERE message_id='q'"))
        assert stale_at.scalar().total_seconds() == 60


def _reconciled(code: str, source: str) -> dict:
    return {**_state_columns(Status.COMPLETED, Outcome.FAILED, True), "reason_code": code, "source": source}


def test_database_accepts_exactly_the_reason_code_catalogue(engine):
    """A reason code missing from the CHECK would make the drainer reject good events: keep them in step."""
    from runwatch.reasons import CATALOGUE, Source

    for i, reason in enumerate(CATALOGUE.values()):
        assert _accepted(engine, INSERT, {"message_id": f"r{i}", **_reconciled(reason.code, reason.source.value)}), (
            reason.code
        )
    assert not _accepted(engine, INSERT, {"message_id": "unknown", **_reconciled("run.not_in_catalogue",
                                                                                 "scheduled_reconciler")})  # fmt: skip
    assert not _accepted(engine, INSERT, {"message_id": "nosource", **_reconciled("run.stale_running", "cron")})
    with engine.connect() as conn:
        check = conn.execute(text(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'runwatch_reconciliation_complete'"
        )).scalar_one()  # fmt: skip
    # Every code and source the CHECK names is one Python knows: neither side has one the other lacks.
    import re

    named = set(re.findall(r"'(run\.[a-z_]+)'", check))
    assert named == set(CATALOGUE)
    assert set(re.findall(r"'([a-z_]+_(?:callback|reconciler))'", check)) == {s.value for s in Source}
