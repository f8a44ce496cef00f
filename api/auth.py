"""Bearer-token authentication (RFC 6750) for every resource that does not opt out.

Health, metrics and the OpenAPI document set ``auth_required = False``: probes and scrapers
carry no token. Everything else needs a live token; its principal lands in
``req.context.principal`` for the resource to scope its queries with.
"""

from __future__ import annotations

from typing import Any

import falcon

from .errors import Problem
from .store import Store

#: The challenge sent with every 401 (RFC 6750 §3).
REALM = 'Bearer realm="runwatch"'


def _unauthorized(detail: str, challenge: str) -> Problem:
    return Problem(401, detail, headers={"WWW-Authenticate": challenge})


class AuthMiddleware:
    """Resolve ``Authorization: Bearer <token>`` to a principal, or answer 401."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def process_resource(self, req: falcon.Request, resp: falcon.Response, resource: Any, params: dict) -> None:
        if resource is None or not getattr(resource, "auth_required", True):
            return
        header = req.get_header("Authorization")
        if not header:
            raise _unauthorized("This endpoint needs a bearer token (Authorization: Bearer rw_...).", REALM)
        scheme, _, secret = header.strip().partition(" ")
        secret = secret.strip()
        if scheme.lower() != "bearer" or not secret:
            raise _unauthorized("The Authorization header must use the Bearer scheme.", REALM)
        principal = self.store.authenticate(secret)
        if principal is None:
            # NOTE: unknown, malformed and revoked tokens look the same to the caller.
            raise _unauthorized("The bearer token is not valid.", f'{REALM}, error="invalid_token"')
        req.context.principal = principal


def require_operator(req: falcon.Request) -> None:
    """Refuse a state-changing request from a ``viewer`` token: 403, with the reason."""
    principal = req.context.principal
    if not principal.is_operator:
        raise Problem(403, f"Token {principal.name!r} is a viewer; this action needs an operator token.")
