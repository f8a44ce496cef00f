"""The run detail: contract fields, the reconciliation record, and diagnostics on request."""

from __future__ import annotations

import json

from sqlalchemy import text

from tests.support.api_client import get
from tests.support.run_events import add_event
from tests.support.seed import insert_run

LIST = "/api/admin/operations"


def test_detail_of_a_normal_run_has_no_reconciliation_and_no_diagnostics(client, tokens, engine):
    with engine.begin() as conn:
        run_id = insert_run(conn, outcome="partially_succeeded", message="3 skipped")
    body = get(client, f"{LIST}/{run_id}", tokens.all).json
    assert body["id"] == run_id and body["status"] == "completed" and body["outcome"] == "partially_succeeded"
    assert body["freshness_state"] == "terminal_normal" and body["reconciled"] is False
    assert body["reconciliation"] is None and "diagnostics" not in body
    assert body["summary_counts"] == {"processed": 3, "total": 4} and body["failure_summary"] == []
    assert body["operator_message"] == "3 skipped" and body["type_label"] == "Sync invoices"


def test_detail_of_a_reconciled_run_carries_the_record(client, tokens, engine):
    with engine.begin() as conn:
        run_id = insert_run(conn, outcome="failed", source="scheduled_reconciler", tenant_id=None)
    body = get(client, f"{LIST}/{run_id}", tokens.all, include="diagnostics").json
    rec = body["reconciliation"]
    assert rec["source"] == "scheduled_reconciler" and rec["reason_code"] == "run.stale_running"
    assert rec["reason_message"] == "Run stopped reporting progress" and rec["reconciled_at"].endswith("Z")
    assert rec["evidence"] == {"threshold_seconds": 900, "worker_alive": False}
    assert body["freshness_state"] == "reconciled_failed" and body["tenant_id"] is None
    assert body["failure_summary"] == [{"code": "billing.declined", "message": "Card declined"}]
    assert body["diagnostics"]["evidence"] == rec["evidence"]


def test_diagnostics_threshold_follows_the_status(client, tokens, engine):
    with engine.begin() as conn:
        queued = insert_run(conn, status="queued", outcome="pending", age=7200)
        running = insert_run(conn, status="running", outcome="pending", progress_age=5)
        done = insert_run(conn)
    diag = {r: get(client, f"{LIST}/{r}", tokens.all, include="diagnostics").json for r in (queued, running, done)}
    assert diag[queued]["diagnostics"]["threshold_seconds"] == 3600
    assert diag[queued]["freshness_state"] == "likely_stale"
    assert diag[running]["diagnostics"]["threshold_seconds"] == 900
    assert diag[running]["freshness_state"] == "fresh_active" and diag[running]["diagnostics"]["stale_at"]
    assert diag[done]["diagnostics"]["threshold_seconds"] == 900 and diag[done]["diagnostics"]["stale_at"] is None
    d = diag[running]["diagnostics"]
    assert d["attempts"] == 2 and d["deliveries"] == 2 and d["max_retries"] == 3 and d["worker_id"] == "host-1:123"
    assert d["last_error"] == {"type": "ValueError", "message": "boom"} and d["evidence"] == {}
    assert d["threshold_source"] == "default" and d["events"] == [] and d["late_outcomes"] == []


def test_diagnostics_show_the_event_log_in_order_and_late_outcomes(client, tokens, engine):
    with engine.begin() as conn:
        run_id = insert_run(conn, outcome="failed", source="failed_callback")
    add_event(engine, run_id, "started", 30)
    add_event(engine, run_id, "enqueued", 40)
    add_event(engine, run_id, "dead_lettered", 20, exception_type="ValueError")
    add_event(engine, run_id, "completed", 10, late=True, outcome="succeeded")
    with engine.begin() as conn:  # another run's events never leak in
        other = insert_run(conn)
    add_event(engine, other, "completed", 5)
    d = get(client, f"{LIST}/{run_id}", tokens.all, include="diagnostics").json["diagnostics"]
    assert [e["kind"] for e in d["events"]] == ["enqueued", "started", "dead_lettered", "completed"]
    assert [e["late"] for e in d["events"]] == [False, False, False, True] and d["events_truncated"] is False
    assert [(e["kind"], e["details"]) for e in d["late_outcomes"]] == [("completed", {"outcome": "succeeded"})]
    assert all(e["at"].endswith("Z") for e in d["events"])


def test_detail_never_shows_job_arguments(client, tokens, engine):
    with engine.begin() as conn:
        run_id = insert_run(conn)
        secret_args = text("""UPDATE operation_runs SET args = '{"password": "hunter2"}' WHERE id = :id""")
        conn.execute(secret_args, {"id": run_id})
    result = get(client, f"{LIST}/{run_id}", tokens.all, include="diagnostics")
    assert result.status_code == 200 and "hunter2" not in result.text


def test_diagnostics_say_why_a_stale_run_is_not_healed_yet(client, tokens, engine):
    note = {"why": "backlog", "note": "backlog: the broker still holds the message", "message_found_in": "queue"}
    with engine.begin() as conn:
        stale = insert_run(conn, status="queued", outcome="pending", age=7200)
        never_looked = insert_run(conn, status="queued", outcome="pending", age=7200)
        conn.execute(
            text("UPDATE operation_runs SET healer_checked_at = now(), healer_note = CAST(:n AS jsonb) WHERE id = :id"),
            {"n": json.dumps(note), "id": stale},
        )
    healer = get(client, f"{LIST}/{stale}", tokens.all, include="diagnostics").json["diagnostics"]["healer"]
    assert healer["last_found"] == note and healer["checked_at"]
    assert get(client, f"{LIST}/{never_looked}", tokens.all, include="diagnostics").json["diagnostics"]["healer"] == {
        "checked_at": None,
        "last_found": None,
    }
