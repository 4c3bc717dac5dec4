"""Short-term memory (practice 14): the conversation, trimmed to a token budget, plus a summary.

The conversation lives in graph state (``messages``). What goes into a prompt is the newest
turns that fit ``memory.short_term_budget_tokens`` (langchain-core ``trim_messages``, starting
on a human turn) and a running summary of everything older. Tokens are counted with
``count_tokens_approximately`` (about 4 characters per token plus a few per message), which is
within ~10-15 % of the Qwen2.5 and tiktoken counts for English prose: close enough for a budget
and free of a per-model tokenizer download.

The summary is extractive, not written by the model: each turn that falls out of the window
adds one line (its role and first sentence, clipped), and the oldest lines go once the summary
passes ``memory.summary_max_tokens``. It costs no model call, so a long conversation never
makes a turn slower, and it never invents anything the user did not say.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.messages.utils import count_tokens_approximately, trim_messages

_LINE_CHARS = 200
_SENTENCE = re.compile(r"(?<=[.!?])\s")


def count_tokens(messages: Sequence[BaseMessage]) -> int:
    """The approximate token count of ``messages``."""
    return count_tokens_approximately(list(messages))


def count_text(text: str) -> int:
    """The approximate token count of a plain text."""
    return count_tokens_approximately([HumanMessage(text)]) if text else 0


@dataclass(frozen=True)
class Window:
    """What a prompt carries of the conversation: the summary and the newest turns."""

    summary: str
    recent: list[BaseMessage]
    folded: int
    newly_folded: int
    covered: Sequence[BaseMessage]  # the turns the summary covers, which prompts no longer carry

    def render(self) -> str:
        """The window as plain text for a prompt (empty when there is nothing before)."""
        parts = []
        if self.summary:
            parts.append(f"Summary of earlier turns:\n{self.summary}")
        if self.recent:
            lines = [f"{_role(m)}: {m.text}" for m in self.recent]
            parts.append("Recent turns:\n" + "\n".join(lines))
        return "\n\n".join(parts)


def _role(m: BaseMessage) -> str:
    return "User" if isinstance(m, HumanMessage) else "Assistant"


def _line(m: BaseMessage) -> str:
    first = _SENTENCE.split(m.text.strip(), maxsplit=1)[0]
    if len(first) > _LINE_CHARS:
        first = first[: _LINE_CHARS - 1] + "…"
    return f"- {_role(m)}: {first}"


def fold(summary: str, dropped: Sequence[BaseMessage], max_tokens: int) -> str:
    """Add one line per dropped turn to ``summary``, keeping its newest lines in budget."""
    lines = [ln for ln in summary.splitlines() if ln] + [_line(m) for m in dropped if m.text]
    while len(lines) > 1 and count_text("\n".join(lines)) > max_tokens:
        lines.pop(0)
    return "\n".join(lines)


def window(
    history: Sequence[BaseMessage],
    *,
    summary: str,
    folded: int,
    budget_tokens: int,
    summary_max_tokens: int,
) -> Window:
    """Trim ``history`` (earlier turns, not the current question) to ``budget_tokens``.

    ``folded`` is how many leading messages the ``summary`` already covers; turns that newly
    fall out of the window are folded into it. The summary's own budget is taken from the
    window's, so summary plus turns stay within ``budget_tokens``.
    """
    turns = [m for m in history if isinstance(m, HumanMessage | AIMessage) and m.text]
    room = max(budget_tokens - summary_max_tokens, 0)
    recent = trim_messages(
        turns,
        max_tokens=room,
        token_counter=count_tokens_approximately,
        strategy="last",
        start_on="human",
        allow_partial=False,
    )
    cut = len(turns) - len(recent)
    newly = turns[folded:cut] if cut > folded else []
    if newly:
        summary = fold(summary, newly, summary_max_tokens)
    covered = max(folded, cut)
    return Window(summary, list(recent), covered, len(newly), turns[:covered])
