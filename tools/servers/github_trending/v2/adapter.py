"""github_trending 2.x: language, period and limit, read from the step's words."""

from __future__ import annotations

from typing import Any

from tools.adapter import Adapter, Ask, Step, Usage
from tools.gateway import ToolSpec
from tools.servers.github_trending.wording import language_of, period_of, repos_note


class GithubTrendingV2(Adapter):
    """``trending_repos(language, since, limit)``."""

    async def arguments(self, spec: ToolSpec, step: Step, ask: Ask) -> tuple[Any, Usage]:
        """The language and period the step names, five repositories."""
        return {"language": language_of(step.text), "since": period_of(step.text), "limit": 5}, {}

    def note(self, result: Any) -> str:
        """One line per repository."""
        return repos_note(result) or super().note(result)
