"""Re-run the research graph against a recording (``keel record``): no LLM, no tool servers.

The model answers with the recorded outputs (``scripted``); tools answer through
``RecordedTools``, a gateway with no server behind it that serves the recorded tool outputs
in order, and fails the replay if the graph calls another tool than the recording did.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from langchain_core.messages import HumanMessage
from langgraph.checkpoint.memory import InMemorySaver

from core.settings import Settings
from graphs.context import RunContext
from graphs.graph import build_graph
from tests.fakes.scripted import scripted
from tools.errors import UnknownTool
from tools.gateway import ToolGateway, ToolOutcome, ToolSpec

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
        # A tool call's id is minted per run: matched loosely, like seq and times.
        data = {k: v for k, v in ev["data"].items() if v is not None and k != "call_id"}
        if ev["type"] == "text_delta" and out and out[-1][0] == "text_delta":
            out[-1] = ("text_delta", ev["node"], {"text": out[-1][2]["text"] + data["text"]})
        else:
            out.append((ev["type"], ev["node"], data))
    return out


class RecordedTools(ToolGateway):
    """A gateway that answers with a recording's tool outputs; no server is started."""

    def __init__(self, recording: dict[str, Any]) -> None:
        """Serve ``recording``'s tools and outputs."""
        super().__init__(Settings(env="test"))
        self.outputs = list(recording.get("tool_outputs", []))
        self.recorded = [
            ToolSpec(
                pin=t["pin"],
                server=t["server"],
                version=t["version"],
                name=t["name"],
                description=t["description"],
                input_schema=t["input_schema"],
                permissions=tuple(t["permissions"]),
                sandbox=t["sandbox"],
            )
            for t in recording.get("tools", [])
        ]

    def resolve(self, agent: str, server: str, tool: str | None = None) -> ToolSpec:
        """The recorded tool of ``server`` (its first unless ``tool``)."""
        for spec in self.recorded:
            if spec.server == server and tool in (None, spec.name):
                return spec
        raise UnknownTool(f"the recording has no tool {server}.{tool}")

    async def admit_scopes(self, spec: ToolSpec, **_: Any) -> None:
        """Admitted: the recorded run was, and its outputs say what the tool answered."""

    async def call(self, spec: ToolSpec, args: dict[str, Any], **_: Any) -> ToolOutcome:
        """The next recorded output, which must be ``spec``'s."""
        assert self.outputs, f"{spec.qualified} called more often than in the recording"
        out = self.outputs.pop(0)
        assert (out["tool_name"], out["version"]) == (spec.qualified, spec.version), out
        assert spec.server != "python_exec", "python_exec steps are not replayable yet"
        text = out["result"] if isinstance(out["result"], str) else json.dumps(out["result"])
        return ToolOutcome(spec, out["result"], text, out["duration_ms"])


async def replay(recording: dict[str, Any]) -> list[dict[str, Any]]:
    """The graph's events when its model and tools answer with the recorded outputs."""
    graph = build_graph(InMemorySaver())
    ctx = RunContext(
        chat_model=scripted(*recording["model_outputs"]),
        thread_id="replay",
        agent=recording.get("agent", "research"),
        # Recordings made before tool outputs were kept ran without a gateway.
        tools=RecordedTools(recording) if "tool_outputs" in recording else None,
    )
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
