"""The research agent's nodes: small typed async functions of (state, runtime)."""

from __future__ import annotations

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AnyMessage, HumanMessage

from graphs.context import RunContext
from graphs.llm import chat_model


def model_for(ctx: RunContext, max_tokens: int) -> BaseChatModel:
    """The run's chat model, capped at ``max_tokens`` (small models otherwise loop to the end)."""
    if ctx.chat_model is not None:
        return ctx.chat_model
    return chat_model(ctx.llm.model_copy(update={"max_tokens": max_tokens}))


def last_question(messages: list[AnyMessage]) -> str:
    """The text of the latest user message."""
    for m in reversed(messages):
        if isinstance(m, HumanMessage):
            return m.text
    return ""
