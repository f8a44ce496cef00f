"""The API's window on dead letters, operator actions and maintenance passes: one method per question.

Built on the run ``Store`` (same engine, same per-process pool); resources never see SQLAlchemy.
Every read takes the caller's principal and hands its tenants to the SQL of ``runwatch``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runwatch import actions, dead_letters, queries
from runwatch.dead_letters import LetterFilters, Selection
from runwatch.queries import Position
from runwatch.tokens import Principal

from .store import Store


@dataclass(frozen=True)
class ActionView:
    """An action with the first letters it selected and what became of each."""

    action: dict[str, Any]
    items: list[dict[str, Any]]
    items_truncated: bool


class ConsoleStore:
    """Dead letters (the bridge's mirror), operator actions and the audit, for one database."""

    def __init__(self, store: Store, *, max_action_letters: int = actions.DEFAULT_MAX_LETTERS) -> None:
        self.store = store
        self.max_action_letters = max_action_letters

    def cursor_key(self) -> bytes:
        return self.store.cursor_key()

    def list_letters(
        self, principal: Principal, filters: LetterFilters, *, after: Position | None, limit: int
    ) -> list[dict[str, Any]]:
        with queries.reading(self.store.engine) as conn:
            # APPSEC: the principal's tenants go into the SQL, whatever the filters say.
            return dead_letters.list_letters(
                conn, tenant_ids=principal.tenant_ids, filters=filters, after=after, limit=limit
            )

    def get_letter(self, principal: Principal, letter_id: int) -> dict[str, Any] | None:
        """The letter, or ``None`` both when it does not exist and when it is outside the caller's scope."""
        with queries.reading(self.store.engine) as conn:
            return dead_letters.get_letter(conn, letter_id, tenant_ids=principal.tenant_ids)

    def letter_groups(self, principal: Principal, filters: LetterFilters, *, limit: int) -> list[dict[str, Any]]:
        with queries.reading(self.store.engine) as conn:
            return dead_letters.letter_groups(conn, tenant_ids=principal.tenant_ids, filters=filters, limit=limit)

    def preview(self, principal: Principal, selection: Selection) -> tuple[int, list[dict[str, Any]]]:
        with queries.reading(self.store.engine) as conn:
            return dead_letters.preview(conn, tenant_ids=principal.tenant_ids, selection=selection)

    def request_action(
        self, principal: Principal, *, kind: str, selection: Selection, idempotency_key: str
    ) -> tuple[dict[str, Any], bool]:
        """Write a pending action (or find the one this key names); ``(action, created)``."""
        with queries.reading(self.store.engine) as conn:
            # NOTE: the API's engine autocommits; the action and its letters need one transaction.
            conn = conn.execution_options(isolation_level="READ COMMITTED")
            with conn.begin():
                return actions.request_action(
                    conn,
                    principal,
                    kind=kind,
                    selection=selection,
                    idempotency_key=idempotency_key,
                    max_letters=self.max_action_letters,
                )

    def list_actions(
        self,
        principal: Principal,
        *,
        after: Position | None,
        limit: int,
        status: str | None = None,
        kind: str | None = None,
    ) -> list[dict[str, Any]]:
        with queries.reading(self.store.engine) as conn:
            return actions.list_actions(
                conn, tenant_ids=principal.tenant_ids, after=after, limit=limit, status=status, kind=kind
            )

    def get_action(self, principal: Principal, action_id: int) -> ActionView | None:
        """The action, or ``None`` both when it does not exist and when it is outside the caller's scope."""
        with queries.reading(self.store.engine) as conn:
            action = actions.get_action(conn, action_id, tenant_ids=principal.tenant_ids)
            if action is None:
                return None
            items, truncated = actions.action_items(conn, action_id)
        return ActionView(action, items, truncated)

    def maintenance_passes(self, principal: Principal) -> list[dict[str, Any]]:
        """The last pass of each periodic job, its counts only for an all-tenant token."""
        with queries.reading(self.store.engine) as conn:
            return [{**p, "result": pass_result_for(principal, p["result"])} for p in queries.maintenance_passes(conn)]


#: What a tenant-scoped token may see of a pass's result: when and whether, not how many.
_SCOPED_PASS_KEYS = frozenset({"paused", "locked_out", "dry_run"})


def pass_result_for(principal: Principal, result: dict[str, Any] | None) -> dict[str, Any]:
    """A pass's result as ``principal`` may see it (the API's and the console's one rule)."""
    result = result or {}
    if principal.all_tenants:
        return dict(result)
    # APPSEC: a pass's counts cover every tenant; a scoped token sees when and whether, not how many.
    return {k: v for k, v in result.items() if k in _SCOPED_PASS_KEYS}
