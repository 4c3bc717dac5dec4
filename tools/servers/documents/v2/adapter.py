"""documents 2.x: the query as in 1.x; each hit is noted with its citation, ``[name p.N]``."""

from __future__ import annotations

from typing import Any

from tools.adapter import Ask, Step, Usage
from tools.gateway import ToolSpec
from tools.servers.documents.v1.adapter import DocumentsV1

HITS = 3
"""Hits per search: three passages of about 60 words fit the step's note whole."""


def citation(hit: dict[str, Any]) -> str:
    """``[name p.N]`` for a paged document, ``[name]`` otherwise."""
    page = hit.get("page")
    return f"[{hit.get('document')} p.{page}]" if page else f"[{hit.get('document')}]"


class DocumentsV2(DocumentsV1):
    """``search_documents(query, limit)`` with document, page and excerpt per hit."""

    async def arguments(self, spec: ToolSpec, step: Step, ask: Ask) -> tuple[Any, Usage]:
        """As 1.x, with ``HITS`` hits."""
        args, usage = await super().arguments(spec, step, ask)
        return {**args, "limit": HITS}, usage

    def note(self, result: Any) -> str:
        """Each hit's excerpt after its citation, so the answer can cite it; empty says so."""
        if not isinstance(result, dict) or self.empty(result) is not None:
            return super().note(result)
        return "\n".join(f"- {citation(h)} {h.get('excerpt', '')}" for h in result["hits"])
