"""The language and period a step asks trending repositories for, read from its words."""

from __future__ import annotations

import re
from typing import Any

LANGUAGES = (
    "python",
    "rust",
    "go",
    "typescript",
    "javascript",
    "java",
    "kotlin",
    "swift",
    "ruby",
    "php",
    "c++",
    "c#",
    "haskell",
    "scala",
    "elixir",
    "zig",
)


def language_of(text: str) -> str:
    """The programming language a step names (``python`` if none)."""
    lowered = text.lower()
    for lang in LANGUAGES:
        if re.search(rf"(?<![\w+#]){re.escape(lang)}(?![\w+#])", lowered):
            return lang
    return "python"


def period_of(text: str) -> str:
    """``daily``, ``weekly`` or ``monthly`` from the step's wording."""
    lowered = text.lower()
    if re.search(r"\b(today|daily|day)\b", lowered):
        return "daily"
    if re.search(r"\b(month|monthly)\b", lowered):
        return "monthly"
    return "weekly"


def repos_note(result: Any) -> str | None:
    """A structured result's repositories, one line each (``None`` if not structured)."""
    if not isinstance(result, dict):
        return None
    lines = [
        f"- {r['full_name']} ({r['stars']} stars): {r.get('description', '')}"
        for r in result.get("repos", [])
    ]
    return f"source: {result.get('source')}\n" + "\n".join(lines)
