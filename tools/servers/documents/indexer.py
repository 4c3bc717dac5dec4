"""Background indexing of uploaded documents: one worker embeds their chunks, oldest first.

An upload returns as soon as its text is stored (status ``indexing``); this worker embeds the
chunks and marks the document ``ready``. It starts by taking up the documents a previous process
left ``indexing`` (a restart loses nothing), and stops by cancelling the current one, which the
next process finishes. One worker per process keeps a burst of uploads from taking every core.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from psycopg_pool import AsyncConnectionPool

from core.embeddings import Embedder
from tools.servers.documents import corpus

log = logging.getLogger(__name__)


class Indexer:
    """Embeds documents queued by ``submit`` (and those found ``indexing`` at start)."""

    def __init__(
        self, pool: AsyncConnectionPool[Any], embedder: Callable[[], Embedder], batch: int = 32
    ) -> None:
        """Index into ``pool``'s database with the embedder ``embedder()`` makes on first use."""
        self.pool = pool
        self._make = embedder
        self._embedder: Embedder | None = None
        self.batch = batch
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Queue what an earlier process left unfinished and start the worker."""
        async with self.pool.connection() as conn:
            for doc_id in await corpus.pending(conn):
                self.queue.put_nowait(doc_id)
        self._task = asyncio.create_task(self._run(), name="documents-indexer")

    def submit(self, doc_id: str) -> None:
        """Index ``doc_id`` after those already queued."""
        self.queue.put_nowait(doc_id)

    async def aclose(self) -> None:
        """Stop the worker; a document cut short stays ``indexing`` for the next start."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            doc_id = await self.queue.get()
            try:
                if self._embedder is None:
                    self._embedder = await asyncio.to_thread(self._make)
                async with self.pool.connection() as conn:
                    await corpus.embed_document(conn, self._embedder, doc_id, self.batch)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("indexing document %s failed", doc_id)
                async with self.pool.connection() as conn:
                    await corpus.mark_failed(conn, doc_id, f"indexing failed: {type(exc).__name__}")
