"""The planner: a typed plan by structured output (json_schema, so small models stay valid).

Unambiguous questions are planned by rules (``graphs/routing.py``): by their tool words, or,
for a follow-up that points back and names no tool, by the tool of the previous turn.
The model planner sees the question and the conversation window the memory router selected;
a code step it plans for a question with nothing to compute becomes model-only (``grounded``).
Either way, a step for a tool whose result session memory already holds
(``recalled["reuse_tools"]``) becomes a model-only step, so the tool is not called twice in a
thread.
"""

from __future__ import annotations

from typing import Any

from langchain_core.exceptions import OutputParserException
from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.runtime import Runtime
from pydantic import ValidationError

from core.events import PlanData, PlanStepData, WarningData
from graphs import prompts
from graphs.context import RunContext
from graphs.emit import emit, status, usage_of
from graphs.nodes import last_question, structured
from graphs.routing import follow_up, grounded, route
from graphs.state import Plan, PlanStep, State

NODE = "planner"


async def planner(state: State, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Turn the latest question into 1-3 steps; fall back to one model-only step if invalid."""
    writer = runtime.stream_writer
    status(writer, NODE, "planning")
    question = last_question(state["messages"])
    recalled = state.get("recalled", {})
    if recalled.get("memory_note"):  # a request to remember or forget, done by the router
        emit(writer, NODE, PlanData(steps=[]))
        return {"plan": [], "findings": [], "pending": None}
    steps = None
    if runtime.context.llm.rule_routing:  # the previous turn's plan is still in the state
        steps = route(question) or follow_up(question, state.get("plan", []))
    out: Any = {}
    if steps is None:
        out = await _model_plan(runtime.context, question, recalled)
        plan: Plan | None = out.get("parsed")
        steps = [grounded(s, question) for s in plan.steps] if plan is not None else None
    if steps is None:
        emit(
            writer,
            NODE,
            WarningData(
                code="plan_invalid",
                message="The planner's output was not a valid plan; answering in one step.",
            ),
        )
        steps = [PlanStep(description=question[:200] or "answer", tool="none")]
    planned = [_reuse(s.model_dump(), recalled.get("reuse_tools", [])) for s in steps]
    emit(writer, NODE, PlanData(steps=[PlanStepData(**s) for s in planned]))
    return {"plan": planned, "findings": [], "pending": None, "usage": usage_of(out.get("raw"))}


async def _model_plan(ctx: RunContext, question: str, recalled: dict[str, Any]) -> Any:
    """The model's plan as structured output (``{"raw", "parsed"}``; ``{}`` if unusable)."""
    asked = f"Q: {question}"
    if recalled.get("conversation"):
        earlier = prompts.data("conversation", recalled["conversation"])
        asked = f"Earlier in this conversation:\n{earlier}\n\n{asked}"
    if recalled.get("profile"):
        known = "\n".join(f"- {k}: {v}" for k, v in recalled["profile"].items())
        asked = f"Known about the user:\n{prompts.data('long_term_memory', known)}\n\n{asked}"
    model = structured(ctx, ctx.llm.plan_max_tokens, Plan)
    try:
        return await model.ainvoke([SystemMessage(prompts.PLANNER), HumanMessage(asked)])
    except (ValidationError, OutputParserException):
        return {}


def _reuse(step: dict[str, Any], known: list[str]) -> dict[str, Any]:
    """A tool step whose result session memory already holds is answered from memory."""
    if step["tool"] == "none" or step["tool"] not in known:
        return step
    return {"description": f"{step['description']} (from session memory)"[:200], "tool": "none"}
