"""The researcher: executes one plan step per visit, so every step is its own checkpoint."""

from __future__ import annotations

from typing import Any, Literal

from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.runtime import Runtime

from graphs import prompts
from graphs.context import RunContext
from graphs.emit import emit, status, usage_of
from graphs.nodes import last_question, model_for
from graphs.state import State

NODE = "researcher"


async def researcher(state: State, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Answer the next unanswered step of the plan."""
    writer = runtime.stream_writer
    findings = state.get("findings", [])
    index = len(findings)
    step = state["plan"][index]
    if step["tool"] != "none":
        # Tools are reached through the tool gateway once it exists; until then, say so.
        emit(
            writer,
            "warning",
            NODE,
            code="tool_unavailable",
            message=f"Tool {step['tool']!r} is not available; answering from the model alone.",
        )
    status(writer, NODE, "thinking", detail=step["description"])
    model = model_for(runtime.context, runtime.context.llm.step_max_tokens)
    reply = await model.ainvoke(
        [
            SystemMessage(prompts.RESEARCHER),
            HumanMessage(
                f"Question: {last_question(state['messages'])}\nSub-question: {step['description']}"
            ),
        ]
    )
    text = reply.text.strip()
    emit(writer, "step_result", NODE, index=index, description=step["description"], text=text)
    return {"findings": [*findings, {"index": index, "text": text}], "usage": usage_of(reply)}


def after_researcher(state: State) -> Literal["researcher", "summarizer"]:
    """Loop until every step has a finding."""
    return "researcher" if len(state.get("findings", [])) < len(state["plan"]) else "summarizer"
