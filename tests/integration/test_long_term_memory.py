"""Long-term memory: encrypted at rest, own user only, scope-gated, readable across rotation."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import psycopg
import pytest
import pytest_asyncio
from psycopg_pool import AsyncConnectionPool

from core.db import migrate, open_pool
from core.identity import Identity
from memory.long_term import (
    SCOPE,
    Keyring,
    LongTermMemory,
    MemoryKeyUnavailable,
    Profile,
    key_id_of,
)
from tests.conftest import LiveServer

SECRET = "vegetarian, allergic to peanuts"
OLD_KEY = "old-master-key-" + "o" * 32
NEW_KEY = "new-master-key-" + "n" * 32


def _client(live: LiveServer, user: str, tenant: str, scopes: list[str]) -> httpx.Client:
    token = live.token(user, tenant, scopes=scopes)
    return httpx.Client(base_url=live.url, timeout=30, headers={"Authorization": f"Bearer {token}"})


@pytest.fixture
def alice(live: LiveServer) -> Iterator[httpx.Client]:
    with _client(live, "alice", "acme", [SCOPE]) as c:
        yield c


def test_profile_round_trip_and_no_plaintext_in_the_table(
    live: LiveServer, alice: httpx.Client
) -> None:
    body = {"fields": {"diet": SECRET, "home_city": "Lisbon"}}
    assert alice.put("/v1/memory/long-term", json=body).json() == body
    assert alice.get("/v1/memory/long-term").json() == body
    rows = live.sql(
        "SELECT tenant, user_id, key_id, nonce, ciphertext, memory_long_term::text AS raw"
        " FROM memory_long_term WHERE user_id = 'alice' AND tenant = 'acme'"
    )
    assert len(rows) == 1
    raw = bytes(rows[0]["ciphertext"]) + bytes(rows[0]["nonce"]) + rows[0]["raw"].encode()
    for plain in (b"vegetarian", b"peanuts", b"Lisbon", b"diet", b"home_city"):
        assert plain not in raw
        assert plain.hex().encode() not in raw
    assert rows[0]["key_id"] == key_id_of(live.settings.memory.master_key)


@pytest.mark.parametrize("body", [{}, {"profile": {"diet": "x"}}, {"fields": None}])
def test_put_without_fields_is_422_and_does_not_wipe_the_profile(
    alice: httpx.Client, body: dict[str, object]
) -> None:
    kept = {"fields": {"diet": SECRET}}
    assert alice.put("/v1/memory/long-term", json=kept).status_code == 200
    r = alice.put("/v1/memory/long-term", json=body)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert alice.get("/v1/memory/long-term").json() == kept


def test_export_is_a_json_attachment(alice: httpx.Client) -> None:
    alice.put("/v1/memory/long-term", json={"fields": {"diet": SECRET}})
    resp = alice.get("/v1/memory/long-term/export")
    assert resp.status_code == 200
    assert resp.headers["content-disposition"].startswith("attachment")
    doc = resp.json()
    assert (doc["user_id"], doc["tenant"], doc["profile"]) == (
        "alice",
        "acme",
        {"fields": {"diet": SECRET}},
    )


def test_other_users_and_tenants_see_only_their_own(live: LiveServer, alice: httpx.Client) -> None:
    alice.put("/v1/memory/long-term", json={"fields": {"diet": SECRET}})
    with _client(live, "bob", "acme", [SCOPE]) as bob:
        assert bob.get("/v1/memory/long-term").json() == {"fields": {}}
    with _client(live, "alice", "globex", [SCOPE]) as other_tenant:
        assert other_tenant.get("/v1/memory/long-term").json() == {"fields": {}}
        other_tenant.delete("/v1/memory/long-term")
    assert alice.get("/v1/memory/long-term").json() == {"fields": {"diet": SECRET}}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/memory/long-term"),
        ("PUT", "/v1/memory/long-term"),
        ("DELETE", "/v1/memory/long-term"),
        ("GET", "/v1/memory/long-term/export"),
    ],
)
def test_a_token_without_the_scope_gets_403(live: LiveServer, method: str, path: str) -> None:
    with _client(live, "alice", "acme", ["read:calendar"]) as c:
        resp = c.request(method, path, json={"fields": {"x": "y"}} if method == "PUT" else None)
    assert resp.status_code == 403
    assert resp.headers["content-type"].startswith("application/problem+json")
    problem = resp.json()
    assert problem["code"] == "forbidden" and problem["trace_id"]


def test_delete_removes_the_row(live: LiveServer, alice: httpx.Client) -> None:
    alice.put("/v1/memory/long-term", json={"fields": {"diet": SECRET}})
    assert alice.delete("/v1/memory/long-term").status_code == 204
    assert live.sql("SELECT 1 FROM memory_long_term WHERE user_id = 'alice'") == []
    assert alice.get("/v1/memory/long-term").json() == {"fields": {}}


def test_invalid_field_names_are_422(alice: httpx.Client) -> None:
    resp = alice.put("/v1/memory/long-term", json={"fields": {"bad name!": "x"}})
    assert resp.status_code == 422


@pytest_asyncio.fixture
async def pool(db_url: str) -> AsyncIterator[AsyncConnectionPool]:
    p = await open_pool(db_url, 1, 2)
    async with p.connection() as conn:
        await migrate(conn)
        await conn.execute("DELETE FROM memory_long_term WHERE tenant LIKE 'rot-%'")
    yield p
    await p.close()


def _who(i: int) -> Identity:
    return Identity(f"user{i}", f"rot-{i % 3}", frozenset({SCOPE}))


@pytest.mark.asyncio
async def test_after_key_rotation_old_records_still_decrypt(pool: AsyncConnectionPool) -> None:
    old = LongTermMemory(pool, Keyring(OLD_KEY))
    for i in range(7):
        await old.put(_who(i), Profile(fields={"note": f"secret {i}"}))
    rotated = LongTermMemory(pool, Keyring(NEW_KEY, previous=[OLD_KEY]))
    assert (await rotated.get(_who(3))).fields == {"note": "secret 3"}  # before re-encryption
    with pytest.raises(MemoryKeyUnavailable):
        await LongTermMemory(pool, Keyring(NEW_KEY)).get(_who(3))
    assert await rotated.rotate(batch=3) == 7
    assert await rotated.rotate() == 0
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT DISTINCT key_id FROM memory_long_term WHERE tenant LIKE 'rot-%'"
        )
        assert [r["key_id"] for r in await cur.fetchall()] == [key_id_of(NEW_KEY)]
    only_new = LongTermMemory(pool, Keyring(NEW_KEY))
    for i in range(7):
        assert (await only_new.get(_who(i))).fields == {"note": f"secret {i}"}


@pytest.mark.asyncio
async def test_a_row_moved_to_another_user_does_not_decrypt(
    pool: AsyncConnectionPool, db_url: str
) -> None:
    store = LongTermMemory(pool, Keyring(NEW_KEY))
    await store.put(_who(0), Profile(fields={"note": "mine"}))
    await store.put(_who(3), Profile(fields={"note": "theirs"}))  # same tenant rot-0
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE memory_long_term AS t SET nonce = s.nonce, ciphertext = s.ciphertext"
            " FROM memory_long_term AS s WHERE s.user_id = 'user0' AND t.user_id = 'user3'"
        )
    with pytest.raises(MemoryKeyUnavailable):
        await store.get(_who(3))


@pytest.mark.asyncio
async def test_the_store_itself_refuses_callers_without_the_scope(
    pool: AsyncConnectionPool,
) -> None:
    from core.errors import Forbidden

    store = LongTermMemory(pool, Keyring(NEW_KEY))
    with pytest.raises(Forbidden):
        await store.get(Identity("user0", "rot-0"))


@pytest.mark.asyncio
async def test_keel_memory_rotate_key_re_encrypts_with_the_configured_keys(
    pool: AsyncConnectionPool, db_url: str
) -> None:
    import json
    import os
    import subprocess
    import sys

    old = LongTermMemory(pool, Keyring(OLD_KEY))
    await old.put(_who(1), Profile(fields={"note": "kept"}))
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "KEEL_MEMORY__MASTER_KEY": NEW_KEY,
        "KEEL_MEMORY__PREVIOUS_MASTER_KEYS": json.dumps([OLD_KEY]),
    }
    out = subprocess.run(
        [sys.executable, "-m", "api.cli", "memory", "rotate-key"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "long-term records re-encrypted" in out.stdout
    assert (await LongTermMemory(pool, Keyring(NEW_KEY)).get(_who(1))).fields == {"note": "kept"}
