"""Operator actions on dead letters (requeue, purge): the request, and the audit that reads them back.

An action is requested by an operator token through the API and written ``pending`` together with
the letters its selection matched at that moment (``operator_action_items``): the bridge executes
exactly those, never what a filter matches later. Each token's ``Idempotency-Key`` names one action:
repeating the request returns it, never a second one.

Visibility (``APPSEC``): an action carries its requester's tenant scope. An all-tenant token sees
every action; a scoped token sees the actions of tokens whose scope lies within its own.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, text

from .dead_letters import Selection, where
from .errors import ValidationError
from .queries import MAX_BIGINT, Position, position_at, rfc3339
from .run_filters import scope_params
from .tokens import Principal

REQUEUE, PURGE = "requeue", "purge"
KINDS = (REQUEUE, PURGE)
PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"
STATUSES = (PENDING, RUNNING, DONE, FAILED)
#: Most letters one action may select; a larger selection is refused (narrow it, or act in parts).
DEFAULT_MAX_LETTERS = 10_000
#: Items returned with one action.
MAX_ITEMS = 200


class SelectionTooLarge(ValidationError):
    """The selection matches more letters than one action may take."""


class IdempotencyConflict(ValidationError):
    """The Idempotency-Key was used by this token for a different request."""


_COLUMNS = f"""
a.id, a.kind, a.token_id, a.token_name, a.tenant_ids, a.idempotency_key, a.selection, a.status, a.matched, a.done,
a.skipped, {rfc3339("a.requested_at")} AS requested_at, {rfc3339("a.started_at")} AS started_at,
{rfc3339("a.finished_at")} AS finished_at, a.error,
(extract(epoch FROM a.requested_at) * 1000000)::bigint AS requested_us
"""
# APPSEC: an all-tenant token sees every action; a scoped one only actions within its tenants.
_SCOPE = "(:all_tenants OR (a.tenant_ids IS NOT NULL AND a.tenant_ids <@ CAST(:tenants AS bigint[])))"

_BY_KEY = text(f"SELECT {_COLUMNS} FROM operator_actions a WHERE a.token_id = :token_id AND a.idempotency_key = :key")
_INSERT = text("""
INSERT INTO operator_actions (kind, token_id, token_name, tenant_ids, idempotency_key, selection)
VALUES (:kind, :token_id, :token_name, CAST(:tenants AS bigint[]), :key, CAST(:selection AS jsonb))
ON CONFLICT (token_id, idempotency_key) DO NOTHING
RETURNING id
""")
_MATCHED = text("UPDATE operator_actions SET matched = :matched WHERE id = :id")
_BY_ID = text(f"SELECT {_COLUMNS} FROM operator_actions a WHERE a.id = :id AND {_SCOPE}")
_ITEMS = text(f"""
SELECT position, queue_name, redis_message_id, message_id, run_id, tenant_id, result, new_run_id, note,
       {rfc3339("finished_at")} AS finished_at
FROM operator_action_items WHERE action_id = :id ORDER BY position LIMIT :limit
""")


def request_action(
    conn: Connection,
    principal: Principal,
    *,
    kind: str,
    selection: Selection,
    idempotency_key: str,
    max_letters: int = DEFAULT_MAX_LETTERS,
) -> tuple[dict[str, Any], bool]:
    """Write a pending action with its letters, in the caller's transaction; ``(action, created)``.

    A repeat of the same request with the same key returns the first action and ``False``.
    Raises ``IdempotencyConflict`` (same key, other request) or ``SelectionTooLarge``.
    """
    if kind not in KINDS:
        raise ValidationError(f"an action is one of {', '.join(KINDS)}, got {kind!r}")
    wanted = {"kind": kind, "selection": selection.as_dict()}
    existing = _existing(conn, principal, idempotency_key, wanted)
    if existing is not None:
        return existing, False
    found = where(principal.tenant_ids, selection.filters, selection.ids)  # APPSEC: the requester's scope
    clause, params = found if found is not None else ("WHERE false", {})
    matched = conn.execute(text(f"SELECT count(*) FROM dead_letters d {clause}"), params).scalar_one()
    if matched > max_letters:
        raise SelectionTooLarge(f"the selection matches {matched} dead letters; one action takes at most {max_letters}")
    tenants = None if principal.tenant_ids is None else sorted(principal.tenant_ids)
    action_id = conn.execute(
        _INSERT,
        {
            "kind": kind,
            "token_id": principal.token_id,
            "token_name": principal.name,
            "tenants": tenants,
            "key": idempotency_key,
            "selection": json.dumps(wanted["selection"]),
        },
    ).scalar()
    if action_id is None:  # a concurrent request with this key committed first
        existing = _existing(conn, principal, idempotency_key, wanted)
        assert existing is not None
        return existing, False
    items = text(f"""
    INSERT INTO operator_action_items (action_id, position, queue_name, redis_message_id, message_id, run_id, tenant_id)
    SELECT :action_id, row_number() OVER (ORDER BY d.dead_at, d.id), d.queue_name, d.redis_message_id, d.message_id,
           d.run_id, d.tenant_id
    FROM dead_letters d {clause} ORDER BY d.dead_at, d.id LIMIT :max_letters
    """)
    inserted = conn.execute(items, {**params, "action_id": action_id, "max_letters": max_letters}).rowcount
    conn.execute(_MATCHED, {"id": action_id, "matched": inserted})
    action = get_action(conn, action_id, tenant_ids=None)
    assert action is not None
    return action, True


def _existing(conn: Connection, principal: Principal, key: str, wanted: dict[str, Any]) -> dict[str, Any] | None:
    row = conn.execute(_BY_KEY, {"token_id": principal.token_id, "key": key}).mappings().first()
    if row is None:
        return None
    if row["kind"] != wanted["kind"] or row["selection"] != wanted["selection"]:
        raise IdempotencyConflict("this Idempotency-Key was already used by this token for a different request")
    return dict(row)


def get_action(conn: Connection, action_id: int, *, tenant_ids: frozenset[int] | None) -> dict[str, Any] | None:
    """One action, or ``None`` when missing *or* outside the caller's scope."""
    if not 0 < action_id <= MAX_BIGINT:
        return None
    row = conn.execute(_BY_ID, {"id": action_id, **scope_params(tenant_ids)}).mappings().first()
    return dict(row) if row else None


def action_items(conn: Connection, action_id: int, *, limit: int = MAX_ITEMS) -> tuple[list[dict[str, Any]], bool]:
    """The first ``limit`` letters of an action with what became of each, and whether more exist."""
    rows = [dict(r) for r in conn.execute(_ITEMS, {"id": action_id, "limit": limit + 1}).mappings()]
    return rows[:limit], len(rows) > limit


def position_of(row: dict[str, Any]) -> Position:
    """The keyset position of a row returned by ``list_actions``."""
    return position_at(row["requested_us"], row["id"])


def list_actions(
    conn: Connection,
    *,
    tenant_ids: frozenset[int] | None,
    after: Position | None = None,
    limit: int = 50,
    status: str | None = None,
    kind: str | None = None,
) -> list[dict[str, Any]]:
    """The audit: actions newest first (``requested_at``, ``id``), strictly after ``after``."""
    clauses = [_SCOPE]
    params: dict[str, Any] = {**scope_params(tenant_ids), "limit": limit}
    if status is not None:
        clauses.append("a.status = :status")
        params["status"] = status
    if kind is not None:
        clauses.append("a.kind = :kind")
        params["kind"] = kind
    if after is not None:
        clauses.append("(a.requested_at, a.id) < (:after_at, :after_id)")
        params.update(after_at=after.created_at, after_id=after.id)
    sql = f"""
    SELECT {_COLUMNS} FROM operator_actions a WHERE {" AND ".join(clauses)}
    ORDER BY a.requested_at DESC, a.id DESC LIMIT :limit
    """
    return [dict(r) for r in conn.execute(text(sql), params).mappings()]
