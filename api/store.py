"""The API's window on the ledger: one method per question a resource asks.

Resources never see SQLAlchemy; the store borrows a connection per call from this process's
engine (created lazily, so a gunicorn worker builds its own after fork) and hands it to the
named queries of ``runwatch.queries`` and ``runwatch.tokens``.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from runwatch import queries, tokens
from runwatch.queries import Position, RunFilters
from runwatch.settings import DEFAULT_API_STATEMENT_TIMEOUT_MS, DEFAULT_API_TOKEN_CACHE_SECONDS, Settings
from runwatch.tokens import Principal

#: Cached token lookups per process; the cache is emptied when it fills (e.g. a token spray).
MAX_CACHED_TOKENS = 10_000


@dataclass(frozen=True)
class RunView:
    """A run as the detail endpoint needs it; ``events`` etc. only with diagnostics."""

    row: dict[str, Any]
    events: list[dict[str, Any]]
    events_truncated: bool
    late_outcomes: list[dict[str, Any]]


class Store:
    """Reads of the ledger, token checks, and the shared cursor key, for one database."""

    def __init__(
        self,
        database_url: str,
        *,
        cursor_secret: str | None = None,
        token_cache_seconds: float = DEFAULT_API_TOKEN_CACHE_SECONDS,
        statement_timeout_ms: int = DEFAULT_API_STATEMENT_TIMEOUT_MS,
    ) -> None:
        self.database_url = database_url
        self._cursor_secret = cursor_secret.encode() if cursor_secret else None
        self._token_cache_seconds = token_cache_seconds
        self._statement_timeout_ms = statement_timeout_ms
        self._tokens: dict[str, tuple[float, Principal | None]] = {}
        self._lock = threading.Lock()
        self._engine: tuple[int, Any] | None = None

    @property
    def engine(self) -> Any:
        # NOTE: built per pid, so a forked gunicorn worker never reuses the master's sockets.
        if self._engine is None or self._engine[0] != os.getpid():
            engine = queries.api_engine(self.database_url, statement_timeout_ms=self._statement_timeout_ms)
            self._engine = (os.getpid(), engine)
        return self._engine[1]

    def authenticate(self, secret: str) -> Principal | None:
        """The principal of a bearer secret; one query per secret per cache period."""
        key = tokens.hash_token(secret)
        now = time.monotonic()
        cached = self._tokens.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        with queries.reading(self.engine) as conn:
            principal = tokens.authenticate(conn, secret)
        with self._lock:
            if len(self._tokens) >= MAX_CACHED_TOKENS:
                self._tokens.clear()
            self._tokens[key] = (now + self._token_cache_seconds, principal)
        return principal

    def cursor_key(self) -> bytes:
        """The HMAC key of pagination cursors: RUNWATCH_API_SECRET, else the database's own."""
        if self._cursor_secret is None:
            with queries.reading(self.engine) as conn:
                secret = tokens.shared_secret(conn)
            self._cursor_secret = secret.encode()
        return self._cursor_secret

    def list_runs(
        self, principal: Principal, filters: RunFilters, *, after: Position | None, limit: int
    ) -> list[dict[str, Any]]:
        with queries.reading(self.engine) as conn:
            # APPSEC: the principal's tenants go into the SQL, whatever the filters say.
            return queries.list_runs(conn, tenant_ids=principal.tenant_ids, filters=filters, after=after, limit=limit)

    def get_run(self, principal: Principal, run_id: int, *, diagnostics: bool) -> RunView | None:
        """The run, or ``None`` both when it does not exist and when it is outside the caller's scope."""
        with queries.reading(self.engine) as conn:
            # APPSEC: scoped in SQL, so an out-of-scope run is indistinguishable from a missing one.
            row = queries.get_run(conn, run_id, tenant_ids=principal.tenant_ids, diagnostics=diagnostics)
            if row is None or not diagnostics:
                return None if row is None else RunView(row, [], False, [])
            events, truncated = queries.run_events(conn, row["message_id"])
            late = queries.late_outcomes(conn, row["message_id"])
        return RunView(row, events, truncated, late)

    def ping(self) -> bool:
        with queries.reading(self.engine) as conn:
            return queries.ping(conn)

    def ledger_metrics(self) -> dict[str, Any]:
        """Everything /metrics reads from PostgreSQL, in one connection."""
        with queries.reading(self.engine) as conn:
            return {
                "runs": queries.runs_by_state(conn),
                "reconciliations": queries.reconciliations(conn),
                "passes": queries.maintenance_passes(conn),
            }


def store_from_settings(settings: Settings) -> Store:
    """A store configured by ``settings`` (``RUNWATCH_DATABASE_URL`` and the ``RUNWATCH_API_*`` ones)."""
    return Store(
        settings.require_database_url(),
        cursor_secret=settings.api_secret,
        token_cache_seconds=settings.api_token_cache_seconds,
        statement_timeout_ms=settings.api_statement_timeout_ms,
    )


def store_from_env(env: dict[str, str] | None = None) -> Store:
    """A store configured from RUNWATCH_* variables (see the README's configuration table)."""
    return store_from_settings(Settings.from_env(env))
