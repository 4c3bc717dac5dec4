"""API keys for service accounts: an alternative to JWTs, stored hashed, each with its own quota.

A key reads ``keel_<key_id>_<secret>``: ``key_id`` is public (it names the key in listings and
quota keys), the secret is 256 random bits. Only the SHA-256 of the whole key is stored; a slow
password hash would add nothing against guessing 256 random bits and would cost every request.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from psycopg import AsyncConnection

from core.errors import AuthenticationFailed
from core.identity import TIERS, Identity, Tier

PREFIX = "keel_"


def hash_key(key: str) -> str:
    """The stored form of ``key``."""
    return hashlib.sha256(key.encode()).hexdigest()


def looks_like_key(token: str) -> bool:
    """Whether a bearer credential is an API key rather than a JWT."""
    return token.startswith(PREFIX)


async def create_key(
    conn: AsyncConnection[Any], *, user: str, tenant: str, tier: Tier, scopes: list[str]
) -> tuple[str, str]:
    """Store a new key for ``user`` of ``tenant``; returns ``(key_id, key)``, shown only once."""
    if tier not in TIERS:
        raise ValueError(f"unknown tier {tier!r}")
    key_id = secrets.token_hex(6)
    key = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    await conn.execute(
        "INSERT INTO api_keys (key_id, key_hash, tenant, user_id, tier, scopes)"
        " VALUES (%s, %s, %s, %s, %s, %s)",
        (key_id, hash_key(key), tenant, user, tier, scopes),
    )
    return key_id, key


async def revoke_key(conn: AsyncConnection[Any], key_id: str) -> bool:
    """Revoke ``key_id``; returns whether a live key was revoked."""
    cur = await conn.execute(
        "UPDATE api_keys SET revoked_at = now() WHERE key_id = %s AND revoked_at IS NULL",
        (key_id,),
    )
    return cur.rowcount == 1


async def verify_key(conn: AsyncConnection[Any], key: str) -> Identity:
    """The identity of a live key.

    Raises:
        AuthenticationFailed: for an unknown, malformed or revoked key.
    """
    if not looks_like_key(key) or len(key) > 200:
        raise AuthenticationFailed("invalid API key")
    cur = await conn.execute(
        "SELECT key_id, tenant, user_id, tier, scopes FROM api_keys"
        " WHERE key_hash = %s AND revoked_at IS NULL",
        (hash_key(key),),
    )
    row = await cur.fetchone()
    if row is None:
        raise AuthenticationFailed("invalid or revoked API key")
    if not isinstance(row, dict):
        row = dict(zip(("key_id", "tenant", "user_id", "tier", "scopes"), row, strict=True))
    return Identity(
        user_id=row["user_id"],
        tenant=row["tenant"],
        scopes=frozenset(row["scopes"]),
        tier=row["tier"],
        api_key_id=row["key_id"],
    )
