"""What the documents servers share: their database pool, the embedder and the search index.

The search index holds each tenant's chunks in memory (``index.py``). Each is made on the
first call and kept for the life of the server process, so a search costs two queries and one
embedding, not a connection, a model load and every chunk read again.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from psycopg_pool import AsyncConnectionPool

from core.embeddings import Embedder, embedder_for
from core.settings import SessionMemorySettings
from tools.servers.documents.index import SearchIndex

_pool: AsyncConnectionPool[Any] | None = None
_embedder: Embedder | None = None
INDEX = SearchIndex()
EMBEDDINGS_ENV = "KEEL_TOOLS_EMBEDDINGS"


async def pool() -> AsyncConnectionPool[Any]:
    """The server's pool on ``$KEEL_TOOLS_DATABASE_URL`` (opened on first use)."""
    global _pool
    if _pool is None:
        url = os.environ.get("KEEL_TOOLS_DATABASE_URL")
        if not url:
            raise RuntimeError("documents: no database configured")
        _pool = AsyncConnectionPool(
            url, min_size=1, max_size=4, open=False, kwargs={"autocommit": True}
        )
        await _pool.open()
    return _pool


async def embedder() -> Embedder:
    """The embedding model ``$KEEL_TOOLS_EMBEDDINGS`` names (the packaged one by default)."""
    global _embedder
    if _embedder is None:
        raw = os.environ.get(EMBEDDINGS_ENV)
        settings = SessionMemorySettings.model_validate(json.loads(raw)) if raw else None
        _embedder = await asyncio.to_thread(embedder_for, settings or SessionMemorySettings())
    return _embedder
