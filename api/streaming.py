"""Replayable streams (practice 3): the append-only event log and the live fan-out.

Every envelope is written to ``events`` (primary key ``(thread_id, seq)``, one transaction per
batch) before it is published to live subscribers, so what a client sees live is always
already durable, and a client that resumes after ``Last-Event-ID`` reads the log, then the tail.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from typing import Any

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from core.events import Event


def to_json(ev: Event) -> str:
    """The wire form of one envelope."""
    return ev.model_dump_json()


class EventLog:
    """The ``events`` table: append batches, read a thread's events after a seq."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        """Use ``pool`` for every read and write."""
        self.pool = pool

    async def last_seq(self, thread_id: str) -> int:
        """The highest seq written for ``thread_id`` (0 if none)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT coalesce(max(seq), 0) AS s FROM events WHERE thread_id = %s", (thread_id,)
            )
            row = await cur.fetchone()
            return int(row["s"]) if row else 0

    async def append(self, events: Sequence[Event]) -> None:
        """Write ``events`` in one transaction."""
        if not events:
            return
        async with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO events (thread_id, seq, run_id, type, ts, body)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                [
                    (e.thread_id, e.seq, e.run_id, e.type, e.ts, Jsonb(e.model_dump(mode="json")))
                    for e in events
                ],
            )

    async def read(
        self, thread_id: str, after: int = 0, run_id: str | None = None, limit: int = 10_000
    ) -> list[dict[str, Any]]:
        """The thread's events with ``seq > after`` in order, as wire dicts."""
        sql = "SELECT body FROM events WHERE thread_id = %s AND seq > %s"
        args: list[Any] = [thread_id, after]
        if run_id:
            sql += " AND run_id = %s"
            args.append(run_id)
        sql += " ORDER BY seq LIMIT %s"
        args.append(limit)
        async with self.pool.connection() as conn:
            cur = await conn.execute(sql, args)
            return [row["body"] for row in await cur.fetchall()]


class Broker:
    """In-process fan-out of durable events to live subscribers, per thread."""

    def __init__(self) -> None:
        """Start with no subscribers."""
        self._subs: dict[str, set[asyncio.Queue[dict[str, Any]]]] = defaultdict(set)

    def subscribe(self, thread_id: str) -> asyncio.Queue[dict[str, Any]]:
        """A queue that receives every event published on ``thread_id`` from now on."""
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._subs[thread_id].add(q)
        return q

    def unsubscribe(self, thread_id: str, q: asyncio.Queue[dict[str, Any]]) -> None:
        """Stop delivering to ``q``."""
        subs = self._subs.get(thread_id)
        if subs is not None:
            subs.discard(q)
            if not subs:
                del self._subs[thread_id]

    def publish(self, thread_id: str, events: Sequence[Event]) -> None:
        """Deliver ``events`` to every subscriber of ``thread_id``."""
        subs = self._subs.get(thread_id)
        if not subs:
            return
        wire = [e.model_dump(mode="json") for e in events]
        for q in subs:
            for item in wire:
                q.put_nowait(item)


def sse_item(body: dict[str, Any]) -> dict[str, str]:
    """One SSE frame (``id``/``event``/``data``) for sse-starlette."""
    return {"id": str(body["seq"]), "event": body["type"], "data": json.dumps(body)}


async def tail(
    log: EventLog,
    broker: Broker,
    thread_id: str,
    after: int,
    *,
    until_run: str | None = None,
    run_id: str | None = None,
) -> AsyncIterator[dict[str, Any]]:
    """History after ``after``; then, if ``until_run`` is set, the live tail until it finishes.

    Subscribing before reading the log and skipping seqs already sent makes the hand-over
    gap-free and duplicate-free. ``run_id`` keeps only that run's events.
    """
    q = broker.subscribe(thread_id) if until_run else None
    try:
        last = after
        for body in await log.read(thread_id, after, run_id):
            last = body["seq"]
            yield body
            if body["type"] == "run_finished" and body["run_id"] == until_run:
                return
        if q is None:
            return
        while True:
            body = await q.get()
            if body["seq"] <= last or (run_id and body["run_id"] != run_id):
                continue
            last = body["seq"]
            yield body
            if body["type"] == "run_finished" and body["run_id"] == until_run:
                return
    finally:
        if q is not None:
            broker.unsubscribe(thread_id, q)
