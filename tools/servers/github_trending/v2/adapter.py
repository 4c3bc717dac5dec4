"""github_trending 2.x: language, period and limit, read from the step's words; notes as 1.x."""

from __future__ import annotations

from typing import Any

from tools.adapter import Ask, Step, Usage
from tools.gateway import ToolSpec
from tools.servers.github_trending.v1.adapter import GithubTrendingV1
from tools.servers.github_trending.wording import count_of, language_of, period_of


class GithubTrendingV2(GithubTrendingV1):
    """``trending_repos(language, since, limit)``."""

    async def arguments(self, spec: ToolSpec, step: Step, ask: Ask) -> tuple[Any, Usage]:
        """The language, period and count the step names (five repositories by default)."""
        text = step.text
        return {
            "language": language_of(text, step.conversation),
            "since": period_of(text, step.conversation),
            "limit": count_of(text),
        }, {}
