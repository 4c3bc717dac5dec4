"""RunStore: every read on a caller's behalf sees the caller's threads and runs only."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from core.db import migrate, open_pool
from core.errors import Conflict, LimitReached, NotFound
from core.identity import Identity
from runs.store import RunStore
from tests.conftest import make_settings

ALICE = Identity("alice", "acme", frozenset())
BOB = Identity("bob", "acme", frozenset())  # same tenant, another user
EVE = Identity("alice", "globex", frozenset())  # same user id, another tenant


@pytest.mark.asyncio
async def test_another_users_or_tenants_threads_and_runs_are_not_found(
    db_url: str, tmp_path: Path
) -> None:
    pool = await open_pool(db_url)
    try:
        async with pool.connection() as conn:
            await migrate(conn)
        store = RunStore(pool, make_settings(db_url, "http://127.0.0.1:9", tmp_path))
        thread = await store.create_thread(ALICE, uuid.uuid4().hex, cap=10)
        tid, rid, trace = thread["thread_id"], uuid.uuid4().hex, uuid.uuid4().hex
        busy, answered = await store.record(
            identity=ALICE,
            run_id=rid,
            thread_id=tid,
            trace_id=trace,
            agent="research",
            variant=None,
            resumes=None,
            reject=True,
        )
        assert (busy, answered) == (None, None)
        assert (await store.thread(ALICE, tid))["thread_id"] == tid
        assert [t["thread_id"] for t in await store.threads(ALICE, 50)] == [tid]
        assert (await store.run(ALICE, rid))["status"] == "queued"
        assert [r["run_id"] for r in await store.runs_of_trace(ALICE, trace)] == [rid]
        for other in (BOB, EVE):
            assert await store.threads(other, 50) == []
            with pytest.raises(NotFound):
                await store.thread(other, tid)
            with pytest.raises(NotFound):
                await store.run(other, rid)
            with pytest.raises(NotFound):
                await store.runs_of_trace(other, trace)
            with pytest.raises(NotFound):
                await store.awaiting_confirmation(other, rid)
        with pytest.raises(Conflict):
            await store.awaiting_confirmation(ALICE, rid)  # queued, not interrupted
    finally:
        await pool.close()


@pytest.mark.asyncio
async def test_the_thread_cap_counts_the_callers_threads_only(db_url: str, tmp_path: Path) -> None:
    pool = await open_pool(db_url)
    try:
        async with pool.connection() as conn:
            await migrate(conn)
        store = RunStore(pool, make_settings(db_url, "http://127.0.0.1:9", tmp_path))
        carol = Identity("carol", "initech", frozenset())
        await store.create_thread(carol, uuid.uuid4().hex, cap=1)
        with pytest.raises(LimitReached):
            await store.create_thread(carol, uuid.uuid4().hex, cap=1)
        dave = Identity("dave", "initech", frozenset())
        await store.create_thread(dave, uuid.uuid4().hex, cap=1)
    finally:
        await pool.close()


@pytest.mark.asyncio
async def test_a_held_call_is_claimed_by_one_decision(db_url: str, tmp_path: Path) -> None:
    pool = await open_pool(db_url)
    try:
        async with pool.connection() as conn:
            await migrate(conn)
        store = RunStore(pool, make_settings(db_url, "http://127.0.0.1:9", tmp_path))
        frank = Identity("frank", "acme", frozenset())
        tid = (await store.create_thread(frank, uuid.uuid4().hex, cap=10))["thread_id"]
        rid = uuid.uuid4().hex
        await store.record(
            identity=frank,
            run_id=rid,
            thread_id=tid,
            trace_id=uuid.uuid4().hex,
            agent="research",
            variant=None,
            resumes=None,
            reject=True,
        )
        await store.finish(rid, "interrupted", {})
        assert (await store.awaiting_confirmation(frank, rid))["run_id"] == rid
        await store.claim_confirmation(rid, "first")
        with pytest.raises(Conflict):
            await store.claim_confirmation(rid, "second")
        await store.release_confirmation(rid, "first")
        await store.claim_confirmation(rid, "second")
    finally:
        await pool.close()
