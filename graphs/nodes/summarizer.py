"""The summarizer: streams the final answer token by token as ``text_delta`` events.

When a step's tool degraded (cache, fallback tool, skipped), the answer ends with a line
naming the degraded sources, so a reader never takes a cached answer for a live one.

Some answers are known exactly and are not left to the model:
- a request to remember or forget: the memory router's note says what was done;
- a plan whose every step the tool's own data settles (``Adapter.answer``: the listing asked
  for, the row the question picks, the value the code printed): a small model restating them
  drops items, picks the wrong row or redoes the arithmetic;
- a plan whose every tool step came back empty (each adapter's ``empty`` says what was
  searched and found nothing: "I don't know", with why) or was outside the caller's scopes
  (which permission is missing, and what would do). A small model handed an empty search
  copies the note or answers from elsewhere; handed a missing scope it says "I can't assist
  with that" and no more.
"""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage
from langchain_core.messages.ai import UsageMetadata, add_usage
from langgraph.runtime import Runtime

from core.events import TextDeltaData
from graphs import prompts
from graphs.context import RunContext
from graphs.emit import emit, status, usage_counts
from graphs.nodes import chat, last_question, recalled_text, today_line
from graphs.state import State

NODE = "summarizer"


async def summarizer(state: State, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Write the answer from the findings, streaming each piece as it arrives."""
    writer = runtime.stream_writer
    status(writer, NODE, "summarizing")
    if (known := known_answer(state)) is not None:
        emit(writer, NODE, TextDeltaData(text=known))
        return {"messages": [AIMessage(known, id=_answer_id(runtime))]}
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
    # The answer's pieces and token usage are kept as they come: adding the chunks up
    # (``AIMessageChunk.__add__``) would build a new message per token.
    parts: list[str] = []
    usage: UsageMetadata | None = None
    fences = prompts.FenceFilter()  # a small model may copy the prompt's <data> fences
    async for chunk in model.astream(prompt):
        assert isinstance(chunk, AIMessageChunk)
        if piece := chunk.text:
            parts.append(piece)
            if text := fences.feed(piece):
                emit(writer, NODE, TextDeltaData(text=text))
        if chunk.usage_metadata:
            usage = add_usage(usage, chunk.usage_metadata)
    if rest := fences.flush():
        emit(writer, NODE, TextDeltaData(text=rest))
    answer = prompts.unfenced("".join(parts))
    degraded = [f["degraded"] for f in state.get("findings", []) if f.get("degraded")]
    if degraded:
        note = "\n\nDegraded sources: " + "; ".join(degraded) + "."
        emit(writer, NODE, TextDeltaData(text=note))
        answer += note
    return {"messages": [AIMessage(answer, id=_answer_id(runtime))], "usage": usage_counts(usage)}


def _answer_id(runtime: Runtime[RunContext]) -> str | None:
    """The answer's id, named after its run.

    A client that streamed its text deltas (the Agent Protocol's messages-tuple mode) knows
    them as this message when the state arrives.
    """
    return f"answer-{runtime.context.run_id}" if runtime.context.run_id else None


def known_answer(state: State) -> str | None:
    """The answer when the facts settle it without the model (see the module docstring)."""
    note = state.get("recalled", {}).get("memory_note")
    if not state["plan"] and note:
        return str(note)
    findings = state.get("findings", [])
    if not state["plan"] or not findings:
        return None
    if len(findings) == len(state["plan"]) and all(f.get("answer") for f in findings):
        return "\n\n".join(str(f["answer"]) for f in findings)
    if not all(f.get("empty") or f.get("refused") for f in findings):
        return None
    said = [f["refused"] for f in findings if f.get("refused")]
    if empty := [f["empty"] for f in findings if f.get("empty")]:
        said.append("I don't know: " + " ".join(empty))
    return " ".join(said)
