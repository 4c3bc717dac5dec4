"""Retention (practice 3): prune old threads and over-long event logs, since both grow forever.

A thread whose newest run started more than ``retention.days`` ago is deleted with its runs,
events and checkpoints; a thread with more than ``retention.max_events_per_thread`` events
keeps only its newest ones (replay then starts at the oldest kept seq; seqs never change).
A deleted thread's session-memory facts go with it when the session store is given, and
artifacts (charts, tables) older than ``retention.days`` go when the artifact store is.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from psycopg_pool import AsyncConnectionPool

from core.settings import RetentionSettings
from memory.session import SessionMemory
from tools.artifacts import ArtifactStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PruneReport:
    """What a prune removed."""

    threads: int
    events: int
    artifacts: int = 0


async def prune(
    pool: AsyncConnectionPool[Any],
    retention: RetentionSettings,
    session: SessionMemory | None = None,
    artifacts: ArtifactStore | None = None,
) -> PruneReport:
    """Apply ``retention`` once; forget the deleted threads' facts and old artifacts too."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT t.thread_id, t.tenant FROM threads t LEFT JOIN runs r USING (thread_id)"
            " GROUP BY t.thread_id, t.tenant"
            " HAVING coalesce(max(r.started_at), max(t.created_at))"
            "  < now() - make_interval(days => %s)",
            (retention.days,),
        )
        rows = await cur.fetchall()
        old = [row["thread_id"] for row in rows]
    saver = AsyncPostgresSaver(pool)
    for thread_id in old:
        await saver.adelete_thread(thread_id)
    async with pool.connection() as conn, conn.transaction():
        if old:
            await conn.execute("DELETE FROM threads WHERE thread_id = ANY(%s)", (old,))
        cur = await conn.execute(
            "DELETE FROM events e USING (SELECT thread_id, max(seq) AS top FROM events"
            " GROUP BY thread_id HAVING count(*) > %s) big"
            " WHERE e.thread_id = big.thread_id AND e.seq <= big.top - %s",
            (retention.max_events_per_thread, retention.max_events_per_thread),
        )
        trimmed = cur.rowcount
        # An intent outlives any run that could resume its call long before retention ends.
        await conn.execute(
            "DELETE FROM tool_intents WHERE started_at < now() - make_interval(days => %s)",
            (retention.days,),
        )
    if session is not None:
        for row in rows:
            await session.forget_thread(row["tenant"], row["thread_id"])
    gone = artifacts.prune(retention.days) if artifacts is not None else 0
    report = PruneReport(threads=len(old), events=trimmed, artifacts=gone)
    log.info("pruned", extra={"keel": report.__dict__})
    return report
