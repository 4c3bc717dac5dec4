"""The planner: a typed plan by structured output (json_schema, so small models stay valid).

It sees the question and the conversation window the memory router selected; a step for a tool
whose result session memory already holds (``recalled["reuse_tools"]``) becomes a model-only
step, so the tool is not called twice in a thread.
"""

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
    recalled = state.get("recalled", {})
    if recalled.get("memory_note"):  # a request to remember or forget, done by the router
        emit(writer, "plan", NODE, steps=[])
        return {"plan": [], "findings": [], "pending": None}
    asked = f"Q: {question}"
    if recalled.get("conversation"):
        earlier = prompts.data("conversation", recalled["conversation"])
        asked = f"Earlier in this conversation:\n{earlier}\n\n{asked}"
    if recalled.get("profile"):
        known = "\n".join(f"- {k}: {v}" for k, v in recalled["profile"].items())
        asked = f"Known about the user:\n{prompts.data('long_term_memory', known)}\n\n{asked}"
    model = structured(runtime.context, runtime.context.llm.plan_max_tokens, Plan)
    try:
        out: Any = await model.ainvoke([SystemMessage(prompts.PLANNER), HumanMessage(asked)])
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
    steps = [_reuse(s.model_dump(), recalled.get("reuse_tools", [])) for s in plan.steps]
    emit(writer, "plan", NODE, steps=steps)
    return {"plan": steps, "findings": [], "pending": None, "usage": usage_of(out.get("raw"))}


def _reuse(step: dict[str, Any], known: list[str]) -> dict[str, Any]:
    """A tool step whose result session memory already holds is answered from memory."""
    if step["tool"] == "none" or step["tool"] not in known:
        return step
    return {"description": f"{step['description']} (from session memory)"[:200], "tool": "none"}
