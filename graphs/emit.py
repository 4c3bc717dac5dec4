"""How nodes emit typed events: through LangGraph's stream writer, never through HTTP.

A node builds the event's data model itself (``TextDeltaData(text=…)``), so a wrong field or
value fails in the node that wrote it, not one floor away when the run engine wraps it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from langchain_core.messages import AIMessage, BaseMessageChunk
from langgraph.types import StreamWriter

from core.events import AgentStatus, AgentStatusData, EventData, NodeEvent


def emit(writer: StreamWriter, node: str | None, data: EventData) -> None:
    """Send one event to the run's event stream; its type is the one ``data`` belongs to."""
    writer(NodeEvent.of(node, data))


def status(
    writer: StreamWriter,
    node: str,
    status_: AgentStatus,
    *,
    tool_name: str | None = None,
    detail: str | None = None,
) -> None:
    """Send an ``agent_status`` event (the UI's state machine moves only on these)."""
    short = None if detail is None else detail[:200]
    emit(writer, node, AgentStatusData(status=status_, tool_name=tool_name, detail=short))


def usage_of(message: AIMessage | BaseMessageChunk | None) -> dict[str, int]:
    """Token usage reported with a model response, as a plain dict."""
    return usage_counts(getattr(message, "usage_metadata", None))


def usage_counts(meta: Mapping[str, Any] | None) -> dict[str, int]:
    """The input, output and total token counts of a ``usage_metadata``, 0 where absent."""
    meta = meta or {}
    return {k: int(meta.get(k, 0)) for k in ("input_tokens", "output_tokens", "total_tokens")}
