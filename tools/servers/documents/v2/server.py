"""documents 2.0.0: hybrid search (full text and meaning, fused by rank) with pages."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.fastmcp import Context
from pydantic import Field

from tools.servers.common import invoked, make_server
from tools.servers.documents import access, corpus

server = make_server(
    "documents",
    "2.0.0",
    "Search the user's own files (uploaded in the app or with `keel ingest PATH...`).",
)


@server.tool(meta={"keel/permissions": []})
async def search_documents(
    query: Annotated[str, Field(min_length=1, max_length=500)],
    ctx: Context[Any, Any, Any],
    limit: Annotated[int, Field(ge=1, le=20)] = 5,
) -> dict[str, Any]:
    """Search the tenant's documents by words and meaning; each hit has document, page, excerpt."""
    who = invoked(ctx, "search_documents", {"query": query, "limit": limit})
    embedder = await access.embedder()
    async with (await access.pool()).connection() as conn:
        hits = await corpus.search(
            conn, who["tenant"], query, limit, embedder=embedder, index=access.INDEX
        )
    return {"query": query, "mode": "hybrid", "hits": [h.as_dict() for h in hits]}
