"""What the documents servers share: their database pool, the embedder and the search index.

The search index holds each tenant's chunks in memory (``index.py``). Each is made on the
first call and kept for the life of the server process, so a search costs two queries and one
embedding, not a connection, a model load and every chunk read again.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Annotated, Any

from mcp.server.fastmcp import Context
from psycopg_pool import AsyncConnectionPool
from pydantic import Field

from core.embeddings import Embedder, embedder_for
from core.settings import SessionMemorySettings
from tools.servers.common import invoked
from tools.servers.documents import corpus
from tools.servers.documents.corpus import Hit, Mode
from tools.servers.documents.index import SearchIndex

_pool: AsyncConnectionPool[Any] | None = None
_embedder: Embedder | None = None
INDEX = SearchIndex()
EMBEDDINGS_ENV = "KEEL_TOOLS_EMBEDDINGS"
# The arguments of every version's ``search_documents`` (their schemas are pinned in tools.lock).
Query = Annotated[str, Field(min_length=1, max_length=500)]
Limit = Annotated[int, Field(ge=1, le=20)]


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


async def search(ctx: Context[Any, Any, Any], query: str, limit: int, mode: Mode) -> list[Hit]:
    """A ``search_documents`` call: logged as invoked, answered from the caller's tenant."""
    who = invoked(ctx, "search_documents", {"query": query, "limit": limit})
    semantic = await embedder() if mode != "full_text" else None
    async with (await pool()).connection() as conn:
        return await corpus.search(
            conn, who["tenant"], query, limit, embedder=semantic, index=INDEX, mode=mode
        )
