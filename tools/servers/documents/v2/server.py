"""documents 2.0.0: hybrid search (full text and meaning, fused by rank) with pages."""

from __future__ import annotations

from typing import Any

from mcp.server.fastmcp import Context

from tools.servers.common import make_server
from tools.servers.documents import access
from tools.servers.documents.access import Limit, Query

server = make_server(
    "documents",
    "2.0.0",
    "Search the user's own files (uploaded in the app or with `keel ingest PATH...`).",
)


@server.tool(meta={"keel/permissions": []})
async def search_documents(
    query: Query, ctx: Context[Any, Any, Any], limit: Limit = 5
) -> dict[str, Any]:
    """Search the tenant's documents by words and meaning; each hit has document, page, excerpt."""
    hits = await access.search(ctx, query, limit, "hybrid")
    return {"query": query, "mode": "hybrid", "hits": [h.as_dict() for h in hits]}
