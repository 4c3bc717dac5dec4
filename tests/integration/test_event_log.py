"""EventLog.append: one batch is atomic, closes its run, pages it and notifies other replicas."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import AsyncConnection

from core.db import migrate, open_pool
from core.events import Event, NodeEvent, envelope
from runs.event_log import EVENTS_CHANNEL, EventLog


def _events(thread_id: str, run_id: str, first: int, n: int, finish: bool) -> list[Event]:
    t0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    nodes = [NodeEvent(type="run_started", data={"agent": "research", "message": "hi"})]
    nodes += [
        NodeEvent(type="text_delta", node="summarizer", data={"text": f'w{i} "é"\n'})
        for i in range(n - 1 - finish)
    ]
    if finish:
        usage = {"input_tokens": 3, "output_tokens": 4, "total_tokens": 7}
        nodes.append(
            NodeEvent(
                type="run_finished",
                data={"status": "success", "usage": usage, "duration_ms": 12.5},
            )
        )
    return [
        envelope(
            ev,
            seq=first + i,
            thread_id=thread_id,
            run_id=run_id,
            trace_id="t" * 32,
            ts=t0 + timedelta(milliseconds=i),
        )
        for i, ev in enumerate(nodes)
    ]


def _sql(db_url: str, query: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(db_url) as conn:
        return conn.execute(query, args).fetchall()  # type: ignore[arg-type]


async def _thread_with_run(db_url: str) -> tuple[str, str]:
    tid, rid = uuid.uuid4().hex, uuid.uuid4().hex
    async with await AsyncConnection.connect(db_url, autocommit=True) as conn:
        await migrate(conn)
        await conn.execute(
            "INSERT INTO threads (thread_id, tenant, user_id) VALUES (%s, 'acme', 'alice')", (tid,)
        )
        await conn.execute(
            "INSERT INTO runs (run_id, thread_id, trace_id, agent, status)"
            " VALUES (%s, %s, 't', 'research', 'running')",
            (rid, tid),
        )
    return tid, rid


@pytest.mark.asyncio
async def test_a_batch_is_stored_closes_its_run_pages_it_and_notifies(db_url: str) -> None:
    tid, rid = await _thread_with_run(db_url)
    events = _events(tid, rid, 1, 6, finish=True)
    listener = await AsyncConnection.connect(db_url, autocommit=True)
    await listener.execute(f"LISTEN {EVENTS_CHANNEL}")
    pool = await open_pool(db_url, 1, 2)
    try:
        log = EventLog(pool, "replica-a")
        await log.append(events[:2])
        await log.append(events[2:])
        notes = []
        async with asyncio.timeout(10):
            async for note in listener.notifies():
                notes.append(json.loads(note.payload))
                if len(notes) == 2:
                    break
        frames = "".join([chunk async for chunk in log.frames(tid)])
    finally:
        await pool.close()
        await listener.close()
    assert notes == [{"i": "replica-a", "t": tid, "s": 2}, {"i": "replica-a", "t": tid, "s": 6}]
    rows = _sql(
        db_url,
        "SELECT seq, run_id, type, ts, body FROM events WHERE thread_id = %s ORDER BY seq",
        tid,
    )
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        (e.seq, e.run_id, e.type, e.ts) for e in events
    ]
    assert [r[4] for r in rows] == [e.model_dump(mode="json") for e in events]
    ((status, usage, finished),) = _sql(
        db_url, "SELECT status, usage, finished_at FROM runs WHERE run_id = %s", rid
    )
    assert (status, usage) == ("success", events[-1].data.model_dump()["usage"])
    assert finished is not None
    assert _sql(db_url, "SELECT first_seq, last_seq FROM event_pages WHERE run_id = %s", rid) == [
        (1, 6)
    ]
    expected = "".join(
        f"id: {e.seq}\nevent: {e.type}\ndata: {json.dumps(e.model_dump(mode='json'))}\n\n"
        for e in events
    )
    assert [json.loads(line[6:]) for line in frames.splitlines() if line.startswith("data: ")] == [
        json.loads(line[6:]) for line in expected.splitlines() if line.startswith("data: ")
    ]


@pytest.mark.asyncio
async def test_a_batch_that_fails_writes_nothing(db_url: str) -> None:
    tid, rid = await _thread_with_run(db_url)
    pool = await open_pool(db_url, 1, 2)
    try:
        log = EventLog(pool, "replica-a")
        await log.append(_events(tid, rid, 1, 2, finish=False))
        clash = _events(tid, rid, 2, 3, finish=True)  # seq 2 is taken: the whole batch fails
        with pytest.raises(psycopg.errors.UniqueViolation):
            await log.append(clash)
        await log.append([])
    finally:
        await pool.close()
    assert _sql(db_url, "SELECT seq FROM events WHERE thread_id = %s ORDER BY seq", tid) == [
        (1,),
        (2,),
    ]
    assert _sql(db_url, "SELECT status, finished_at FROM runs WHERE run_id = %s", rid) == [
        ("running", None)
    ]
    assert _sql(db_url, "SELECT 1 FROM event_pages WHERE thread_id = %s", tid) == []


@pytest.mark.asyncio
async def test_holds_tells_a_batch_already_written_from_a_clash(db_url: str) -> None:
    tid, rid = await _thread_with_run(db_url)
    pool = await open_pool(db_url, 1, 2)
    try:
        log = EventLog(pool, "replica-a")
        written = _events(tid, rid, 1, 4, finish=False)
        await log.append(written)
        assert await log.holds(written)
        assert await log.holds(written[1:3])
        # Other events at those seqs (another run's, or other types) are a real clash.
        assert not await log.holds(_events(tid, uuid.uuid4().hex, 1, 4, finish=False))
        assert not await log.holds(_events(tid, rid, 2, 3, finish=True))
        # Part written, part not: not this batch.
        assert not await log.holds(_events(tid, rid, 3, 4, finish=False))
    finally:
        await pool.close()
