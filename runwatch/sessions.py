"""Console sessions: a signed-in browser holds a random cookie; the ledger keeps only its hash.

A session belongs to an API token and carries that token's tenants and role; revoking the
token ends its sessions at once (the lookup joins on live tokens), and every session ends at
its ``expires_at`` whatever happens. The CSRF token of a session is derived from the cookie
value (an HMAC), so it needs no storage and changes with every sign-in.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy import Connection, text

from .tokens import MAX_TOKEN_CHARS, Principal, hash_token

#: Random bytes in a session cookie value.
SESSION_BYTES = 32

_CREATE = text("""
INSERT INTO console_sessions (session_hash, token_id, expires_at)
VALUES (:hash, :token_id, now() + make_interval(secs => :ttl))
""")
# APPSEC: a session is only as alive as its token: revoked tokens end their sessions at once.
_LOOKUP = text("""
SELECT t.id, t.name, t.tenant_ids, t.role
FROM console_sessions s JOIN api_tokens t ON t.id = s.token_id
WHERE s.session_hash = :hash AND s.expires_at > now() AND t.revoked_at IS NULL
""")
_DELETE = text("DELETE FROM console_sessions WHERE session_hash = :hash")
_SWEEP = text("DELETE FROM console_sessions WHERE expires_at <= now()")


def create_session(conn: Connection, principal: Principal, *, ttl_seconds: int) -> str:
    """Open a session for ``principal``'s token; return the cookie value (never stored)."""
    conn.execute(_SWEEP)  # NOTE: sign-ins are rare; sweeping here keeps the table small without a job.
    secret = secrets.token_urlsafe(SESSION_BYTES)
    conn.execute(_CREATE, {"hash": hash_token(secret), "token_id": principal.token_id, "ttl": ttl_seconds})
    return secret


def session_principal(conn: Connection, secret: str) -> Principal | None:
    """The principal of a live session cookie, or ``None`` (unknown, expired, token revoked)."""
    if not secret or len(secret) > MAX_TOKEN_CHARS:
        return None
    row = conn.execute(_LOOKUP, {"hash": hash_token(secret)}).mappings().first()
    if row is None:
        return None
    tenants = None if row["tenant_ids"] is None else frozenset(row["tenant_ids"])
    return Principal(token_id=row["id"], name=row["name"], tenant_ids=tenants, role=row["role"])


def end_session(conn: Connection, secret: str) -> None:
    conn.execute(_DELETE, {"hash": hash_token(secret)})


def csrf_token(secret: str) -> str:
    """The CSRF token bound to a cookie value (sign-in forms bind to a pre-session cookie)."""
    return hmac.new(secret.encode(), b"runwatch-csrf", hashlib.sha256).hexdigest()


def csrf_ok(secret: str | None, submitted: str | None) -> bool:
    """Whether ``submitted`` is the CSRF token of ``secret``; any other text (non-ASCII included) is not."""
    if not (secret and submitted):
        return False
    # NOTE: bytes: compare_digest raises TypeError on a str with non-ASCII characters (a 500).
    return hmac.compare_digest(csrf_token(secret).encode(), submitted.encode("utf-8", "surrogatepass"))
