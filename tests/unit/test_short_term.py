"""Short-term memory: a long conversation keeps prompts under the budget, older turns summarized."""

from __future__ import annotations

import json
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver

from core.settings import MemorySettings
from graphs.context import RunContext
from graphs.graph import build_graph
from memory.layers import MemoryLayers
from memory.short_term import count_text, count_tokens, window
from tests.fakes.scripted import scripted

TOPICS = ["Rust", "Go", "Python", "Kotlin", "Zig", "Elixir"]


def _question(i: int) -> str:
    return f"Turn {i}: what changed in {TOPICS[i % len(TOPICS)]} release {i} for async I/O?"


def _answer(i: int) -> str:
    return (
        f"Release {i} of {TOPICS[i % len(TOPICS)]} reworked the scheduler. "
        + "It also adds cancellation scopes, structured tasks and faster timers. " * 4
    )


def _conversation(turns: int) -> list[BaseMessage]:
    out: list[BaseMessage] = []
    for i in range(turns):
        out += [HumanMessage(_question(i)), AIMessage(_answer(i))]
    return out


def test_window_keeps_the_newest_turns_and_folds_the_rest() -> None:
    history = _conversation(30)
    win = window(history, summary="", folded=0, budget_tokens=600, summary_max_tokens=150)
    assert count_text(win.render()) <= 600
    assert isinstance(win.recent[0], HumanMessage)
    assert win.recent[-1].text == _answer(29)
    assert win.folded == len(history) - len(win.recent) == win.newly_folded
    assert "Turn 29" not in win.summary and win.summary.splitlines()[-1].startswith("- Assistant")
    again = window(
        history, summary=win.summary, folded=win.folded, budget_tokens=600, summary_max_tokens=150
    )
    assert (again.summary, again.newly_folded) == (win.summary, 0)


@pytest.mark.asyncio
async def test_a_30_turn_conversation_stays_under_the_budget_and_saves_tokens() -> None:
    budget = 600
    settings = MemorySettings(short_term_budget_tokens=budget, summary_max_tokens=150)
    g = build_graph(InMemorySaver())
    config: Any = {"configurable": {"thread_id": "long"}}
    plan = json.dumps({"steps": [{"description": "answer", "tool": "none"}]})
    windows: list[int] = []
    full: list[int] = []
    kept: list[int] = []
    said: list[BaseMessage] = []  # the whole conversation, as a client saw it
    for i in range(30):
        ctx = RunContext(
            chat_model=scripted(plan, "finding", _answer(i)),
            thread_id="long",
            memory=MemoryLayers(settings),
        )
        full.append(count_tokens(said))
        await g.ainvoke({"messages": [HumanMessage(_question(i))]}, config, context=ctx)
        said += [HumanMessage(_question(i)), AIMessage(_answer(i))]
        state = (await g.aget_state(config)).values
        windows.append(count_text(state["recalled"]["conversation"]))
        kept.append(count_tokens(state["messages"]))
        # The state holds the window and this turn, never a turn the summary covers.
        assert [m.text for m in state["messages"]] == [
            m.text for m in said[-len(state["messages"]) :]
        ]
    assert max(windows) <= budget
    assert full[-1] > 5 * budget
    # Turns folded into the summary leave the checkpointed state: it stays within the window
    # plus the current question and answer, so checkpoint bytes per turn stop growing.
    assert max(kept) <= budget + count_tokens(said[-2:]) and kept[-1] < full[-1] / 4
    saving = 1 - sum(windows) / sum(full)
    print(
        f"30 turns: {sum(full)} history tokens sent in full, {sum(windows)} windowed "
        f"({saving:.0%} fewer); last turn {full[-1]} vs {windows[-1]}; state {kept[-1]} tokens"
    )
    assert saving > 0.5
