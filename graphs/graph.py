"""The research agent's wiring: memory router → planner → researcher ⟲ (confirm) → summarizer."""

from __future__ import annotations

from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from graphs.context import RunContext
from graphs.nodes.confirm import confirm
from graphs.nodes.memory import memory_router, remember
from graphs.nodes.planner import planner
from graphs.nodes.researcher import after_researcher, researcher
from graphs.nodes.summarizer import summarizer
from graphs.state import InputState, State


def build_graph(
    checkpointer: BaseCheckpointSaver[Any] | None = None,
) -> CompiledStateGraph[State, RunContext, InputState, State]:
    """Compile the research graph, optionally with a checkpointer."""
    builder = StateGraph(State, context_schema=RunContext, input_schema=InputState)
    builder.add_node("memory_router", memory_router)
    builder.add_node("planner", planner)
    builder.add_node("researcher", researcher)
    builder.add_node("confirm", confirm)
    builder.add_node("summarizer", summarizer)
    builder.add_node("remember", remember)
    builder.add_edge(START, "memory_router")
    builder.add_edge("memory_router", "planner")
    builder.add_edge("planner", "researcher")
    builder.add_conditional_edges("researcher", after_researcher)
    builder.add_edge("confirm", "researcher")
    builder.add_edge("summarizer", "remember")
    builder.add_edge("remember", END)
    return builder.compile(checkpointer=checkpointer, name="research")


graph = build_graph()
