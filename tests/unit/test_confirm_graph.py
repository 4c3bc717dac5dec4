"""The confirmation interrupt in the graph alone: a held call is made once after approval, and
a held call left behind by an earlier turn is never made in a later one."""

from __future__ import annotations

import json
from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from core.identity import Identity
from core.settings import Settings
from graphs.context import RunContext
from graphs.graph import build_graph
from tests.fakes.scripted import ScriptedChatModel, scripted
from tools.gateway import ToolGateway, ToolOutcome, ToolSpec
from tools.intents import OutcomeUnknown

SPEC = ToolSpec(
    pin="calendar-v1",
    server="calendar",
    version="1.0.0",
    name="schedule_meeting",
    description="",
    input_schema={
        "type": "object",
        "properties": {
            "title": {"type": "string"},
            "starts_at": {"type": "string", "format": "date-time"},
            "duration_min": {"type": "integer"},
            "idempotency_key": {"type": "string"},
        },
        "required": ["title", "starts_at"],
    },
    permissions=("write:calendar",),
    sandbox=False,
)
PLAN = json.dumps({"steps": [{"description": "Schedule a meeting standup", "tool": "calendar"}]})
ARGS = json.dumps({"title": "standup", "starts_at": "2026-12-01T09:00:00+00:00"})


class CountingTools(ToolGateway):
    """The gateway's confirmation rules over one scripted calendar tool that counts its calls."""

    def __init__(self) -> None:
        super().__init__(Settings(env="test", tools={"confirm": ["calendar.schedule_meeting"]}))
        self.calls: list[dict[str, Any]] = []

    def resolve(self, agent: str, server: str, tool: str | None = None) -> ToolSpec:
        return SPEC

    def resolve_pin(self, pin: str, tool: str | None = None) -> ToolSpec:
        return SPEC

    async def call(self, spec: ToolSpec, args: dict[str, Any], **kw: Any) -> ToolOutcome:
        assert kw["confirmed"] is True
        self.calls.append(args)
        return ToolOutcome(spec=spec, result="booked", text="booked", duration_ms=1.0)


async def _stream(g: Any, value: Any, ctx: RunContext) -> list[dict[str, Any]]:
    config: Any = {"configurable": {"thread_id": "t"}}
    return [c async for c in g.astream(value, config, context=ctx, stream_mode="custom")]


def _ctx(model: ScriptedChatModel, tools: CountingTools) -> RunContext:
    scopes = frozenset({"write:calendar"})
    return RunContext(
        chat_model=model,
        tools=tools,
        identity=Identity("anonymous", "default", scopes),
        thread_id="t",
        run_id="r1",
    )


@pytest.mark.asyncio
async def test_an_approved_held_call_is_made_once_with_the_held_arguments() -> None:
    g = build_graph(InMemorySaver())
    tools = CountingTools()
    model = scripted(PLAN, ARGS, "booked it", "Your meeting is booked.")
    held = await _stream(g, {"messages": [HumanMessage("book standup")]}, _ctx(model, tools))
    asked = [e for e in held if e["type"] == "confirmation_required"]
    assert len(asked) == 1 and held[-1]["data"]["status"] == "awaiting_confirmation"
    assert tools.calls == []
    snap = await g.aget_state({"configurable": {"thread_id": "t"}})
    assert snap.next == ("confirm",)
    cid = asked[0]["data"]["confirmation_id"]
    resume = Command(resume={"approve": True, "comment": None, "confirmation_id": cid})
    await _stream(g, resume, _ctx(model, tools))
    assert len(tools.calls) == 1
    assert tools.calls[0]["title"] == "standup" and tools.calls[0]["idempotency_key"]
    snap = await g.aget_state({"configurable": {"thread_id": "t"}})
    assert snap.next == () and snap.values["pending"] is None


@pytest.mark.asyncio
async def test_a_decided_call_left_by_a_crashed_resume_is_not_made_in_the_next_turn() -> None:
    g = build_graph(InMemorySaver())
    tools = CountingTools()
    model = scripted(PLAN, ARGS)
    await _stream(g, {"messages": [HumanMessage("book standup")]}, _ctx(model, tools))
    config: Any = {"configurable": {"thread_id": "t"}}
    pending = (await g.aget_state(config)).values["pending"]
    # The confirm node ran (its checkpoint holds the decision), then the process died.
    decided = {**pending, "decision": {"approve": True, "comment": None}}
    await g.aupdate_state(config, {"pending": decided}, as_node="confirm")
    assert (await g.aget_state(config)).next == ("researcher",)
    none_plan = json.dumps({"steps": [{"description": "say hi", "tool": "none"}]})
    events = await _stream(
        g,
        {"messages": [HumanMessage("never mind, say hi")]},
        _ctx(scripted(none_plan, "hi", "Hi."), tools),
    )
    assert tools.calls == []
    assert not [e for e in events if e["type"] in ("tool_call", "confirmation_decided")]
    assert (await g.aget_state(config)).values["pending"] is None


class UnknownOutcomeTools(CountingTools):
    """A calendar whose every call was started before by a run that died: outcome unknown."""

    async def call(self, spec: ToolSpec, args: dict[str, Any], **kw: Any) -> ToolOutcome:
        assert kw["key"]
        raise OutcomeUnknown("started before and may have run")


@pytest.mark.asyncio
async def test_a_confirmed_call_with_an_unknown_outcome_is_held_again_not_repeated() -> None:
    g = build_graph(InMemorySaver())
    tools = UnknownOutcomeTools()
    model = scripted(PLAN, ARGS)
    held = await _stream(g, {"messages": [HumanMessage("book standup")]}, _ctx(model, tools))
    first = [e for e in held if e["type"] == "confirmation_required"][0]["data"]
    resume = Command(
        resume={"approve": True, "comment": None, "confirmation_id": first["confirmation_id"]}
    )
    events = await _stream(g, resume, _ctx(model, tools))
    warned = [e["data"]["code"] for e in events if e["type"] == "warning"]
    again = [e["data"] for e in events if e["type"] == "confirmation_required"]
    assert warned == ["outcome_unknown"]
    assert len(again) == 1 and again[0]["confirmation_id"] != first["confirmation_id"]
    assert again[0]["args"] == first["args"]
    assert not [e for e in events if e["type"] in ("tool_result", "tool_error")]
    snap = await g.aget_state({"configurable": {"thread_id": "t"}})
    assert snap.next == ("confirm",)
