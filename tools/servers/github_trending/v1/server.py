"""github_trending 1.0.0 (practice 16): the legacy ``{"lang"}`` interface, kept while pinned."""

from __future__ import annotations

from typing import Any

from mcp.server.fastmcp import Context

from tools.servers.common import invoked, make_server
from tools.servers.github_trending.data import trending

server = make_server("github_trending", "1.0.0", "Trending GitHub repositories (legacy v1).")


@server.tool(meta={"keel/permissions": []})
def trending_repos(lang: str, ctx: Context[Any, Any, Any]) -> str:
    """Trending repositories for a programming language, one per line."""
    invoked(ctx, "trending_repos", {"lang": lang})
    out = trending(lang, "weekly", 5)
    lines = [f"{r['full_name']} ({r['stars']} stars)" for r in out["repos"]]
    return f"source: {out['source']}\n" + ("\n".join(lines) or "no repositories found")
