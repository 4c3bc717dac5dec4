"""The research graph with a scripted model: its topology and the events each node emits."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessageChunk, HumanMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGenerationChunk
from langgraph.checkpoint.memory import InMemorySaver

from graphs.context import RunContext
from graphs.graph import build_graph, graph
from tests.fakes.scripted import scripted

SNAPSHOT = Path(__file__).parent / "snapshots" / "graph.mmd"


def test_topology_matches_snapshot() -> None:
    assert graph.get_graph().draw_mermaid() == SNAPSHOT.read_text()


async def _run(*replies: str, message: str = "q") -> tuple[list[dict[str, Any]], dict[str, Any]]:
    g = build_graph(InMemorySaver())
    ctx = RunContext(chat_model=scripted(*replies), thread_id="t")
    events: list[dict[str, Any]] = []
    config: Any = {"configurable": {"thread_id": "t"}}
    async for chunk in g.astream(
        {"messages": [HumanMessage(message)]}, config, context=ctx, stream_mode="custom"
    ):
        events.append(chunk)
    state = (await g.aget_state(config)).values
    return events, state


@pytest.mark.asyncio
async def test_two_step_plan_runs_each_step_then_streams_the_answer() -> None:
    plan = {
        "steps": [
            {"description": "first", "tool": "none"},
            {"description": "second", "tool": "none"},
        ]
    }
    events, state = await _run(json.dumps(plan), "one", "two", "final answer here")
    assert [(e["type"], e["node"]) for e in events] == [
        ("agent_status", "planner"),
        ("plan", "planner"),
        ("agent_status", "researcher"),
        ("step_result", "researcher"),
        ("agent_status", "researcher"),
        ("step_result", "researcher"),
        ("agent_status", "summarizer"),
        *[("text_delta", "summarizer")] * 5,
    ]
    assert events[1]["data"] == plan
    assert [e["data"]["text"] for e in events if e["type"] == "step_result"] == ["one", "two"]
    assert "".join(e["data"]["text"] for e in events if e["type"] == "text_delta") == (
        "final answer here"
    )
    assert state["messages"][-1].content == "final answer here"
    assert state["findings"] == [{"index": 0, "text": "one"}, {"index": 1, "text": "two"}]


@pytest.mark.asyncio
async def test_invalid_plan_falls_back_to_one_model_step_with_warning() -> None:
    events, state = await _run("{not json", "finding", "answer", message="Why?")
    assert events[1] == {
        "type": "warning",
        "node": "planner",
        "data": {
            "code": "plan_invalid",
            "message": "The planner's output was not a valid plan; answering in one step.",
        },
    }
    assert state["plan"] == [{"description": "Why?", "tool": "none"}]


@pytest.mark.asyncio
async def test_tool_step_says_the_tool_is_not_available_yet() -> None:
    plan = {"steps": [{"description": "trending", "tool": "github_trending"}]}
    events, _ = await _run(json.dumps(plan), "from memory", "answer")
    warning = next(e for e in events if e["type"] == "warning")
    assert warning["data"]["code"] == "tool_unavailable"


class _Metered(BaseChatModel):
    """Streams its one reply word by word; the last chunk reports the tokens spent."""

    reply: str

    @property
    def _llm_type(self) -> str:
        return "metered"

    def _generate(self, messages: Any, stop: Any = None, run_manager: Any = None, **kw: Any) -> Any:
        raise NotImplementedError

    async def _astream(
        self, messages: Any, stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> AsyncIterator[ChatGenerationChunk]:
        words = self.reply.split(" ")
        for i, word in enumerate(words):
            last = i == len(words) - 1
            meta = UsageMetadata(input_tokens=7, output_tokens=len(words), total_tokens=7 + 3)
            text = word if last else word + " "
            yield ChatGenerationChunk(
                message=AIMessageChunk(content=text, usage_metadata=meta if last else None)
            )


@pytest.mark.asyncio
async def test_streamed_answer_is_whole_and_its_usage_counted_once() -> None:
    g = build_graph(InMemorySaver())
    ctx = RunContext(chat_model=_Metered(reply="the sky is blue"), thread_id="t")
    config: Any = {"configurable": {"thread_id": "t"}}
    state = {"messages": [HumanMessage("Why?")], "plan": [], "findings": []}
    await g.aupdate_state(config, state, as_node="researcher")
    deltas = [
        e["data"]["text"]
        async for e in g.astream(None, config, context=ctx, stream_mode="custom")
        if e["type"] == "text_delta"
    ]
    values = (await g.aget_state(config)).values
    assert "".join(deltas) == "the sky is blue" == values["messages"][-1].content
    assert values["usage"] == {"input_tokens": 7, "output_tokens": 4, "total_tokens": 10}
