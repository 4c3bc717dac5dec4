"""The planner: a typed plan by structured output (json_schema, so small models stay valid)."""

from __future__ import annotations

from typing import Any

from langchain_core.exceptions import OutputParserException
from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.runtime import Runtime
from pydantic import ValidationError

from graphs import prompts
from graphs.context import RunContext
from graphs.emit import emit, status, usage_of
from graphs.nodes import last_question, structured
from graphs.state import Plan, PlanStep, State

NODE = "planner"


async def planner(state: State, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Turn the latest question into 1-3 steps; fall back to one model-only step if invalid."""
    writer = runtime.stream_writer
    status(writer, NODE, "planning")
    question = last_question(state["messages"])
    model = structured(runtime.context, runtime.context.llm.plan_max_tokens, Plan)
    try:
        out: Any = await model.ainvoke(
            [SystemMessage(prompts.PLANNER), HumanMessage(f"Q: {question}")]
        )
    except (ValidationError, OutputParserException):
        out = {}
    plan: Plan | None = out.get("parsed")
    if plan is None:
        emit(
            writer,
            "warning",
            NODE,
            code="plan_invalid",
            message="The planner's output was not a valid plan; answering in one step.",
        )
        plan = Plan(steps=[PlanStep(description=question[:200] or "answer", tool="none")])
    steps = [s.model_dump() for s in plan.steps]
    emit(writer, "plan", NODE, steps=steps)
    return {"plan": steps, "findings": [], "usage": usage_of(out.get("raw"))}
