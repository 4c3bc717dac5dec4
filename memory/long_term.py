"""Long-term memory (practice 14): a user's profile in Postgres, encrypted at rest with AES-GCM.

Each tenant has its own 256-bit data key, derived with HKDF-SHA256 from a master key that
comes from configuration (``memory.master_key``) and is never written to the database. A row
keeps the ``key_id`` of the master key that sealed it, a fresh 96-bit nonce and the ciphertext;
the associated data binds the ciphertext to its ``(tenant, user_id)``, so a row copied to
another user or tenant does not decrypt. Rotation: configure the new master key and list the
old one in ``memory.previous_master_keys``; rows sealed with an old key still open, and
``rotate`` re-encrypts them under the current key (``keel memory rotate-key``).

Every read and write takes the caller's ``Identity`` and requires the scope
``memory:long_term``; a caller only ever reaches its own row.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, Field, field_validator

from core.errors import Forbidden, KeelError
from core.identity import Identity

SCOPE = "memory:long_term"
_SALT = b"keel-memory-long-term-v1"
_MAX_FIELDS = 50
_MAX_VALUE = 2000


class MemoryKeyUnavailable(KeelError):
    """A long-term memory row was sealed with a master key that is no longer configured."""

    code = "memory_key_unavailable"
    status = 500
    title = "Memory key unavailable"


class Profile(BaseModel):
    """A user's profile and preferences: named fields, each a short text."""

    # Required: a PUT without ``fields`` must not replace the profile with an empty one.
    fields: dict[str, str] = Field(max_length=_MAX_FIELDS)

    @field_validator("fields")
    @classmethod
    def _check_fields(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not (0 < len(name) <= 64) or not name.replace("_", "a").isalnum():
                raise ValueError(f"field name {name!r}: 1-64 letters, digits or underscores")
            if len(text) > _MAX_VALUE:
                raise ValueError(f"field {name!r} is longer than {_MAX_VALUE} characters")
        return value


def key_id_of(master_key: str) -> str:
    """A public name for ``master_key`` (a hash prefix; it does not reveal the key)."""
    return "k" + hashlib.sha256(b"keel-memory-key-id:" + master_key.encode()).hexdigest()[:12]


class Keyring:
    """The current master key, the previous ones, and the per-tenant keys derived from them."""

    def __init__(self, master_key: str, previous: Sequence[str] = ()) -> None:
        """Name each master key by its ``key_id``; the first one seals new rows."""
        if len(master_key) < 32:
            raise ValueError("memory.master_key must be at least 32 bytes")
        self.current = key_id_of(master_key)
        self._masters = {key_id_of(k): k.encode() for k in (*previous, master_key)}
        self._cache: dict[tuple[str, str], AESGCM] = {}

    def _aead(self, key_id: str, tenant: str) -> AESGCM:
        cached = self._cache.get((key_id, tenant))
        if cached is not None:
            return cached
        master = self._masters.get(key_id)
        if master is None:
            raise MemoryKeyUnavailable(f"master key {key_id} is not configured")
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT, info=tenant.encode())
        aead = AESGCM(hkdf.derive(master))
        self._cache[(key_id, tenant)] = aead
        return aead

    def seal(self, tenant: str, user_id: str, plaintext: bytes) -> tuple[str, bytes, bytes]:
        """Encrypt under the current key: ``(key_id, nonce, ciphertext)``."""
        nonce = os.urandom(12)
        ct = self._aead(self.current, tenant).encrypt(nonce, plaintext, _aad(tenant, user_id))
        return self.current, nonce, ct

    def open(self, tenant: str, user_id: str, key_id: str, nonce: bytes, ct: bytes) -> bytes:
        """Decrypt a row; a tampered or misplaced row raises ``MemoryKeyUnavailable``."""
        try:
            return self._aead(key_id, tenant).decrypt(nonce, ct, _aad(tenant, user_id))
        except InvalidTag as exc:
            raise MemoryKeyUnavailable("long-term memory row failed authentication") from exc


def _aad(tenant: str, user_id: str) -> bytes:
    return json.dumps([tenant, user_id]).encode()


def require_scope(identity: Identity) -> None:
    """Refuse callers without ``memory:long_term``."""
    if not identity.has_scope(SCOPE):
        raise Forbidden(f"long-term memory needs the scope {SCOPE}")


class LongTermMemory:
    """Encrypted profiles in the ``memory_long_term`` table.

    The one implementation (embedded and production mode both run Postgres): no protocol.
    """

    def __init__(self, pool: AsyncConnectionPool[Any], keyring: Keyring) -> None:
        """Use ``pool`` (dict rows, autocommit) and ``keyring``."""
        self.pool = pool
        self.keyring = keyring

    async def get(self, identity: Identity) -> Profile:
        """The caller's profile (empty if none was saved)."""
        require_scope(identity)
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT key_id, nonce, ciphertext FROM memory_long_term"
                " WHERE tenant = %s AND user_id = %s",
                (identity.tenant, identity.user_id),
            )
            row = await cur.fetchone()
        if row is None:
            return Profile(fields={})
        plain = self.keyring.open(
            identity.tenant, identity.user_id, row["key_id"], row["nonce"], row["ciphertext"]
        )
        return Profile.model_validate_json(plain)

    async def put(self, identity: Identity, profile: Profile) -> Profile:
        """Replace the caller's profile."""
        require_scope(identity)
        key_id, nonce, ct = self.keyring.seal(
            identity.tenant, identity.user_id, profile.model_dump_json().encode()
        )
        async with self.pool.connection() as conn:
            await conn.execute(
                "INSERT INTO memory_long_term (tenant, user_id, key_id, nonce, ciphertext)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (tenant, user_id) DO UPDATE SET"
                " key_id = EXCLUDED.key_id, nonce = EXCLUDED.nonce,"
                " ciphertext = EXCLUDED.ciphertext, updated_at = now()",
                (identity.tenant, identity.user_id, key_id, nonce, ct),
            )
        return profile

    async def delete(self, identity: Identity) -> bool:
        """Delete the caller's profile; returns whether there was one."""
        require_scope(identity)
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "DELETE FROM memory_long_term WHERE tenant = %s AND user_id = %s",
                (identity.tenant, identity.user_id),
            )
            return bool(cur.rowcount > 0)

    async def rotate(self, batch: int = 500) -> int:
        """Re-encrypt every row not sealed with the current key; returns how many."""
        done = 0
        while True:
            async with self.pool.connection() as conn, conn.transaction():
                cur = await conn.execute(
                    "SELECT tenant, user_id, key_id, nonce, ciphertext FROM memory_long_term"
                    " WHERE key_id <> %s LIMIT %s FOR UPDATE SKIP LOCKED",
                    (self.keyring.current, batch),
                )
                rows = await cur.fetchall()
                for r in rows:
                    plain = self.keyring.open(
                        r["tenant"], r["user_id"], r["key_id"], r["nonce"], r["ciphertext"]
                    )
                    key_id, nonce, ct = self.keyring.seal(r["tenant"], r["user_id"], plain)
                    await conn.execute(
                        "UPDATE memory_long_term SET key_id = %s, nonce = %s, ciphertext = %s"
                        " WHERE tenant = %s AND user_id = %s",
                        (key_id, nonce, ct, r["tenant"], r["user_id"]),
                    )
            done += len(rows)
            if len(rows) < batch:
                return done
