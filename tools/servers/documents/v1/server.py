"""documents 1.0.0 (practice 16): full-text search over the tenant's documents."""

from __future__ import annotations

from typing import Any

from mcp.server.fastmcp import Context

from tools.servers.common import make_server
from tools.servers.documents import access
from tools.servers.documents.access import Limit, Query

server = make_server(
    "documents", "1.0.0", "Search the user's own files (added with `keel ingest PATH...`)."
)


@server.tool(meta={"keel/permissions": []})
async def search_documents(
    query: Query, ctx: Context[Any, Any, Any], limit: Limit = 5
) -> dict[str, Any]:
    """Full-text search of the tenant's documents; each hit has source and excerpt."""
    hits = await access.search(ctx, query, limit, "full_text")
    return {
        "query": query,
        "mode": "full_text",
        "hits": [
            {"source": h.document, "chunk": h.chunk, "score": h.score, "excerpt": h.excerpt}
            for h in hits
        ],
    }
