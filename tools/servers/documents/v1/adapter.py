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
        hits = result.get("hits", [])
        if not hits:
            return (
                "No document matched. The user's documents hold nothing on this (the collection"
                " may be empty: nothing has been added). Say so; do not answer from elsewhere."
            )
        return "\n".join(f"- [{h.get('source')}] {h.get('excerpt', '')}" for h in hits)
