"""github_trending 1.x: the legacy ``{"lang"}`` argument, read from the step's words."""

from __future__ import annotations

from typing import Any

from tools.adapter import Adapter, Ask, Step, Usage
from tools.gateway import ToolSpec
from tools.servers.github_trending.wording import (
    language_of,
    no_repos,
    picked,
    repos_note,
)


class GithubTrendingV1(Adapter):
    """``trending_repos(lang)``."""

    async def arguments(self, spec: ToolSpec, step: Step, ask: Ask) -> tuple[Any, Usage]:
        """The language the step names."""
        return {"lang": language_of(step.text, step.conversation)}, {}

    def note(self, result: Any) -> str:
        """One line per repository."""
        return repos_note(result) or super().note(result)

    def answer(self, result: Any, step: Step) -> str | None:
        """The one repository the question picks (the fewest stars, the second one), if any."""
        return picked(result, step.question)

    def empty(self, result: Any) -> str | None:
        """No repository matched."""
        return no_repos(result)
