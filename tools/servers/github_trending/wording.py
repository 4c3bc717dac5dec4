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


_LOW = ("fewest", "least", "lowest", "smallest")
_EXTREME = re.compile(
    r"\b(most|highest|largest|biggest|greatest|fewest|least|lowest|smallest)\b"
    r"(?:\s+\w+){0,2}?\s+(stars?|forks?|starred|forked)\b",
    re.I,
)
_ORDINALS = {
    "first": 1,
    "top": 1,
    "leading": 1,
    "number one": 1,
    "#1": 1,
    "second": 2,
    "2nd": 2,
    "third": 3,
    "3rd": 3,
    "fourth": 4,
    "4th": 4,
    "fifth": 5,
    "5th": 5,
}
_ORDINAL = re.compile(r"(?<![\w#])(" + "|".join(re.escape(w) for w in _ORDINALS) + r")(?!\w)", re.I)


def picked(result: Any, text: str) -> str | None:
    """The repository ``text`` singles out, said with its figures (``None``: it picks none).

    "Which has the fewest stars?" picks by the figure; "the top one", "the second one on that
    list", "the repository leading the list" by trending position. A question that asks for
    several ("the top 3", "the first five") picks none: the list is the answer.
    """
    repos = result.get("repos") if isinstance(result, dict) else None
    if not isinstance(repos, list) or not repos:
        return None
    if extreme := _EXTREME.search(text):
        metric = "forks" if extreme[2].lower().startswith("fork") else "stars"
        low = extreme[1].lower() in _LOW
        pick = (min if low else max)(repos, key=lambda r: int(r.get(metric) or 0))
        why = f"the {'fewest' if low else 'most'} {metric} of the {len(repos)} listed"
    elif _COUNT.search(text) or not (ordinal := _ORDINAL.search(text)):
        return None
    else:
        place = _ORDINALS[ordinal[1].lower()]
        if place > len(repos):
            return None
        pick = repos[place - 1]
        why = f"number {place} of the {len(repos)} in trending order"
    described = f" ({pick['description']})" if pick.get("description") else ""
    return (
        f"**{pick['full_name']}**{described}: {pick['stars']} stars,"
        f" {pick.get('forks', '?')} forks, {pick.get('url', '')}"
        f" ({why}; GitHub trending, source: {result.get('source')})."
    )
