"""github_trending 2.0.0 (practice 16): language, period and limit, structured results."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server.fastmcp import Context
from pydantic import Field

from tools.servers.common import invoked, make_server
from tools.servers.github_trending.data import trending

server = make_server("github_trending", "2.0.0", "Trending GitHub repositories (v2).")


@server.tool(meta={"keel/permissions": []})
def trending_repos(
    language: str,
    ctx: Context[Any, Any, Any],
    since: Literal["daily", "weekly", "monthly"] = "weekly",
    limit: Annotated[int, Field(ge=1, le=25)] = 5,
) -> dict[str, Any]:
    """Trending repositories for ``language`` over ``since``, with stars, forks and links."""
    invoked(ctx, "trending_repos", {"language": language, "since": since, "limit": limit})
    out = trending(language, since, limit)
    return {"language": language.lower(), "since": since, **out}
