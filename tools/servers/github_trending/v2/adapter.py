"""github_trending 2.x: language, period and limit, read from the step's words."""

from __future__ import annotations

from typing import Any

from tools.adapter import Adapter, Ask, Step, Usage
from tools.gateway import ToolSpec
from tools.servers.github_trending.wording import (
    count_of,
    language_of,
    no_repos,
    period_of,
    picked,
    repos_note,
)


class GithubTrendingV2(Adapter):
    """``trending_repos(language, since, limit)``."""

    async def arguments(self, spec: ToolSpec, step: Step, ask: Ask) -> tuple[Any, Usage]:
        """The language, period and count the step names (five repositories by default)."""
        text = step.text
        return {
            "language": language_of(text, step.conversation),
            "since": period_of(text, step.conversation),
            "limit": count_of(text),
        }, {}

    def note(self, result: Any) -> str:
        """One line per repository."""
        return repos_note(result) or super().note(result)

    def answer(self, result: Any, step: Step) -> str | None:
        """The one repository the question picks (the fewest stars, the second one), if any."""
        return picked(result, step.question)

    def empty(self, result: Any) -> str | None:
        """No repository matched."""
        return no_repos(result)
