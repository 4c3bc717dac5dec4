"""Re-run the research graph against a recording (``keel record``): no LLM, no tools."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from langchain_core.messages import HumanMessage
from langgraph.checkpoint.memory import InMemorySaver

from graphs.context import RunContext
from graphs.graph import build_graph
from tests.fakes.scripted import scripted

# Events the executor adds around the graph's own: not reproduced by a graph-only replay.
_EXECUTOR_EVENTS = {"run_started", "run_finished"}
# The memory nodes read and write stores (session, long-term) a recording does not hold.
_MEMORY_NODES = {"memory_router", "remember"}


def normalise(events: list[dict[str, Any]]) -> list[tuple[str, str | None, Any]]:
    """(type, node, data) per event, ids and times dropped, consecutive text deltas joined
    (token boundaries depend on the model's tokenizer, the text does not)."""
    out: list[tuple[str, str | None, Any]] = []
    for ev in events:
        if (
            ev["type"] in _EXECUTOR_EVENTS
            or ev.get("node") in _MEMORY_NODES
            or (ev["type"] == "agent_status" and ev.get("node") is None)
        ):
            continue
        data = {k: v for k, v in ev["data"].items() if v is not None}
        if ev["type"] == "text_delta" and out and out[-1][0] == "text_delta":
            out[-1] = ("text_delta", ev["node"], {"text": out[-1][2]["text"] + data["text"]})
        else:
            out.append((ev["type"], ev["node"], data))
    return out


async def replay(recording: dict[str, Any]) -> list[dict[str, Any]]:
    """The graph's events when its model answers with the recorded outputs."""
    graph = build_graph(InMemorySaver())
    ctx = RunContext(chat_model=scripted(*recording["model_outputs"]), thread_id="replay")
    config: Any = {"configurable": {"thread_id": "replay"}}
    return [
        chunk
        async for chunk in graph.astream(
            {"messages": [HumanMessage(recording["message"])]},
            config,
            context=ctx,
            stream_mode="custom",
        )
    ]


def load(path: Path) -> dict[str, Any]:
    """A recording file."""
    data: dict[str, Any] = json.loads(path.read_text())
    return data
