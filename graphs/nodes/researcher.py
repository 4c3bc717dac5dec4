"""The researcher: executes one plan step per visit, so every step is its own checkpoint.

A step whose tool is not ``none`` first calls that tool through the gateway
(``graphs/tool_step.py``); the model then answers the step from the tool's result.
"""

from __future__ import annotations

from typing import Any, Literal

from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.runtime import Runtime

from graphs import prompts
from graphs.context import RunContext
from graphs.emit import emit, status, usage_of
from graphs.nodes import chat, last_question
from graphs.state import State
from graphs.tool_step import run_tool_step

NODE = "researcher"


async def researcher(state: State, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Answer the next unanswered step of the plan."""
    writer = runtime.stream_writer
    ctx = runtime.context
    findings = state.get("findings", [])
    index = len(findings)
    step = state["plan"][index]
    question = last_question(state["messages"])
    prompt = f"Question: {question}\nSub-question: {step['description']}"
    usage: dict[str, int] = {}
    degraded: str | None = None
    if step["tool"] != "none" and ctx.tools is None:
        emit(
            writer,
            "warning",
            NODE,
            code="tool_unavailable",
            message=f"Tool {step['tool']!r} is not available; answering from the model alone.",
        )
    elif step["tool"] != "none":
        used = await run_tool_step(writer, NODE, ctx, step, question, index)
        usage, degraded = used.usage, used.degraded
        prompt += f"\nTool result:\n{used.note}"
    status(writer, NODE, "thinking", detail=step["description"])
    model = chat(ctx, ctx.llm.step_max_tokens)
    reply = await model.ainvoke([SystemMessage(prompts.RESEARCHER), HumanMessage(prompt)])
    text = reply.text.strip()
    emit(writer, "step_result", NODE, index=index, description=step["description"], text=text)
    step_usage = usage_of(reply)
    total = {k: usage.get(k, 0) + step_usage.get(k, 0) for k in {*usage, *step_usage}}
    finding: dict[str, Any] = {"index": index, "text": text}
    if degraded:
        finding["degraded"] = degraded
    return {"findings": [*findings, finding], "usage": total}


def after_researcher(state: State) -> Literal["researcher", "summarizer"]:
    """Loop until every step has a finding."""
    return "researcher" if len(state.get("findings", [])) < len(state["plan"]) else "summarizer"
