"""Request tracing (practice 1): OpenTelemetry spans for graph nodes and LLM calls.

A LangChain callback handler attached to the run opens a span per LangGraph node and per chat
model call (with token counts), under the run's span, so they share Keel's trace_id.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from langchain_core.callbacks import AsyncCallbackHandler
from langchain_core.messages import BaseMessage
from langchain_core.outputs import LLMResult
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, Status, StatusCode

from core.otel import tracer

_tracer = tracer("keel.graph")


class SpanCallbacks(AsyncCallbackHandler):
    """Opens and closes node and LLM spans as LangGraph reports them.

    Run inline: each callback only starts or ends a span, so awaiting it in place is cheaper
    than the task LangChain would otherwise make for it on every event (every token).
    """

    run_inline = True

    def __init__(self, parent: Context) -> None:
        """Nest every span under ``parent`` (the run's span context)."""
        self.parent = parent
        self.spans: dict[UUID, Span] = {}
        self.up: dict[UUID, UUID | None] = {}

    def _context(self, parent_run_id: UUID | None) -> Context:
        seen = 0
        while parent_run_id is not None and seen < 100:
            span = self.spans.get(parent_run_id)
            if span is not None:
                return trace.set_span_in_context(span, self.parent)
            parent_run_id = self.up.get(parent_run_id)
            seen += 1
        return self.parent

    async def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: dict[str, Any] | Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Open a span when the chain is a LangGraph node."""
        self.up[run_id] = parent_run_id
        meta = metadata or {}
        node = meta.get("langgraph_node")
        if node and kwargs.get("name") == node:
            self.spans[run_id] = _tracer.start_span(
                f"node {node}",
                context=self._context(parent_run_id),
                attributes={
                    "keel.node": str(node),
                    "keel.step": int(meta.get("langgraph_step", -1)),
                },
            )

    async def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """Close the node's span."""
        self._end(run_id)

    async def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """Close the node's span as failed."""
        self._end(run_id, error)

    async def on_chat_model_start(
        self,
        serialized: dict[str, Any] | None,
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """Open an LLM span."""
        self.up[run_id] = parent_run_id
        self.spans[run_id] = _tracer.start_span("llm", context=self._context(parent_run_id))

    async def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        """Close the LLM span with its token counts."""
        span = self.spans.get(run_id)
        if span is not None:
            for gens in response.generations:
                for gen in gens:
                    usage = getattr(getattr(gen, "message", None), "usage_metadata", None) or {}
                    for key in ("input_tokens", "output_tokens"):
                        if key in usage:
                            span.set_attribute(f"gen_ai.usage.{key}", int(usage[key]))
        self._end(run_id)

    async def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """Close the LLM span as failed."""
        self._end(run_id, error)

    def _end(self, run_id: UUID, error: BaseException | None = None) -> None:
        self.up.pop(run_id, None)
        span = self.spans.pop(run_id, None)
        if span is None:
            return
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        span.end()
