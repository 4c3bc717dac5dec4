"""The passage of a chunk that answers a query: whole sentences around the best match.

A hit's excerpt is what the model reads, so it must hold the sentence with the answer, whole.
Postgres' ``ts_headline`` cut passages at a word count, which split "Tidewater-Staff" after
"Tidewater" and "within 21 days" off its sentence, and chose covers by query-word frequency,
not by the sentence that matches most of the query's words.

Here a chunk is split into sentences and lines; each scores the number of distinct query words
it holds (matched on their first five letters, so "approval" meets "approve"); the best one is
widened with its neighbours, the next first, up to about ``size`` characters.
"""

from __future__ import annotations

import re

SIZE = 420
_STOP = frozenset(
    "the and for are was were what which who whom whose when where why how does did do can"
    " could would should will shall may might must our your their my his her its this that"
    " these those with from into onto about above below over under than then there here any"
    " all some many much more most not have has had been being say says said tell me give"
    " according document documents policy guide".split()
)
_SENTENCES = re.compile(r"(?<=[.!?])\s+|\n+")


def terms(query: str) -> set[str]:
    """The query's words that say what it is about, as five-letter prefixes."""
    words = re.findall(r"[a-z0-9]+", query.lower())
    return {w[:5] for w in words if len(w) > 2 and w not in _STOP}


def passage(body: str, query: str, size: int = SIZE) -> str:
    """The sentences of ``body`` around its best match for ``query``, about ``size`` long."""
    units = [u.strip() for u in _SENTENCES.split(body) if u.strip()]
    if not units:
        return ""
    wanted = terms(query)
    scores = [len(wanted & {w[:5] for w in re.findall(r"[a-z0-9]+", u.lower())}) for u in units]
    best = max(range(len(units)), key=lambda i: (scores[i], -i))
    lo = hi = best
    length = len(units[best])
    while length < size and (lo > 0 or hi < len(units) - 1):
        if hi < len(units) - 1:
            hi += 1
            length += len(units[hi]) + 1
        if length < size and lo > 0:
            lo -= 1
            length += len(units[lo]) + 1
    return " ".join(units[lo : hi + 1])
