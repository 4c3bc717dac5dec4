"""Replayable streams (practice 3): the append-only event log and the live fan-out.

Every envelope is written to ``events`` (primary key ``(thread_id, seq)``, one transaction per
batch) before it is published, so what a client sees live is always already durable. A client
that resumes after ``Last-Event-ID`` reads the log, then the live tail; seqs dedupe the hand-over.

Across API replicas the live tail rides on Postgres ``LISTEN/NOTIFY`` rather than Redis pub/sub:
the notification is sent inside the same transaction as the insert, so it is delivered only once
the events are committed, it needs no second system, and it carries only ``(thread, seq)`` —
subscribers on other replicas wake up and read the events from the log, so a lost notification
costs latency, never an event. The same channel carries cancel requests for runs that live on
another replica.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

from cachetools import LRUCache
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from core.events import Event

log = logging.getLogger(__name__)

EVENTS_CHANNEL = "keel_events"
CANCEL_CHANNEL = "keel_cancel"
_WAKE: dict[str, Any] = {"type": "__wake__"}
_MAX_REPLAY_GAP_S = 5.0

# One statement per batch: the events, the run they close (if any) and the notification commit
# together. Data-modifying CTEs run whether or not the outer query reads them; the page trigger
# on run_finished fires at the end of the statement and sees every row of the batch.
_APPEND = """
WITH batch AS (
    SELECT b FROM jsonb_array_elements(%(batch)s::jsonb) AS b
), ins AS (
    INSERT INTO events (thread_id, seq, run_id, type, ts, body)
    SELECT b->>'thread_id', (b->>'seq')::bigint, b->>'run_id', b->>'type',
           (b->>'ts')::timestamptz, b
      FROM batch
), fin AS (
    UPDATE runs SET status = b->'data'->>'status', finished_at = now(), usage = b->'data'->'usage'
      FROM batch
     WHERE b->>'type' = 'run_finished' AND runs.run_id = b->>'run_id'
)
SELECT pg_notify(%(channel)s, %(note)s)
"""


def _pages_size(pages: dict[int, tuple[str, int, str]]) -> int:
    """Bytes one thread's cached pages take, roughly (their text, plus a little per page)."""
    return sum(len(frames) + 64 for _, _, frames in pages.values())


class EventLog:
    """The ``events`` table: append batches, read a thread's events after a seq.

    The one implementation: embedded and production mode both run Postgres, so there is no
    protocol to satisfy (``bench/writes.py`` subclasses it only to time its appends). A second
    store would come with a ``Protocol`` here and ``tests/integration/test_event_log.py`` run
    against both, as ``SessionMemory`` does.
    """

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        instance: str = "",
        page_cache_bytes: int = 64 * 2**20,
    ) -> None:
        """Use ``pool``; ``instance`` names this process in notifications.

        ``page_cache_bytes`` bounds the replay pages kept in memory (see ``frames``).
        """
        self.pool = pool
        self.instance = instance
        self._pages: LRUCache[str, dict[int, tuple[str, int, str]]] = LRUCache(
            page_cache_bytes, getsizeof=_pages_size
        )

    async def last_seq(self, thread_id: str) -> int:
        """The highest seq written for ``thread_id`` (0 if none)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT coalesce(max(seq), 0) AS s FROM events WHERE thread_id = %s", (thread_id,)
            )
            row = await cur.fetchone()
            return int(row["s"]) if row else 0

    async def append(self, events: Sequence[Event]) -> None:
        """Write ``events`` of one thread atomically and notify other replicas.

        A ``run_finished`` among them closes its row in ``runs`` in the same transaction, so
        whoever sees the event also sees the run's final status. The batch is one statement
        (one JSON array of the events as pydantic encoded them, unpacked by Postgres):
        one round trip and one commit per batch, whatever its size.
        """
        if not events:
            return
        last = events[-1]
        args = {
            # The batch is one JSON array built from each event's own encoding: one text
            # parameter, where seven arrays cost psycopg a dumper call per element.
            "batch": "[" + ",".join(e.model_dump_json() for e in events) + "]",
            "channel": EVENTS_CHANNEL,
            "note": json.dumps({"i": self.instance, "t": last.thread_id, "s": last.seq}),
        }
        async with self.pool.connection() as conn:
            await conn.execute(_APPEND, args)

    async def holds(self, events: Sequence[Event]) -> bool:
        """Whether exactly these events (same seqs, run and types) are already stored.

        A batch is one statement, so it is written whole or not at all; a write whose
        connection dropped before the commit was acknowledged may still have committed, and
        its retry then fails on the ``(thread_id, seq)`` key. This tells that case (the batch
        is ours: done) from a clash with other events at those seqs (a real conflict).
        """
        if not events:
            return True
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT seq, run_id, type FROM events WHERE thread_id = %s AND seq = ANY(%s)",
                (events[0].thread_id, [e.seq for e in events]),
            )
            rows = await cur.fetchall()
        stored = {(r["seq"], r["run_id"], r["type"]) for r in rows}
        return stored == {(e.seq, e.run_id, e.type) for e in events}

    async def read(
        self, thread_id: str, after: int = 0, run_id: str | None = None, limit: int = 100_000
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

    async def frames(
        self, thread_id: str, after: int = 0, run_id: str | None = None, page: int = 2000
    ) -> AsyncIterator[str]:
        """The thread's events as ready-made SSE frames (the replay path).

        A finished run is one row of ``event_pages`` (rendered by a trigger when its
        ``run_finished`` is written, migration 0007), so a replay of finished runs reads a row
        per run; seq ranges with no page (a run still going, a page dropped by pruning, an
        ``after`` inside a run) are formatted by Postgres from the stored JSON, ``page``
        events at a time. Either way nothing is parsed or re-serialised in Python.

        A page never changes once written (pruning only deletes it), so this process keeps
        the pages it has read in a byte-bounded LRU per thread: the query names the pages it
        holds, by ``(first_seq, run_id)``, and Postgres sends their bounds but not their text
        (which it would otherwise have to fetch from TOAST and decompress). A page pruned
        since is simply no longer listed, so it is never served from the cache.
        """
        run_filter = " AND run_id = %s" if run_id else ""
        sql = (
            "SELECT p.first_seq, p.last_seq, p.run_id, t.top,"
            " CASE WHEN (p.first_seq, p.run_id) IN (SELECT * FROM unnest(%s::bigint[], %s::text[]))"
            "  THEN NULL ELSE p.frames END AS frames"
            " FROM (SELECT max(seq) AS top FROM events WHERE thread_id = %s) t"
            " LEFT JOIN LATERAL (SELECT first_seq, last_seq, run_id, frames FROM event_pages"
            f"  WHERE thread_id = %s AND first_seq > %s{run_filter}"
            "  ORDER BY first_seq LIMIT %s) p ON true ORDER BY p.first_seq"
        )
        per_fetch = 64
        cursor = after
        held: dict[int, tuple[str, int, str]] = dict(self._pages.get(thread_id, {}))
        fresh = False
        while True:
            seqs = list(held)
            runs = [held[s][0] for s in seqs]
            args: list[Any] = [seqs, runs, thread_id, thread_id, cursor]
            args += [*([run_id] if run_id else []), per_fetch]
            async with self.pool.connection() as conn:
                cur = await conn.execute(sql, args)
                rows = await cur.fetchall()
            top = rows[0]["top"] or 0
            pages = [row for row in rows if row["first_seq"] is not None]
            for row in pages:
                if row["first_seq"] > cursor + 1:
                    gap = self._formatted(thread_id, cursor, run_id, page, below=row["first_seq"])
                    async for chunk in gap:
                        yield chunk
                if row["frames"] is None:
                    yield held[row["first_seq"]][2]
                else:
                    held[row["first_seq"]] = (row["run_id"], row["last_seq"], row["frames"])
                    fresh = True
                    yield row["frames"]
                cursor = row["last_seq"]
            if len(pages) < per_fetch:
                break
        if fresh and _pages_size(held) <= self._pages.maxsize:
            self._pages[thread_id] = held
        if cursor < top:
            async for chunk in self._formatted(thread_id, cursor, run_id, page):
                yield chunk

    async def _formatted(
        self,
        thread_id: str,
        after: int,
        run_id: str | None,
        page: int,
        below: int | None = None,
    ) -> AsyncIterator[str]:
        """Frames for events with ``after < seq < below``, formatted by Postgres."""
        where = "thread_id = %s AND seq > %s" + (" AND run_id = %s" if run_id else "")
        where += " AND seq < %s" if below is not None else ""
        sql = (
            "SELECT string_agg(format(E'id: %%s\\nevent: %%s\\ndata: %%s\\n\\n', seq, type,"
            " body::text), '' ORDER BY seq) AS frames, max(seq) AS last, count(*) AS n"
            f" FROM (SELECT seq, type, body FROM events WHERE {where} ORDER BY seq LIMIT %s) e"
        )
        last = after
        while True:
            args: list[Any] = [thread_id, last, *([run_id] if run_id else [])]
            args += [*([below] if below is not None else []), page]
            async with self.pool.connection() as conn:
                cur = await conn.execute(sql, args)
                row = await cur.fetchone()
            if row is None or not row["n"]:
                return
            yield row["frames"]
            if row["n"] < page:
                return
            last = row["last"]


class Broker:
    """Fan-out to live subscribers, per thread: local events directly, remote ones as a wake-up."""

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

    def subscribers(self, thread_id: str) -> int:
        """How many live subscribers ``thread_id`` has in this process."""
        return len(self._subs.get(thread_id, ()))

    def publish(self, thread_id: str, events: Sequence[Event]) -> None:
        """Deliver ``events`` (written by this process) to every subscriber of ``thread_id``."""
        subs = self._subs.get(thread_id)
        if not subs:
            return
        wire = [e.model_dump(mode="json") for e in events]
        for q in subs:
            for item in wire:
                q.put_nowait(item)

    def wake_all(self) -> None:
        """Wake every subscriber (after a lost notification connection): they re-read the log."""
        for thread_id in list(self._subs):
            self.wake(thread_id)

    def wake(self, thread_id: str) -> None:
        """Tell subscribers that another replica wrote events: they read them from the log."""
        for q in self._subs.get(thread_id, ()):
            q.put_nowait(_WAKE)


class Listener:
    """One LISTEN connection per process: remote event notifications and cancel requests."""

    def __init__(
        self,
        url: str,
        broker: Broker,
        instance: str,
        on_cancel: Callable[[str], Awaitable[bool]],
    ) -> None:
        """Listen on ``url`` for this process (``instance``)."""
        self.url = url
        self.broker = broker
        self.instance = instance
        self.on_cancel = on_cancel
        self.ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start listening; returns once LISTEN is in place (or after 10 s)."""
        self._task = asyncio.create_task(self._loop(), name="pg-listener")
        try:
            await asyncio.wait_for(self.ready.wait(), 10)
        except TimeoutError:
            log.warning("event listener not ready; live tails across replicas are delayed")

    async def stop(self) -> None:
        """Stop listening."""
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            try:
                conn = await AsyncConnection.connect(self.url, autocommit=True)
                async with conn:
                    await conn.execute(f"LISTEN {EVENTS_CHANNEL}")
                    await conn.execute(f"LISTEN {CANCEL_CHANNEL}")
                    self.ready.set()
                    async for note in conn.notifies():
                        await self._handle(note.channel, note.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("event listener lost its connection (%s); retrying", exc)
                # Wake every subscriber: they re-read the log, so nothing missed is lost.
                self.broker.wake_all()
                await asyncio.sleep(1)

    async def _handle(self, channel: str, payload: str) -> None:
        if channel == CANCEL_CHANNEL:
            await self.on_cancel(payload)
            return
        try:
            note = json.loads(payload)
        except ValueError:
            return
        if note.get("i") != self.instance and self.broker.subscribers(note.get("t", "")):
            self.broker.wake(note["t"])


async def notify_cancel(pool: AsyncConnectionPool[Any], run_id: str) -> None:
    """Ask whichever replica runs ``run_id`` to cancel it."""
    async with pool.connection() as conn:
        await conn.execute("SELECT pg_notify(%s, %s)", (CANCEL_CHANNEL, run_id))


def sse_item(body: dict[str, Any]) -> dict[str, str]:
    """One SSE frame (``id``/``event``/``data``) for sse-starlette."""
    return {"id": str(body["seq"]), "event": body["type"], "data": json.dumps(body)}


async def tail(
    log_: EventLog,
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
        for body in await log_.read(thread_id, after, run_id):
            last = body["seq"]
            yield body
            if body["type"] == "run_finished" and body["run_id"] == until_run:
                return
        if q is None:
            return
        while True:
            item = await q.get()
            gap = item is _WAKE or item["seq"] > last + 1
            batch = await log_.read(thread_id, last) if gap else [item]
            for body in batch:
                if body["seq"] <= last:
                    continue
                last = body["seq"]
                if run_id and body["run_id"] != run_id:
                    continue
                yield body
                if body["type"] == "run_finished" and body["run_id"] == until_run:
                    return
    finally:
        if q is not None:
            broker.unsubscribe(thread_id, q)


async def paced(events: AsyncIterator[dict[str, Any]], pace: str) -> AsyncIterator[dict[str, Any]]:
    """Replay ``events`` as fast as possible, or with their original gaps (each capped at 5 s)."""
    prev: datetime | None = None
    async for body in events:
        if pace == "original":
            ts = datetime.fromisoformat(body["ts"].replace("Z", "+00:00"))
            if prev is not None:
                await asyncio.sleep(min(max((ts - prev).total_seconds(), 0), _MAX_REPLAY_GAP_S))
            prev = ts
        yield body
