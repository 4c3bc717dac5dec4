"""documents 1.0.0 (practice 16): full-text search over the tenant's documents."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.fastmcp import Context
from pydantic import Field

from tools.servers.common import invoked, make_server
from tools.servers.documents import access, corpus

server = make_server(
    "documents", "1.0.0", "Search the user's own files (added with `keel ingest PATH...`)."
)


@server.tool(meta={"keel/permissions": []})
async def search_documents(
    query: Annotated[str, Field(min_length=1, max_length=500)],
    ctx: Context[Any, Any, Any],
    limit: Annotated[int, Field(ge=1, le=20)] = 5,
) -> dict[str, Any]:
    """Full-text search of the tenant's documents; each hit has source and excerpt."""
    who = invoked(ctx, "search_documents", {"query": query, "limit": limit})
    async with (await access.pool()).connection() as conn:
        hits = await corpus.search(
            conn, who["tenant"], query, limit, embedder=None, index=access.INDEX, mode="full_text"
        )
    return {
        "query": query,
        "mode": "full_text",
        "hits": [
            {"source": h.document, "chunk": h.chunk, "score": h.score, "excerpt": h.excerpt}
            for h in hits
        ],
    }
