"""Reads of the dead-letter mirror for the API and the console: list, groups, selections.

Tenant-scoped in SQL exactly as ``queries.list_runs`` scopes runs (``APPSEC`` lines): a scoped
token sees its tenants' letters only, never a letter without a tenant; counts and groups include
only what the token sees. Ages use the database clock. The list is a keyset walk of
``(dead_at DESC, id DESC)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, text

from .queries import MAX_BIGINT, Position, position_at, rfc3339

#: Rows a preview returns besides the count.
PREVIEW_ROWS = 20


@dataclass(frozen=True, kw_only=True)
class LetterFilters:
    """Dead-letter filters, all optional and combined with AND; values are already validated."""

    queue: str | None = None
    actor: str | None = None
    exception_type: str | None = None
    tenant_id: int | None = None
    min_age_seconds: int | None = None  # dead at least this long
    max_age_seconds: int | None = None  # dead at most this long

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class Selection:
    """What an operator action acts on: explicit mirror ids, or every letter a filter matches."""

    ids: tuple[int, ...] | None = None
    filters: LetterFilters | None = None

    def as_dict(self) -> dict[str, Any]:
        if self.ids is not None:
            return {"ids": list(self.ids)}
        return {"filter": (self.filters or LetterFilters()).as_dict()}


_COLUMNS = f"""
d.id, d.queue_name, d.redis_message_id, d.message_id, d.actor_name, d.exception_type, d.exception_message,
d.decode_error, {rfc3339("d.dead_at")} AS dead_at, extract(epoch FROM now() - d.dead_at)::float8 AS age_seconds,
d.tenant_id, d.run_id, (extract(epoch FROM d.dead_at) * 1000000)::bigint AS dead_us
"""


def where(
    tenant_ids: frozenset[int] | None, filters: LetterFilters | None, ids: tuple[int, ...] | None = None
) -> tuple[str, dict[str, Any]] | None:
    """The WHERE clause (on alias ``d``) and its parameters; ``None`` when nothing can match."""
    clauses: list[str] = []
    params: dict[str, Any] = {}
    if tenant_ids is not None:
        scope = sorted(t for t in tenant_ids if 0 < t <= MAX_BIGINT)
        if not scope:
            return None
        # APPSEC: a scoped token sees its tenants' letters only, never letters without a tenant.
        clauses.append("d.tenant_id = ANY(CAST(:scope_tenants AS bigint[]))")
        params["scope_tenants"] = scope
    if ids is not None:
        wanted = sorted({i for i in ids if 0 < i <= MAX_BIGINT})
        if not wanted:
            return None
        clauses.append("d.id = ANY(CAST(:ids AS bigint[]))")
        params["ids"] = wanted
    f = filters or LetterFilters()
    if f.tenant_id is not None:
        if not 0 < f.tenant_id <= MAX_BIGINT:
            return None
        clauses.append("d.tenant_id = :tenant_id")  # APPSEC: narrows within the scope above, never widens it
        params["tenant_id"] = f.tenant_id
    for column, value in (("queue_name", f.queue), ("actor_name", f.actor), ("exception_type", f.exception_type)):
        if value is not None:
            clauses.append(f"d.{column} = :{column}")
            params[column] = value
    if f.min_age_seconds is not None:
        clauses.append("d.dead_at <= now() - make_interval(secs => :min_age)")
        params["min_age"] = f.min_age_seconds
    if f.max_age_seconds is not None:
        clauses.append("d.dead_at >= now() - make_interval(secs => :max_age)")
        params["max_age"] = f.max_age_seconds
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", params


def list_letters(
    conn: Connection,
    *,
    tenant_ids: frozenset[int] | None,
    filters: LetterFilters,
    after: Position | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """One page of mirrored dead letters, newest first, strictly after ``after``."""
    found = where(tenant_ids, filters)
    if found is None:
        return []
    clause, params = found
    if after is not None:
        clause += (" AND " if clause else "WHERE ") + "(d.dead_at, d.id) < (:after_dead_at, :after_id)"
        params.update(after_dead_at=after.created_at, after_id=after.id)
    sql = f"SELECT {_COLUMNS} FROM dead_letters d {clause} ORDER BY d.dead_at DESC, d.id DESC LIMIT :limit"
    return [dict(r) for r in conn.execute(text(sql), {**params, "limit": limit}).mappings()]


def get_letter(conn: Connection, letter_id: int, *, tenant_ids: frozenset[int] | None) -> dict[str, Any] | None:
    """One mirrored letter, or ``None`` when missing *or* outside the caller's scope."""
    found = where(tenant_ids, None, (letter_id,))
    if found is None:
        return None
    clause, params = found
    row = conn.execute(text(f"SELECT {_COLUMNS} FROM dead_letters d {clause}"), params).mappings().first()
    return dict(row) if row else None


def position_of(row: dict[str, Any]) -> Position:
    """The keyset position of a row returned by ``list_letters``."""
    return position_at(row["dead_us"], row["id"])


def letter_groups(
    conn: Connection, *, tenant_ids: frozenset[int] | None, filters: LetterFilters, limit: int = 100
) -> list[dict[str, Any]]:
    """Letters grouped by queue, actor and exception type: count, oldest and newest; largest first."""
    found = where(tenant_ids, filters)
    if found is None:
        return []
    clause, params = found
    sql = f"""
    SELECT d.queue_name, d.actor_name, d.exception_type, count(*) AS count,
           {rfc3339("min(d.dead_at)")} AS oldest_dead_at, {rfc3339("max(d.dead_at)")} AS newest_dead_at,
           extract(epoch FROM now() - min(d.dead_at))::float8 AS oldest_age_seconds,
           extract(epoch FROM now() - max(d.dead_at))::float8 AS newest_age_seconds
    FROM dead_letters d {clause}
    GROUP BY 1, 2, 3 ORDER BY count(*) DESC, 1, 2 NULLS LAST, 3 NULLS LAST LIMIT :limit
    """
    return [dict(r) for r in conn.execute(text(sql), {**params, "limit": limit}).mappings()]


def preview(
    conn: Connection, *, tenant_ids: frozenset[int] | None, selection: Selection, limit: int = PREVIEW_ROWS
) -> tuple[int, list[dict[str, Any]]]:
    """How many letters ``selection`` matches for this scope, and the newest ``limit`` of them."""
    found = where(tenant_ids, selection.filters, selection.ids)
    if found is None:
        return 0, []
    clause, params = found
    count = conn.execute(text(f"SELECT count(*) FROM dead_letters d {clause}"), params).scalar_one()
    sql = f"SELECT {_COLUMNS} FROM dead_letters d {clause} ORDER BY d.dead_at DESC, d.id DESC LIMIT :limit"
    rows = [dict(r) for r in conn.execute(text(sql), {**params, "limit": limit}).mappings()]
    return count, rows
