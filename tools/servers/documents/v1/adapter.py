"""documents 1.x: the step's description is the search query."""

from __future__ import annotations

from typing import Any

from tools.adapter import Adapter, Ask, Step, Usage
from tools.gateway import ToolSpec


class DocumentsV1(Adapter):
    """``search_documents(query, limit)``."""

    async def arguments(self, spec: ToolSpec, step: Step, ask: Ask) -> tuple[Any, Usage]:
        """The step's description (else the question) as the query, five hits."""
        return {"query": step.description[:500] or step.question[:500], "limit": 5}, {}

    def note(self, result: Any) -> str:
        """Each hit's document and excerpt; an empty result says so plainly."""
        if not isinstance(result, dict):
            return super().note(result)
        if (nothing := self.empty(result)) is not None:
            return f"No document matched: {nothing}"
        return "\n".join(f"- [{h.get('source')}] {h.get('excerpt', '')}" for h in result["hits"])

    def empty(self, result: Any) -> str | None:
        """No hit: the user's documents say nothing on the question (or there are none)."""
        if not isinstance(result, dict) or result.get("hits"):
            return None
        return (
            "none of your documents mention this (the search found no match; if you have not"
            " added any documents yet, the collection is empty)."
        )
