"""The executor's side of operator actions: named, guarded statements, one per step.

The bridge claims an open action, works through its letters a batch at a time, and records each
letter's result in one statement that also counts it on the action, forgets the letter in the
mirror, and writes an ``operator_action`` row in the affected run's timeline (``run_events``).
That kind is written here only, never shipped through the event stream, so the drainer's
``events.KINDS`` does not list it. Every step is guarded (``result IS NULL``, ``status``), so a
repeat after a crash changes nothing twice.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy import Connection, text

from .actions import DONE, FAILED

#: ``run_events.kind`` of an operator's action on the run's dead letter.
OPERATOR_ACTION_EVENT = "operator_action"
#: Item results: the letter was requeued or purged, or it was gone already (not an error).
REQUEUED, PURGED, SKIPPED = "requeued", "purged", "skipped"
_EVENT_NAMESPACE = uuid.UUID("0c6a4c8e-2f7d-4b55-8d3a-61a1f5e0b7d4")

_OPEN = text("SELECT * FROM operator_actions WHERE status IN ('pending', 'running') ORDER BY id LIMIT :limit")
_START = text("""
UPDATE operator_actions SET status = 'running', started_at = COALESCE(started_at, now())
WHERE id = :id AND status IN ('pending', 'running') RETURNING id
""")
_OPEN_ITEMS = text("""
SELECT * FROM operator_action_items WHERE action_id = :id AND result IS NULL ORDER BY position LIMIT :limit
""")
_FINISH_ITEM = text(f"""
WITH item AS (
    UPDATE operator_action_items SET result = :result, new_run_id = :new_run_id, note = :note, finished_at = now()
    WHERE action_id = :action_id AND position = :position AND result IS NULL
    RETURNING *
), counted AS (
    UPDATE operator_actions a
    SET done = done + (SELECT count(*) FROM item WHERE result <> 'skipped'),
        skipped = skipped + (SELECT count(*) FROM item WHERE result = 'skipped')
    WHERE a.id = :action_id AND EXISTS (SELECT 1 FROM item)
    RETURNING a.id
), forgotten AS (
    DELETE FROM dead_letters d USING item
    WHERE d.queue_name = item.queue_name AND d.redis_message_id = item.redis_message_id
    RETURNING d.id
)
INSERT INTO run_events (event_uuid, message_id, kind, at, details)
SELECT CAST(:event_uuid AS uuid), r.message_id, '{OPERATOR_ACTION_EVENT}', now(), CAST(:details AS jsonb)
FROM item JOIN operation_runs r ON r.message_id = item.message_id
WHERE item.result <> 'skipped'
ON CONFLICT (event_uuid) DO NOTHING
""")
_FINISH = text("""
UPDATE operator_actions SET status = :status, finished_at = now(), error = :error
WHERE id = :id AND status = 'running' AND NOT EXISTS (
    SELECT 1 FROM operator_action_items WHERE action_id = :id AND result IS NULL AND :status = 'done')
RETURNING id
""")
_NOTE_ERROR = text("UPDATE operator_actions SET error = :error WHERE id = :id AND status = 'running'")


def open_actions(conn: Connection, *, limit: int = 10) -> list[dict[str, Any]]:
    """Pending and unfinished actions, oldest first."""
    return [dict(r) for r in conn.execute(_OPEN, {"limit": limit}).mappings()]


def start_action(conn: Connection, action_id: int) -> bool:
    """Mark an open action running; ``False`` if it is finished already."""
    return conn.execute(_START, {"id": action_id}).first() is not None


def open_items(conn: Connection, action_id: int, *, limit: int) -> list[dict[str, Any]]:
    """The next letters of an action that have no result yet, in selection order."""
    return [dict(r) for r in conn.execute(_OPEN_ITEMS, {"id": action_id, "limit": limit}).mappings()]


def finish_item(
    conn: Connection,
    action: dict[str, Any],
    item: dict[str, Any],
    result: str,
    *,
    new_run_id: int | None = None,
    note: str | None = None,
) -> None:
    """Record one letter's result: counted, forgotten by the mirror, and in its run's timeline."""
    details = {
        "action_id": action["id"],
        "action": action["kind"],
        "result": result,
        "requested_by": {"token_id": action["token_id"], "token_name": action["token_name"]},
        "requested_at": action["requested_at"].isoformat()
        if hasattr(action["requested_at"], "isoformat")
        else action["requested_at"],
        "queue": item["queue_name"],
        "redis_message_id": item["redis_message_id"],
        "new_run_id": new_run_id,
    }
    conn.execute(
        _FINISH_ITEM,
        {
            "action_id": action["id"],
            "position": item["position"],
            "result": result,
            "new_run_id": new_run_id,
            "note": note,
            "event_uuid": str(uuid.uuid5(_EVENT_NAMESPACE, f"{action['id']}/{item['position']}")),
            "details": json.dumps(details),
        },
    )


def finish_action(conn: Connection, action_id: int, *, error: str | None = None) -> bool:
    """``done`` once every letter has a result, or ``failed`` with ``error``; ``False`` if not finishable."""
    status = FAILED if error is not None else DONE
    return conn.execute(_FINISH, {"id": action_id, "status": status, "error": error}).first() is not None


def note_error(conn: Connection, action_id: int, error: str) -> None:
    """Keep a transient error on a running action (it is retried on the next pass)."""
    conn.execute(_NOTE_ERROR, {"id": action_id, "error": error})
