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

from core.embeddings import Embedder

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


_REMEMBER = re.compile(
    r"^\s*(?:please\s+)?(?:remember|note|keep in mind|don't forget)\b\s*(?:that\s+|:\s*)?"
    r"(?P<fact>.+?)[.!]*\s*$",
    re.I | re.S,
)
_FORGET = re.compile(
    r"^\s*(?:please\s+)?forget\b\s*(?:about\s+|that\s+|what\s+i\s+(?:said|told you)\s+about\s+)?"
    r"(?P<what>.+?)[.!]*\s*$",
    re.I | re.S,
)
_MY = re.compile(
    r"^(?:my|the|our)\s+(?P<name>.+?)\s+(?:is called|are called|is named|is|are|was|=)\s+"
    r"(?P<value>.+)$",
    re.I | re.S,
)
_PREAMBLE = re.compile(
    r"^(?:this|the following)(?:\s+for\s+(?:later|the future|next time))?\s*:\s*", re.I
)
_I_VERBS = {
    "live in": "home_city",
    "work at": "employer",
    "work for": "employer",
    "prefer": "preference",
    "like": "likes",
    "love": "likes",
    "dislike": "dislikes",
    "hate": "dislikes",
    "speak": "languages",
    "am allergic to": "allergies",
    "'m allergic to": "allergies",
    "am": "about_me",
    "'m": "about_me",
}
_I = re.compile(
    r"^i\s*(?P<verb>" + "|".join(re.escape(v) for v in _I_VERBS) + r")\s+(?P<value>.+)$",
    re.I | re.S,
)


def field_name(text: str) -> str:
    """A profile field name for ``text``: lower-case words joined by ``_`` (at most 64)."""
    cleaned = re.sub(r"'s\b", "", text.lower())
    return "_".join(_WORD.findall(cleaned))[:64].strip("_") or "note"


def remember_intent(text: str) -> list[tuple[str, str]] | None:
    """The ``(field, value)`` pairs the user asks to remember, else ``None``.

    "Remember that my favourite colour is green" → ``[("favourite_colour", "green")]``;
    "remember: I live in Lisbon and that my team is called Falcon" → ``[("home", "Lisbon"),
    ("team", "Falcon")]``; anything else is kept whole under a field named after its words.
    """
    asked = _REMEMBER.match(text)
    if asked is None or text.rstrip().endswith("?"):
        return None
    fact = _PREAMBLE.sub("", asked["fact"].strip())
    return [_pair(part.strip()) for part in re.split(r"\s+and\s+that\s+", fact) if part.strip()]


def _pair(fact: str) -> tuple[str, str]:
    if mine := _MY.match(fact):
        return field_name(mine["name"]), mine["value"].strip()
    if said := _I.match(fact):
        return _I_VERBS[said["verb"].lower()], said["value"].strip()
    return field_name(" ".join(fact.split()[:4])), fact


def forget_intent(text: str) -> str | None:
    """What the user asks to forget ("my favourite colour"), else ``None``."""
    asked = _FORGET.match(text)
    return asked["what"].strip() if asked and not text.rstrip().endswith("?") else None


def fields_named(what: str, fields: Mapping[str, str]) -> list[str]:
    """The fields ``what`` names: by their name's words, else by their value's words."""
    if words(what) & {"everything", "all"}:
        return list(fields)
    asked = words(what)
    by_name = [n for n in fields if words(n.replace("_", " ")) & asked]
    return by_name or [n for n, v in fields.items() if words(v) & asked]
