"""How nodes emit typed events: through LangGraph's stream writer, never through HTTP."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage, BaseMessageChunk
from langgraph.types import StreamWriter

from core.events import AgentStatus, NodeEvent


def emit(writer: StreamWriter, type_: str, node: str | None, **data: Any) -> None:
    """Send one event of ``type_`` to the run's event stream."""
    writer(NodeEvent(type=type_, node=node, data=data).model_dump())


def status(
    writer: StreamWriter,
    node: str,
    status_: AgentStatus,
    *,
    tool_name: str | None = None,
    detail: str | None = None,
) -> None:
    """Send an ``agent_status`` event (the UI's state machine moves only on these)."""
    data: dict[str, Any] = {"status": status_}
    if tool_name is not None:
        data["tool_name"] = tool_name
    if detail is not None:
        data["detail"] = detail[:200]
    emit(writer, "agent_status", node, **data)


def usage_of(message: AIMessage | BaseMessageChunk | None) -> dict[str, int]:
    """Token usage reported with a model response, as a plain dict."""
    meta = getattr(message, "usage_metadata", None) or {}
    return {k: int(meta.get(k, 0)) for k in ("input_tokens", "output_tokens", "total_tokens")}
