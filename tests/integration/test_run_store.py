"""RunStore: every read on a caller's behalf sees the caller's threads and runs only."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
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


@asynccontextmanager
async def _store(db_url: str, tmp_path: Path) -> AsyncIterator[RunStore]:
    """A run store on a migrated database, its pool closed afterwards."""
    pool = await open_pool(db_url)
    try:
        async with pool.connection() as conn:
            await migrate(conn)
        yield RunStore(pool, make_settings(db_url, "http://127.0.0.1:9", tmp_path))
    finally:
        await pool.close()


async def _record(
    store: RunStore,
    who: Identity,
    tid: str,
    rid: str,
    *,
    reject: bool = True,
    request: dict[str, str] | None = None,
) -> tuple[str | None, str | None]:
    """Record a run of ``who`` on ``tid``, leased to replica-a."""
    return await store.record(
        identity=who,
        run_id=rid,
        thread_id=tid,
        trace_id=uuid.uuid4().hex,
        agent="research",
        variant=None,
        resumes=None,
        reject=reject,
        owner="replica-a",
        request=request or {},
    )


@pytest.mark.asyncio
async def test_another_users_or_tenants_threads_and_runs_are_not_found(
    db_url: str, tmp_path: Path
) -> None:
    async with _store(db_url, tmp_path) as store:
        thread = await store.create_thread(ALICE, uuid.uuid4().hex, cap=10)
        tid, rid = thread["thread_id"], uuid.uuid4().hex
        busy, answered = await _record(store, ALICE, tid, rid)
        assert (busy, answered) == (None, None)
        trace = (await store.run(ALICE, rid))["trace_id"]
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


@pytest.mark.asyncio
async def test_the_thread_cap_counts_the_callers_threads_only(db_url: str, tmp_path: Path) -> None:
    async with _store(db_url, tmp_path) as store:
        carol = Identity("carol", "initech", frozenset())
        await store.create_thread(carol, uuid.uuid4().hex, cap=1)
        with pytest.raises(LimitReached):
            await store.create_thread(carol, uuid.uuid4().hex, cap=1)
        dave = Identity("dave", "initech", frozenset())
        await store.create_thread(dave, uuid.uuid4().hex, cap=1)


@pytest.mark.asyncio
async def test_a_held_call_is_claimed_by_one_decision(db_url: str, tmp_path: Path) -> None:
    async with _store(db_url, tmp_path) as store:
        frank = Identity("frank", "acme", frozenset())
        tid = (await store.create_thread(frank, uuid.uuid4().hex, cap=10))["thread_id"]
        rid = uuid.uuid4().hex
        await _record(store, frank, tid, rid)
        await store.finish(rid, "interrupted", {})
        assert (await store.awaiting_confirmation(frank, rid))["run_id"] == rid
        await store.claim_confirmation(rid, "first")
        with pytest.raises(Conflict):
            await store.claim_confirmation(rid, "second")
        await store.release_confirmation(rid, "first")
        await store.claim_confirmation(rid, "second")


@pytest.mark.asyncio
async def test_a_lapsed_lease_is_taken_over_by_one_replica_and_its_owner_loses_it(
    db_url: str, tmp_path: Path
) -> None:
    async with _store(db_url, tmp_path) as store:
        tid = (await store.create_thread(ALICE, uuid.uuid4().hex, cap=10))["thread_id"]
        rids = [uuid.uuid4().hex for _ in range(6)]
        for rid in rids:
            await _record(store, ALICE, tid, rid, reject=False, request={"message": rid})
        assert await store.claim(tid, rids[0], "replica-a", force=False) == 0
        assert await store.heartbeat(rids, "replica-a") == set(rids)
        assert await store.take_over("replica-b") == []  # the leases are fresh
        async with store.pool.connection() as conn:
            await conn.execute(
                "UPDATE runs SET lease_expires_at = now() - interval '1 second'"
                " WHERE run_id = ANY(%s)",
                (rids,),
            )
        assert await store.take_over("replica-a") == []  # alive: it renews them once it can
        # Two replicas sweep at once: each lapsed run goes to exactly one of them.
        taken = await asyncio.gather(
            store.take_over("replica-b", limit=3), store.take_over("replica-c", limit=3)
        )
        rows = {r["run_id"]: r for batch in taken for r in batch}
        assert sorted(rows) == sorted(rids)
        assert sum(len(batch) for batch in taken) == len(rids)
        first = rows[rids[0]]
        assert (first["status"], first["attempts"], first["seq"]) == ("running", 2, 0)
        assert first["request"] == {"message": rids[0]} and first["started"] is False
        assert rows[rids[1]]["attempts"] == 1  # queued, never claimed before
        assert await store.heartbeat(rids, "replica-a") == set()  # the old owner lost them all
        assert await store.take_over("replica-d") == []
