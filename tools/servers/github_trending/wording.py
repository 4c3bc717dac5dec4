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


def language_of(text: str, earlier: str = "") -> str:
    """The programming language a step names, else ``earlier``'s latest, else ``python``.

    ``earlier`` is the conversation: a follow-up ("which of them…") keeps its language.
    """
    for said in (text, *asked(earlier)):
        lowered = said.lower()
        for lang in LANGUAGES:
            if re.search(rf"(?<![\w+#]){re.escape(lang)}(?![\w+#])", lowered):
                return lang
    return "python"


def period_of(text: str, earlier: str = "") -> str:
    """``daily``, ``weekly`` or ``monthly`` from the step's wording, else ``earlier``'s latest.

    ``weekly`` when neither names a period.
    """
    for said in (text, *asked(earlier)):
        lowered = said.lower()
        if re.search(r"\b(today|daily|day)\b", lowered):
            return "daily"
        if re.search(r"\b(month|monthly)\b", lowered):
            return "monthly"
        if re.search(r"\b(week|weekly)\b", lowered):
            return "weekly"
    return "weekly"


def asked(conversation: str) -> list[str]:
    """The user's earlier questions in a rendered conversation, latest first."""
    return [ln[6:] for ln in reversed(conversation.splitlines()) if ln.startswith("User: ")]


_WORDS = {"three": 3, "five": 5, "ten": 10, "two": 2, "four": 4}
_COUNT = re.compile(
    r"\b(?:top|first|best|most popular)\s+(\d+|two|three|four|five|ten)\b"
    r"|\b(\d+|two|three|four|five|ten)\s+(?:most|top|trending|popular|hottest)\b",
    re.I,
)


def count_of(text: str, default: int = 5, most: int = 25) -> int:
    """How many repositories a step asks for ("top 3", "ten trending"), else ``default``."""
    found = _COUNT.search(text)
    if found is None:
        return default
    word = (found[1] or found[2]).lower()
    return max(1, min(most, _WORDS.get(word) or int(word)))


def repos_note(result: Any) -> str | None:
    """A structured result's repositories, one line each (``None`` if not structured)."""
    if not isinstance(result, dict):
        return None
    lines = [
        f"{i}. {r['full_name']}: {r['stars']} stars, {r.get('forks', '?')} forks"
        f" ({r.get('language', '')}) {r.get('url', '')} {r.get('description', '')}"
        for i, r in enumerate(result.get("repos", []), 1)
    ]
    if not lines:
        return f"source: {result.get('source')}\nno repositories found"
    return f"source: {result.get('source')}, in trending order\n" + "\n".join(lines)


def no_repos(result: Any) -> str | None:
    """A structured result without repositories, said to the user (``None``: it has some)."""
    if not isinstance(result, dict) or result.get("repos"):
        return None
    return "no trending repositories matched on GitHub for this."
