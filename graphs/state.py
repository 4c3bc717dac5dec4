"""The graph's state: messages with ``add_messages``, the plan and the researcher's findings."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages
from pydantic import BaseModel, Field
from typing_extensions import TypedDict

ToolName = Literal["none", "github_trending", "documents", "python_exec", "calendar"]


class PlanStep(BaseModel):
    """One step of the plan: what to find out, and with which tool ("none": the model alone)."""

    description: str = Field(max_length=200)
    tool: ToolName


class Plan(BaseModel):
    """The planner's structured output."""

    steps: list[PlanStep] = Field(min_length=1, max_length=3)


class InputState(TypedDict):
    """What a caller passes in."""

    messages: Annotated[list[AnyMessage], add_messages]


class State(InputState, total=False):
    """Everything the nodes share; plan and findings are plain JSON so checkpoints stay portable.

    ``plan``, ``findings`` and ``pending`` belong to the current turn: the planner resets them.
    ``recalled`` is what the memory router selected for this turn (conversation window,
    session facts, profile fields, tools whose results are already known); ``summary`` and
    ``folded`` are the running summary of older turns and how many turns it covers.
    ``pending`` is a tool call held for the caller's confirmation (tool, pin, version, the
    validated arguments, the step's index) and, once the run is resumed, their ``decision``.
    """

    plan: list[dict[str, Any]]
    findings: list[dict[str, Any]]
    recalled: dict[str, Any]
    summary: str
    folded: int
    pending: dict[str, Any] | None
    usage: Annotated[dict[str, int], lambda a, b: {k: a.get(k, 0) + b.get(k, 0) for k in {*a, *b}}]
