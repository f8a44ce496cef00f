"""Engines: one per process, created after fork (docs/design.md §5)."""

from __future__ import annotations

import os

from sqlalchemy import Engine, create_engine

from .settings import normalize_database_url

_engines: dict[tuple[int, str], Engine] = {}


def engine_for(database_url: str, *, pool_size: int = 5) -> Engine:
    """Return this process's engine for ``database_url``, creating it on first use.

    Keyed by pid so that a forked child never reuses its parent's sockets.
    """
    url = normalize_database_url(database_url)
    key = (os.getpid(), url)
    engine = _engines.get(key)
    if engine is None:
        engine = _engines[key] = create_engine(
            url,
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_pre_ping=True,
            connect_args={"connect_timeout": 5, "application_name": "runwatch"},
        )
    return engine
