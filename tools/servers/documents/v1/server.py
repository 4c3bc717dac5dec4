"""documents 1.0.0 (practice 16): full-text search over the tenant's ingested files."""

from __future__ import annotations

import os
from typing import Annotated, Any

from mcp.server.fastmcp import Context
from pydantic import Field

from tools.servers.common import invoked, make_server
from tools.servers.documents.v1 import store

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
    url = os.environ.get("KEEL_TOOLS_DATABASE_URL")
    if not url:
        raise RuntimeError("documents: no database configured")
    hits = await store.search(url, who["tenant"], query, limit)
    return {"query": query, "mode": "full_text", "hits": hits}
