"""Requests to the Falcon TestClient with a bearer token."""

from __future__ import annotations

from typing import Any

import falcon.testing


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def get(client: falcon.testing.TestClient, path: str, token: str | None, **params: Any) -> falcon.testing.Result:
    return client.simulate_get(path, params=params or None, headers=auth(token) if token else None)
