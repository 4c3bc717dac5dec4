"""How Keel drives one tool server version: which tool a step needs, its arguments, its output.

Each server version has an adapter beside it (``tools/servers/<name>/v<N>/adapter.py``),
registered in ``tools/pipeline.py``; a server without one gets ``Adapter``'s defaults (no
arguments, the result as JSON). Adding a tool touches ``tools/`` only.

Adapters that need the model to write arguments (code, a meeting) get ``ask``: the run's model
with a pydantic schema enforced as structured output, supplied by the graph.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel

from core.events import EventData
from tools.gateway import ToolSpec

Usage = dict[str, int]
Tell = Callable[[EventData], None]
"""``tell(ToolCallData(…))``: one event of the run, its data model built where it happened."""


class Ask(Protocol):
    """The run's model with ``schema`` as structured output; ``None`` when it gave none."""

    async def __call__(
        self, schema: type[BaseModel], instruction: str, text: str
    ) -> tuple[BaseModel | None, Usage]:
        """Ask for a ``schema`` instance; returns it (or ``None``) and the tokens used."""
        ...


@dataclass(frozen=True)
class Step:
    """One plan step that needs a tool: the plan's tool (a server), its text, its place."""

    tool: str
    description: str
    question: str
    index: int
    run_id: str = ""
    earlier: tuple[dict[str, Any], ...] = ()
    """The results of this turn's earlier tool steps: ``{"step", "tool", "result"}`` each."""
    timezone: str = "UTC"
    """The caller's IANA time zone, for the dates a step names ("tomorrow at 3pm")."""
    failure: str = ""
    """Why the previous attempt at this step failed (its code and error), when retried."""
    conversation: str = ""
    """The latest earlier turns, for a step that refers to them ("divide that by 6"), already
    fenced as data by the graph (empty in a thread's first turn)."""

    @property
    def text(self) -> str:
        """The question and the step's description, what the arguments are read from."""
        return f"{self.question}\n{self.description}"


class Adapter:
    """The defaults: the server's first tool, no arguments, the result as JSON."""

    def tool_for(self, text: str) -> str | None:
        """Which tool of the server ``text`` needs (``None``: its first)."""
        return None

    async def arguments(self, spec: ToolSpec, step: Step, ask: Ask) -> tuple[Any, Usage]:
        """The call's arguments (``None``: the model gave no usable ones) and tokens used."""
        return {}, {}

    def note(self, result: Any) -> str:
        """The result as the researcher's prompt shows it."""
        return result if isinstance(result, str) else json.dumps(result, default=str)

    def answer(self, result: Any, step: Step) -> str | None:
        """The answer itself when the result settles the step's question by rule, else ``None``.

        A listing asked for as a list, the one row a question picks ("the fewest stars", "the
        second one"), a value the code printed: a small model restating these drops items,
        picks the wrong row or does its own arithmetic, so the summarizer says them as given.
        """
        return None

    def empty(self, result: Any) -> str | None:
        """What the call looked for and did not find, said to the user (``None``: it found some).

        Only for searches whose emptiness means "no answer": an empty calendar day is an answer.
        """
        return None

    def shape(self, result: Any, tell: Tell, save_png: Callable[[bytes], str]) -> Any:
        """Tell the result's rich events (code, charts, tables); returns it for ``tool_result``."""
        return result

    def limit(self, result: Any) -> str | None:
        """Why a sandbox stopped the call, if it did."""
        return None

    def failed(self, result: Any) -> str | None:
        """What went wrong in a call worth one retry with new arguments (``None``: fine)."""
        return None
