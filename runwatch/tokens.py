"""API bearer tokens: created once, stored only as a hash, scoped to tenants or to all of them.

A token is ``rw_`` followed by 32 random bytes (URL-safe base64). Its SHA-256 is the lookup
key, so a database dump never yields a usable secret. ``tenant_ids`` ``None`` means every
tenant, including runs that have no tenant at all. Its role is ``viewer`` (reads) or
``operator`` (may also requeue and purge dead letters).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

from .errors import ValidationError
from .run_filters import MAX_BIGINT

#: Prefix of every token secret: makes leaked tokens easy to grep for in logs and repos.
TOKEN_PREFIX = "rw_"
#: Random bytes in a token secret.
TOKEN_BYTES = 32
#: Longest token we bother hashing; anything longer cannot be one of ours.
MAX_TOKEN_CHARS = 200
#: Token roles, least privilege first (the CHECK of migration 0005 lists the same).
VIEWER, OPERATOR = "viewer", "operator"
ROLES = (VIEWER, OPERATOR)

_INSERT = text("""
INSERT INTO api_tokens (name, token_hash, tenant_ids, role)
VALUES (:name, :hash, CAST(:tenants AS bigint[]), :role)
RETURNING id, name, tenant_ids, role, created_at, revoked_at
""")
_LIST = text("SELECT id, name, tenant_ids, role, created_at, revoked_at FROM api_tokens ORDER BY id")
_REVOKE = text("""
UPDATE api_tokens SET revoked_at = now() WHERE id = :id AND revoked_at IS NULL RETURNING id
""")
_EXISTS = text("SELECT 1 FROM api_tokens WHERE id = :id")
_LOOKUP = text("SELECT id, name, tenant_ids, role FROM api_tokens WHERE token_hash = :hash AND revoked_at IS NULL")
_SECRET = text("SELECT secret FROM api_secrets WHERE name = :name")
_SEED_SECRET = text("INSERT INTO api_secrets (name, secret) VALUES (:name, :secret) ON CONFLICT (name) DO NOTHING")


class UnknownToken(ValidationError):
    """No API token has the given id."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: a token, the tenants it may see (``None``: all tenants) and its role."""

    token_id: int
    name: str
    tenant_ids: frozenset[int] | None
    role: str = VIEWER

    @property
    def all_tenants(self) -> bool:
        return self.tenant_ids is None

    @property
    def is_operator(self) -> bool:
        return self.role == OPERATOR


@dataclass(frozen=True)
class TokenInfo:
    """A token as `runwatch tokens list` shows it: never the secret."""

    id: int
    name: str
    tenant_ids: tuple[int, ...] | None
    role: str
    created_at: datetime
    revoked_at: datetime | None

    @property
    def scope(self) -> str:
        return "all tenants" if self.tenant_ids is None else "tenants " + ",".join(map(str, self.tenant_ids))


def hash_token(secret: str) -> str:
    """The stored form of a token secret."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def new_secret() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def create_token(
    conn: Connection, *, name: str, tenant_ids: list[int] | None, role: str = VIEWER
) -> tuple[str, TokenInfo]:
    """Store a new token; return its secret (shown once, never stored) and its record."""
    if not name.strip():
        raise ValidationError("a token needs a non-blank name")
    if role not in ROLES:
        raise ValidationError(f"a token's role is one of {', '.join(ROLES)}, got {role!r}")
    if tenant_ids is not None:
        if not tenant_ids:
            raise ValidationError("a tenant-scoped token needs at least one tenant id")
        bad = [t for t in tenant_ids if not 0 < t <= MAX_BIGINT]
        if bad:
            raise ValidationError(f"tenant ids must be positive integers, got {bad}")
        tenant_ids = sorted(set(tenant_ids))
    secret = new_secret()
    params = {"name": name, "hash": hash_token(secret), "tenants": tenant_ids, "role": role}
    row = conn.execute(_INSERT, params).mappings().one()
    return secret, _info(row)


def list_tokens(conn: Connection) -> list[TokenInfo]:
    return [_info(row) for row in conn.execute(_LIST).mappings()]


def revoke_token(conn: Connection, token_id: int) -> bool:
    """Revoke a token; ``False`` if it was already revoked. Raises ``UnknownToken``."""
    if conn.execute(_REVOKE, {"id": token_id}).first() is not None:
        return True
    if conn.execute(_EXISTS, {"id": token_id}).first() is None:
        raise UnknownToken(f"no API token with id {token_id}")
    return False


def authenticate(conn: Connection, secret: str) -> Principal | None:
    """The principal of a live token, or ``None`` for an unknown or revoked secret."""
    if not secret.startswith(TOKEN_PREFIX) or len(secret) > MAX_TOKEN_CHARS:
        return None
    row = conn.execute(_LOOKUP, {"hash": hash_token(secret)}).mappings().first()
    if row is None:
        return None
    tenants = None if row["tenant_ids"] is None else frozenset(row["tenant_ids"])
    return Principal(token_id=row["id"], name=row["name"], tenant_ids=tenants, role=row["role"])


def shared_secret(conn: Connection, name: str = "cursor") -> str:
    """A per-database secret every API process agrees on (seeded by the migration)."""
    value = conn.execute(_SECRET, {"name": name}).scalar()
    if value is None:
        # NOTE: first writer wins, so racing processes still end up with the same secret.
        conn.execute(_SEED_SECRET, {"name": name, "secret": secrets.token_hex(32)})
        value = conn.execute(_SECRET, {"name": name}).scalar_one()
    return str(value)


def _info(row: Any) -> TokenInfo:
    tenants = row["tenant_ids"]
    return TokenInfo(
        id=row["id"],
        name=row["name"],
        tenant_ids=None if tenants is None else tuple(tenants),
        role=row["role"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )
