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
