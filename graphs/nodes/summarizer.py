"""The summarizer: streams the final answer token by token as ``text_delta`` events.

When a step's tool degraded (cache, fallback tool, skipped), the answer ends with a line
naming the degraded sources, so a reader never takes a cached answer for a live one.
"""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage
from langgraph.runtime import Runtime

from graphs import prompts
from graphs.context import RunContext
from graphs.emit import emit, status, usage_of
from graphs.nodes import chat, last_question, recalled_text, today_line
from graphs.state import State

NODE = "summarizer"


async def summarizer(state: State, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Write the answer from the findings, streaming each piece as it arrives."""
    writer = runtime.stream_writer
    status(writer, NODE, "summarizing")
    notes = "\n".join(
        f"{i + 1}. {s['description']}: {f['text']}"
        for i, (s, f) in enumerate(zip(state["plan"], state.get("findings", []), strict=False))
    )
    model = chat(runtime.context, runtime.context.llm.max_tokens)
    prompt = [
        SystemMessage(prompts.SUMMARIZER),
        HumanMessage(
            f"{today_line(runtime.context)}\nQuestion: {last_question(state['messages'])}\n"
            f"Notes:\n{prompts.data('research_notes', notes)}"
            + recalled_text(state.get("recalled", {}))
        ),
    ]
    full: AIMessageChunk | None = None
    fences = prompts.FenceFilter()  # a small model may copy the prompt's <data> fences
    async for chunk in model.astream(prompt):
        assert isinstance(chunk, AIMessageChunk)
        if chunk.text and (text := fences.feed(chunk.text)):
            emit(writer, "text_delta", NODE, text=text)
        full = chunk if full is None else full + chunk
    if rest := fences.flush():
        emit(writer, "text_delta", NODE, text=rest)
    answer = prompts.unfenced(full.text) if full is not None else ""
    degraded = [f["degraded"] for f in state.get("findings", []) if f.get("degraded")]
    if degraded:
        note = "\n\nDegraded sources: " + "; ".join(degraded) + "."
        emit(writer, "text_delta", NODE, text=note)
        answer += note
    # The answer's id names its run, so a client that streamed its text deltas (the Agent
    # Protocol's messages-tuple mode) knows them as this message when the state arrives.
    answer_id = f"answer-{runtime.context.run_id}" if runtime.context.run_id else None
    return {"messages": [AIMessage(answer, id=answer_id)], "usage": usage_of(full)}
