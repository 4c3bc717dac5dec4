"""The researcher: executes one plan step per visit, so every step is its own checkpoint.

A step whose tool is not ``none`` first goes through the tool pipeline (``tools/pipeline.py``
via ``graphs/tool_step.py``); the step's finding is the tool's result as text, names and
numbers exactly as the tool gave them (``llm.step_findings: tool``, the default), or the model's
restatement of it (``model``); a step without a tool is the model's answer, given this turn's
earlier steps' results (a plan may list, then pick from the list). A call
that needs the caller's confirmation ends the visit with the call held in ``pending``; the graph
goes to ``confirm`` (an interrupt) and back here, where the step finishes with the decision.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.runtime import Runtime

from core.events import StepResultData, WarningData
from graphs import prompts
from graphs.context import RunContext
from graphs.emit import emit, status, usage_of
from graphs.nodes import chat, last_question, recalled_text, today_line
from graphs.state import State
from graphs.tool_step import pipeline, step_of
from tools.pipeline import Degraded, Held, Outcome

NODE = "researcher"
MAX_KEPT_RESULT = 20_000  # bytes of JSON: a result kept for the turn's later steps


async def researcher(state: State, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Answer the next unanswered step of the plan."""
    writer = runtime.stream_writer
    ctx = runtime.context
    findings = state.get("findings", [])
    index = len(findings)
    if index >= len(state["plan"]):  # nothing to research (a memory request)
        return {"pending": None}
    step = state["plan"][index]
    question = last_question(state["messages"])
    prompt = f"{today_line(ctx)}\nQuestion: {question}\nSub-question: {step['description']}"
    prompt += recalled_text(state.get("recalled", {}))
    usage: dict[str, int] = {}
    degraded: str | None = None
    pending = state.get("pending")
    earlier = _earlier(state["plan"], findings)
    conversation = str(state.get("recalled", {}).get("conversation", ""))
    used: Outcome | None = None
    deciding = pending is not None and "decision" in pending
    if step["tool"] != "none" and ctx.tools is None:
        emit(
            writer,
            NODE,
            WarningData(
                code="tool_unavailable",
                message=f"Tool {step['tool']!r} is not available; answering from the model alone.",
            ),
        )
    elif step["tool"] != "none" or deciding:
        tools = pipeline(writer, NODE, ctx)
        if pending is not None and deciding:  # the caller decided on the held call
            at = step_of(ctx, step, question, int(pending["index"]), earlier, conversation)
            used = await tools.finish(pending, pending["decision"], at)
        else:
            used = await tools.run(step_of(ctx, step, question, index, earlier, conversation))
        if isinstance(used, Held):  # for confirmation (or the fix of code that failed)
            return {"pending": used.held, "usage": used.usage}
        usage, degraded = used.usage, used.source if isinstance(used, Degraded) else None
        prompt += f"\nTool result:\n{prompts.data('tool_result', used.note)}"
    if used is not None and ctx.llm.step_findings == "tool":
        text, step_usage = used.note, {}  # the tool's data as given: nothing to mistype
    else:
        if used is None and findings:  # a step on this turn's earlier results ("the fewest")
            prompt += _results_so_far(state["plan"], findings)
        status(writer, NODE, "thinking", detail=step["description"])
        model = chat(ctx, ctx.llm.step_max_tokens)
        reply = await model.ainvoke([SystemMessage(prompts.RESEARCHER), HumanMessage(prompt)])
        text, step_usage = prompts.unfenced(reply.text).strip(), usage_of(reply)
    emit(writer, NODE, StepResultData(index=index, description=step["description"], text=text))
    total = {k: usage.get(k, 0) + step_usage.get(k, 0) for k in {*usage, *step_usage}}
    finding = _finding(index, text, used, degraded)
    return {"findings": [*findings, finding], "usage": total, "pending": None}


def _finding(index: int, text: str, used: Outcome | None, degraded: str | None) -> dict[str, Any]:
    """A step's finding: its text, and what the summarizer and later steps need of its tool."""
    finding: dict[str, Any] = {"index": index, "text": text}
    if degraded:
        finding["degraded"] = degraded
    if used is None:
        return finding
    said = {"empty": used.empty, "refused": used.refusal, "answer": used.answer}
    finding.update({k: v for k, v in said.items() if v})
    if used.result is not None and _small(used.result):
        finding["data"] = used.result
    return finding


def _results_so_far(plan: list[dict[str, Any]], findings: list[dict[str, Any]]) -> str:
    """This turn's findings so far, fenced as data, for a model-only step that works on them."""
    done = "\n".join(f"{plan[f['index']]['description']}: {f['text']}" for f in findings)
    return f"\nEarlier steps' results:\n{prompts.data('research_notes', done)}"


def _earlier(plan: list[dict[str, Any]], findings: list[dict[str, Any]]) -> tuple[Any, ...]:
    """This turn's earlier tool results, for a step that works on them (code, charts)."""
    return tuple(
        {
            "step": plan[f["index"]]["description"],
            "tool": plan[f["index"]]["tool"],
            "result": f["data"],
        }
        for f in findings
        if "data" in f
    )


def _small(result: Any) -> bool:
    """Whether a result is small enough to keep in the checkpoint for later steps."""
    return len(json.dumps(result, default=str)) <= MAX_KEPT_RESULT


def after_researcher(state: State) -> Literal["confirm", "researcher", "summarizer"]:
    """Wait for a held call's confirmation, else loop until every step has a finding."""
    if state.get("pending") is not None:
        return "confirm"
    return "researcher" if len(state.get("findings", [])) < len(state["plan"]) else "summarizer"
