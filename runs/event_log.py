"""Replayable streams (practice 3): the append-only event log and the live fan-out.

Every envelope is written to ``events`` (primary key ``(thread_id, seq)``) before it is
published, so what a client sees live is always already durable. A client that resumes after
``Last-Event-ID`` reads the log, then the live tail; seqs dedupe the hand-over.

The hot path does each piece of work once per event, whatever the number of readers:

- an event is encoded to JSON once (``Frame``): that text is what the log stores and what the
  SSE frame carries, and the frame is rendered once and shared by every subscriber;
- writes are group-committed: batches that runs hand to ``EventLog.append`` while a write is in
  flight wait for it and then go together, one statement and one commit for many runs;
- each subscriber has a bounded buffer (``Subscription``). Publishing never waits for a reader:
  a reader whose buffer is full is dropped (its stream ends at the last frame it was sent and it
  resumes with ``Last-Event-ID``), so a slow client never slows the run or the other clients,
  and a run with no reader runs as fast as one with many.

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
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from cachetools import LRUCache
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from core.events import Event

log = logging.getLogger(__name__)

EVENTS_CHANNEL = "keel_events"
CANCEL_CHANNEL = "keel_cancel"
_MAX_REPLAY_GAP_S = 5.0
# Events per group commit at most (a larger backlog goes in several statements).
_GROUP_EVENTS = 4096

# One statement per group: the events, the runs they close (if any) and one notification per
# thread commit together. Data-modifying CTEs run whether or not the outer query reads them;
# the page trigger on run_finished fires at the end of the statement and sees every row of it.
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
SELECT pg_notify(%(channel)s, n) FROM jsonb_array_elements_text(%(notes)s::jsonb) AS n
"""


@dataclass(slots=True)
class Frame:
    """One event as the log stores it (``body``, its JSON) and as SSE sends it (``text``).

    Built once per event; the same object goes to the log and to every subscriber.
    """

    seq: int
    type: str
    run_id: str
    thread_id: str
    body: str
    text: str

    @classmethod
    def of(cls, ev: Event) -> Frame:
        """Encode ``ev`` once: its JSON and its SSE frame."""
        return cls.parts(ev.seq, ev.type, ev.run_id, ev.thread_id, ev.model_dump_json())

    @classmethod
    def parts(cls, seq: int, type_: str, run_id: str, thread_id: str, body: str) -> Frame:
        """A frame from an event's stored JSON text."""
        text = f"id: {seq}\nevent: {type_}\ndata: {body}\n\n"
        return cls(seq, type_, run_id, thread_id, body, text)

    def wire(self) -> dict[str, Any]:
        """The envelope as a dict (for readers that want objects, not frames)."""
        wire: dict[str, Any] = json.loads(self.body)
        return wire


def frames_of(events: Iterable[Event | Frame]) -> list[Frame]:
    """Each event as a ``Frame`` (frames are kept as they are)."""
    return [e if isinstance(e, Frame) else Frame.of(e) for e in events]


def _settle(done: asyncio.Future[None], exc: BaseException | None) -> None:
    """Resolve a writer's future unless its waiter has gone."""
    if done.done():
        return
    if exc is None:
        done.set_result(None)
    elif isinstance(exc, asyncio.CancelledError):
        done.cancel()
    else:
        done.set_exception(exc)


def _pages_size(pages: dict[int, tuple[str, int, str]]) -> int:
    """Bytes one thread's cached pages take, roughly (their text, plus a little per page)."""
    return sum(len(frames) + 64 for _, _, frames in pages.values())


class EventLog:
    """The ``events`` table: group-committed appends, reads of a thread after a seq.

    The one implementation: embedded and production mode both run Postgres, so there is no
    protocol to satisfy (``bench/writes.py`` subclasses it only to time its appends). A second
    store would come with a ``Protocol`` here and ``tests/integration/test_event_log.py`` run
    against both, as ``SessionMemory`` does.
    """

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        instance: str = "",
        page_cache_bytes: int = 8 * 2**20,
        writers: int = 2,
    ) -> None:
        """Use ``pool``; ``instance`` names this process in notifications.

        ``page_cache_bytes`` bounds the replay pages kept in memory (see ``frames``);
        ``writers`` bounds the group commits in flight at once.
        """
        self.pool = pool
        self.instance = instance
        self._pages: LRUCache[str, dict[int, tuple[str, int, str]]] = LRUCache(
            page_cache_bytes, getsizeof=_pages_size
        )
        self._pending: deque[tuple[list[Frame], asyncio.Future[None]]] = deque()
        self._max_writers = writers
        self._writers: set[asyncio.Task[None]] = set()

    async def last_seq(self, thread_id: str) -> int:
        """The highest seq written for ``thread_id`` (0 if none)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT coalesce(max(seq), 0) AS s FROM events WHERE thread_id = %s", (thread_id,)
            )
            row = await cur.fetchone()
            return int(row["s"]) if row else 0

    async def append(self, events: Sequence[Event | Frame]) -> None:
        """Write ``events`` of one run atomically; they are durable when this returns.

        A ``run_finished`` among them closes its row in ``runs`` in the same transaction, so
        whoever sees the event also sees the run's final status. Batches handed in while a
        write is in flight go together in the next one (group commit): one statement (one
        JSON array of the events' own encodings, unpacked by Postgres) and one commit for
        many runs. A group Postgres refuses for its data (a seq already taken) is written
        again batch by batch, so only the batch at fault fails; a group that fails otherwise
        (a lost connection) fails every batch in it, and each writer's retry asks ``holds``
        whether its batch had committed after all.
        """
        if not events:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((frames_of(events), done))
        if len(self._writers) < self._max_writers:
            task = asyncio.create_task(self._flush(), name="event-log-writer")
            self._writers.add(task)
            task.add_done_callback(self._writers.discard)
        await done

    async def _flush(self) -> None:
        """Commit pending batches, a group at a time, until none is left."""
        while self._pending:
            group = [self._pending.popleft()]
            size = len(group[0][0])
            while self._pending and size + len(self._pending[0][0]) <= _GROUP_EVENTS:
                size += len(self._pending[0][0])
                group.append(self._pending.popleft())
            try:
                await self._commit(group)
            except BaseException as exc:  # cancelled (shutdown): nobody waits in vain
                for _, done in group:
                    _settle(done, exc)
                raise

    async def _commit(self, group: list[tuple[list[Frame], asyncio.Future[None]]]) -> None:
        try:
            await self._write([f for frames, _ in group for f in frames])
        except (psycopg.IntegrityError, psycopg.DataError) as exc:
            if len(group) == 1:
                _settle(group[0][1], exc)
                return
            for frames, done in group:  # find the batch at fault; the others are written
                try:
                    await self._write(frames)
                except Exception as one:
                    _settle(done, one)
                else:
                    _settle(done, None)
            return
        except Exception as exc:
            for _, done in group:
                _settle(done, exc)
            return
        for _, done in group:
            _settle(done, None)

    async def _write(self, frames: Sequence[Frame]) -> None:
        """One statement, one commit: the frames' events and a notification per thread."""
        last: dict[str, int] = {}
        for f in frames:
            last[f.thread_id] = max(f.seq, last.get(f.thread_id, 0))
        notes = [json.dumps({"i": self.instance, "t": t, "s": s}) for t, s in last.items()]
        args = {
            "batch": "[" + ",".join(f.body for f in frames) + "]",
            "channel": EVENTS_CHANNEL,
            "notes": json.dumps(notes),
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
        return [f.wire() for f in await self.read_frames(thread_id, after, run_id, limit)]

    async def read_frames(
        self, thread_id: str, after: int = 0, run_id: str | None = None, limit: int = 100_000
    ) -> list[Frame]:
        """The thread's events with ``seq > after`` in order, as frames (the JSON as stored)."""
        sql = (
            "SELECT seq, type, run_id, body::text AS body FROM events"
            " WHERE thread_id = %s AND seq > %s"
        )
        args: list[Any] = [thread_id, after]
        if run_id:
            sql += " AND run_id = %s"
            args.append(run_id)
        sql += " ORDER BY seq LIMIT %s"
        args.append(limit)
        async with self.pool.connection() as conn:
            cur = await conn.execute(sql, args)
            rows = await cur.fetchall()
        return [Frame.parts(r["seq"], r["type"], r["run_id"], thread_id, r["body"]) for r in rows]

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


class Subscription:
    """One live reader of a thread: a bounded buffer of frames, filled by ``Broker.publish``.

    ``push`` never waits: when the reader is more than ``limit`` frames behind, the buffer is
    dropped and the subscription ends (``dropped`` is set), so the publisher goes on at once.
    """

    def __init__(self, limit: int) -> None:
        """An empty buffer that holds ``limit`` frames at most."""
        self.limit = limit
        self.dropped = asyncio.Event()
        self._frames: deque[Frame] = deque()
        self._woken = False
        self._ready = asyncio.Event()

    def push(self, frames: Sequence[Frame]) -> bool:
        """Buffer ``frames``; False (and the subscription ends) when they do not fit."""
        if self.dropped.is_set():
            return False
        if len(self._frames) + len(frames) > self.limit:
            self._frames.clear()
            self.dropped.set()
            self._ready.set()
            return False
        self._frames.extend(frames)
        self._ready.set()
        return True

    def wake(self) -> None:
        """Events were written elsewhere (another replica): the reader reads them from the log."""
        self._woken = True
        self._ready.set()

    async def get(self, timeout: float | None = None) -> tuple[list[Frame], bool]:
        """Wait for frames: everything buffered, and whether the log must be read too.

        After ``timeout`` seconds with nothing, returns no frames.

        Raises:
            SlowReader: the reader fell ``limit`` frames behind and was dropped.
        """
        try:
            async with asyncio.timeout(timeout):
                await self._ready.wait()
        except TimeoutError:
            return [], False
        if self.dropped.is_set():
            raise SlowReader
        self._ready.clear()
        frames, woken = list(self._frames), self._woken
        self._frames.clear()
        self._woken = False
        return frames, woken


class SlowReader(Exception):
    """A live reader fell too far behind; its stream ends and it resumes from its last id."""


class Broker:
    """Fan-out to live subscribers, per thread: local events directly, remote ones as a wake-up."""

    def __init__(self, buffer: int = 1024) -> None:
        """Start with no subscribers; each one buffers ``buffer`` frames at most."""
        self.buffer = buffer
        self._subs: dict[str, set[Subscription]] = defaultdict(set)

    def subscribe(self, thread_id: str) -> Subscription:
        """A subscription that receives every frame published on ``thread_id`` from now on."""
        sub = Subscription(self.buffer)
        self._subs[thread_id].add(sub)
        return sub

    def unsubscribe(self, thread_id: str, sub: Subscription) -> None:
        """Stop delivering to ``sub``."""
        subs = self._subs.get(thread_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[thread_id]

    def subscribers(self, thread_id: str) -> int:
        """How many live subscribers ``thread_id`` has in this process."""
        return len(self._subs.get(thread_id, ()))

    def publish(self, thread_id: str, events: Sequence[Event | Frame]) -> None:
        """Deliver ``events`` (written by this process) to every subscriber of ``thread_id``.

        The frames are shared: each is encoded once, whatever the number of subscribers. A
        subscriber too far behind is dropped here and never slows the others.
        """
        subs = self._subs.get(thread_id)
        if not subs:
            return
        frames = frames_of(events)
        for sub in [s for s in subs if not s.push(frames)]:
            self.unsubscribe(thread_id, sub)

    def wake_all(self) -> None:
        """Wake every subscriber (after a lost notification connection): they re-read the log."""
        for thread_id in list(self._subs):
            self.wake(thread_id)

    def wake(self, thread_id: str) -> None:
        """Tell subscribers that another replica wrote events: they read them from the log."""
        for sub in self._subs.get(thread_id, ()):
            sub.wake()


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


class LiveStream:
    """A thread's frames after a seq: history from the log, then (optionally) the live tail.

    Iterating yields lists of frames, in seq order, each list everything there was to send
    at that moment (so a reader that is behind catches up in few writes). Subscribing before
    reading the log and skipping seqs already sent makes the hand-over gap-free and
    duplicate-free. With ``until_run`` the stream follows the live tail until that run's
    ``run_finished``; ``run_id`` keeps only that run's events. ``dropped`` is set when the
    reader fell too far behind (``Subscription``): the stream then ends early. A live tail
    with nothing to send for ``quiet_s`` yields an empty list (the SSE response's ping).
    """

    def __init__(
        self,
        log_: EventLog,
        broker: Broker,
        thread_id: str,
        after: int,
        *,
        until_run: str | None = None,
        run_id: str | None = None,
        quiet_s: float | None = None,
    ) -> None:
        """Prepare the stream; it subscribes when iterated."""
        self.log, self.broker, self.thread_id = log_, broker, thread_id
        self.after, self.until_run, self.run_id = after, until_run, run_id
        self.quiet_s = quiet_s
        self.dropped = asyncio.Event()
        self.last: int | None = after  # the last seq seen (None: none yet, after ``subscribe``)
        self._sub: Subscription | None = None

    def subscribe(self) -> None:
        """Follow the thread from now on and read no history (``after`` is ignored).

        For a run that has not started yet: every event of it is published after this, so
        the live tail alone is complete. Call ``close`` if the stream is never iterated.
        """
        self._sub = self.broker.subscribe(self.thread_id)
        self.last = None

    def close(self) -> None:
        """Drop the subscription ``subscribe`` took."""
        if self._sub is not None:
            self.broker.unsubscribe(self.thread_id, self._sub)

    async def __aiter__(self) -> AsyncIterator[list[Frame]]:
        """The frames, in lists; ends after ``until_run``'s last event or when dropped."""
        sub, fresh, ended = self._sub, self._sub is not None, False
        if sub is None and self.until_run:
            sub = self.broker.subscribe(self.thread_id)
        try:
            if not fresh:
                frames = await self.log.read_frames(self.thread_id, self.after, self.run_id)
                out, ended = self._keep(frames)
                if out:
                    yield out
            while sub is not None and not ended:
                try:
                    frames, woken = await sub.get(self.quiet_s)
                except SlowReader:
                    self.dropped.set()
                    return
                if not frames and not woken:
                    yield []
                    continue
                gap = frames and self.last is not None and frames[0].seq > self.last + 1
                if woken or gap:
                    frames = await self._reread()
                out, ended = self._keep(frames)
                if out:
                    yield out
        finally:
            if sub is not None:
                self.broker.unsubscribe(self.thread_id, sub)

    async def _reread(self) -> list[Frame]:
        """What the log holds after the last seq seen (this run's, when none was seen yet)."""
        if self.last is None:
            return await self.log.read_frames(self.thread_id, 0, self.run_id)
        return await self.log.read_frames(self.thread_id, self.last)

    def _keep(self, frames: list[Frame]) -> tuple[list[Frame], bool]:
        """The frames not sent yet (and of ``run_id``), and whether ``until_run`` ended."""
        out: list[Frame] = []
        for f in frames:
            if self.last is not None and f.seq <= self.last:
                continue
            self.last = f.seq
            if self.run_id and f.run_id != self.run_id:
                continue
            out.append(f)
            if f.type == "run_finished" and f.run_id == self.until_run:
                return out, True
        return out, False


async def paced(stream: AsyncIterator[list[Frame]]) -> AsyncIterator[list[Frame]]:
    """Replay ``stream``'s frames one by one with their original gaps (each capped at 5 s)."""
    prev: datetime | None = None
    async for burst in stream:
        for f in burst:
            ts = datetime.fromisoformat(f.wire()["ts"].replace("Z", "+00:00"))
            if prev is not None:
                await asyncio.sleep(min(max((ts - prev).total_seconds(), 0), _MAX_REPLAY_GAP_S))
            prev = ts
            yield [f]
