"""API fixtures: a Falcon TestClient over the real PostgreSQL ledger, tokens of each scope."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import falcon.testing
import pytest
from runwatch.api.app import create_app
from runwatch.api.store import Store
from sqlalchemy import text

from runwatch.queries import dispose_api_engines
from runwatch.tokens import create_token
from tests.support.seed import Run, seed_world


@dataclass(frozen=True)
class Tokens:
    all: str  # every tenant, and runs without one
    t1: str  # tenant 1 only
    t13: str  # tenants 1 and 3


@pytest.fixture(autouse=True, scope="session")
def _close_api_engines() -> Iterator[None]:
    yield
    dispose_api_engines()


@pytest.fixture
def store(database_url: str, engine) -> Iterator[Store]:
    # NOTE: no token cache in tests, so that revocation is visible at once.
    yield Store(database_url, token_cache_seconds=0)
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE api_tokens RESTART IDENTITY CASCADE"))


@pytest.fixture
def app(store: Store, servers) -> falcon.App:
    return create_app(store, redis_url=servers.redis_url)


@pytest.fixture
def client(app: falcon.App) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(app)


@pytest.fixture
def tokens(store: Store, engine) -> Tokens:
    with engine.begin() as conn:
        return Tokens(
            all=create_token(conn, name="sre", tenant_ids=None)[0],
            t1=create_token(conn, name="tenant one", tenant_ids=[1])[0],
            t13=create_token(conn, name="tenants one and three", tenant_ids=[3, 1])[0],
        )


@pytest.fixture
def world(engine) -> list[Run]:
    with engine.begin() as conn:
        return seed_world(conn)
