"""The memory router's rules (practice 14): which layers a question needs, and which fields.

Cheap rules decide first: session memory is consulted once the thread has an earlier turn;
long-term memory only when the question speaks of the user (``my``, ``I``, ``me`` …) and then
only the profile fields it names. When the rules are unsure — a personal question that names no
field — the embedding model compares the question with each field and keeps the close ones;
the chat model is never asked, so routing costs no generation and no prompt carries the
profile just in case. MiniLM's cosine between a question and a short ``name: value`` field is
low even when related (satay → diet 0.27, "where do I live" → home_city 0.25) and ≤ 0.17 for
unrelated pairs on our fixtures, hence the threshold of 0.22.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from memory.embeddings import Embedder

_WORD = re.compile(r"[a-z0-9]+")
_PERSONAL = re.compile(r"\b(i|me|my|mine|myself|i'm|i've|i'd|we|our|us)\b", re.I)
_QUESTION = re.compile(
    r"^\s*(who|what|when|where|why|how|which|whose|is|are|was|were|do|does|did|can|could|"
    r"should|would|will|shall|may|am|have|has|list|show|find|tell|give|plot|compute)\b",
    re.I,
)
_STOP = {"the", "and", "for", "with", "of", "a", "an", "to", "in", "on", "my", "is"}


def _stem(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") else word


def words(text: str) -> set[str]:
    """Lower-case word stems of ``text``, without the commonest stop words."""
    return {_stem(w) for w in _WORD.findall(text.lower()) if w not in _STOP}


def is_personal(question: str) -> bool:
    """Whether the question speaks of the user (a cue to consult long-term memory)."""
    return bool(_PERSONAL.search(question))


def is_statement(text: str) -> bool:
    """Whether the user states something (worth keeping as a session fact) rather than asks."""
    stripped = text.strip()
    return (
        not stripped.endswith("?")
        and not _QUESTION.match(stripped)
        and len(_WORD.findall(stripped)) >= 4
    )


def fields_by_rule(question: str, fields: Mapping[str, str]) -> list[str]:
    """Fields whose name shares a word with the question (``home_city`` ~ "which city …")."""
    asked = words(question)
    return [name for name in fields if words(name.replace("_", " ")) & asked]


async def select_fields(
    question: str,
    fields: Mapping[str, str],
    embedder: Embedder | None,
    threshold: float = 0.22,
) -> list[str]:
    """The profile fields relevant to ``question``: rules first, the embedding model if unsure."""
    if not fields or not is_personal(question):
        return []
    chosen = fields_by_rule(question, fields)
    if chosen or embedder is None:
        return chosen
    names = list(fields)
    vectors = await embedder.embed(
        [question, *(f"{n.replace('_', ' ')}: {fields[n]}" for n in names)]
    )
    q = vectors[0]
    scores = [sum(a * b for a, b in zip(q, v, strict=True)) for v in vectors[1:]]
    return [n for n, s in zip(names, scores, strict=True) if s >= threshold]
