"""The research agent's nodes: small typed async functions of (state, runtime).

Nodes reach the model through ``chat`` and ``structured``. When ``llm.fallback`` is set, each
is the main model with the fallback behind it (LangChain's ``with_fallbacks``): a call that
still times out or fails (connection, 5xx, 429) after the client's own retry goes to the
fallback model, announced as a ``warning`` with code ``llm_fallback``. When both fail the
error reaches the executor, which ends the run with ``agent_status: error`` and a plain
request to try again or rephrase. ``faults.llm: timeout`` points the main model at an
endpoint that never answers, so it times out for real (after ``llm.timeout_s``, retried once).
"""

from __future__ import annotations

import functools
import logging
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import openai
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langchain_core.runnables import Runnable, RunnableLambda
from langgraph.config import get_stream_writer
from pydantic import BaseModel, ValidationError

from core.events import WarningData
from graphs import prompts
from graphs.context import RunContext
from graphs.emit import emit
from graphs.llm import chat_model, silent_endpoint

log = logging.getLogger(__name__)

# What sends a call to the fallback model: the main one is unreachable, slow or failing.
MODEL_FAILURES = (
    openai.APITimeoutError,
    openai.APIConnectionError,
    openai.InternalServerError,
    openai.RateLimitError,
)


def model_for(ctx: RunContext, max_tokens: int) -> BaseChatModel:
    """The run's main chat model, capped at ``max_tokens`` (small models otherwise loop)."""
    if ctx.chat_model is not None:
        return ctx.chat_model
    update: dict[str, Any] = {"max_tokens": max_tokens}
    if ctx.llm_fault == "timeout":
        update["base_url"] = silent_endpoint()
    return chat_model(ctx.llm.model_copy(update=update))


def _fallback_for(ctx: RunContext, max_tokens: int) -> BaseChatModel | None:
    fb = ctx.llm.fallback
    if fb is None or ctx.chat_model is not None:
        return None
    return chat_model(
        ctx.llm.model_copy(
            update={
                "provider": "openai",
                "base_url": fb.base_url,
                "model": fb.model,
                "api_key": fb.api_key,
                "timeout_s": fb.timeout_s,
                "max_tokens": max_tokens,
                "fallback": None,
            }
        )
    )


def _announce(ctx: RunContext) -> Runnable[Any, Any]:
    def tell(value: Any) -> Any:
        fb = ctx.llm.fallback
        emit(
            get_stream_writer(),
            None,
            WarningData(
                code="llm_fallback",
                message=(
                    f"The main model ({ctx.llm.model}) did not answer in time or failed:"
                    f" answering with the fallback model ({fb.model if fb else '?'})."
                ),
            ),
        )
        return value

    return RunnableLambda(tell)


def chat(ctx: RunContext, max_tokens: int) -> Runnable[LanguageModelInput, AIMessage]:
    """The model for plain and streamed answers, with the fallback model behind it."""
    main = model_for(ctx, max_tokens)
    fallback = _fallback_for(ctx, max_tokens)
    if fallback is None:
        return main
    return main.with_fallbacks([_announce(ctx) | fallback], exceptions_to_handle=MODEL_FAILURES)


def structured(
    ctx: RunContext, max_tokens: int, schema: type[BaseModel] | dict[str, Any]
) -> Runnable[LanguageModelInput, Any]:
    """The model with ``schema`` as json_schema structured output (raw kept), and fallback.

    The result is ``{"raw": AIMessage, "parsed": ..., "parsing_error": ...}``; ``parsed`` is an
    instance of a pydantic ``schema`` (``None`` if the reply does not validate), or a dict.

    A reply cut at its token cap (``LengthFinishReasonError``: a small model that loops, or an
    answer longer than the cap) is asked again once with twice the cap; cut again, the result
    has ``parsed`` ``None`` and the caller degrades as for any invalid reply. A model's mistake
    never fails the run.
    """

    def at(cap: int) -> Runnable[LanguageModelInput, Any]:
        main = _with_schema(model_for(ctx, cap), schema)
        fallback = _fallback_for(ctx, cap)
        if fallback is None:
            return main
        backup = _with_schema(fallback, schema)
        return main.with_fallbacks([_announce(ctx) | backup], exceptions_to_handle=MODEL_FAILURES)

    async def cut_retried(prompt: LanguageModelInput) -> Any:
        try:
            return await at(max_tokens).ainvoke(prompt)
        except openai.LengthFinishReasonError:
            log.info("structured reply cut at %d tokens; asking again", max_tokens)
        try:
            return await at(max_tokens * 2).ainvoke(prompt)
        except openai.LengthFinishReasonError as exc:
            return {"raw": None, "parsed": None, "parsing_error": exc}

    return RunnableLambda(cut_retried)


@functools.cache
def response_format(schema: type[BaseModel]) -> dict[str, Any]:
    """``schema`` as a strict json_schema response format, derived once per class.

    It is the format the OpenAI client derives from a pydantic class, which it would redo on
    every call (with LangChain deriving it once more): that was ~7 % of the API's CPU with
    runs in flight (py-spy, ``bench/profiles/concurrent_runs.txt``).
    """
    fn = openai.pydantic_function_tool(schema)["function"]
    return {
        "type": "json_schema",
        "json_schema": {"name": fn["name"], "schema": fn["parameters"], "strict": True},
    }


def _with_schema(
    model: BaseChatModel, schema: type[BaseModel] | dict[str, Any]
) -> Runnable[LanguageModelInput, Any]:
    if isinstance(schema, dict):
        return model.with_structured_output(schema, method="json_schema", include_raw=True)

    def parse(raw: AIMessage) -> dict[str, Any]:
        try:
            parsed = schema.model_validate_json(raw.text)
        except ValidationError as exc:
            return {"raw": raw, "parsed": None, "parsing_error": exc}
        return {"raw": raw, "parsed": parsed, "parsing_error": None}

    return model.bind(response_format=response_format(schema)) | RunnableLambda(parse)


def last_question(messages: list[AnyMessage]) -> str:
    """The text of the latest user message."""
    for m in reversed(messages):
        if isinstance(m, HumanMessage):
            return m.text
    return ""


def recalled_text(recalled: dict[str, Any]) -> str:
    """What the memory router selected, as prompt text (empty when it selected nothing)."""
    parts = []
    if recalled.get("facts"):
        facts = "\n".join(f"- {f['text']}" for f in recalled["facts"])
        parts.append("Known from this thread:\n" + prompts.data("session_memory", facts))
    if recalled.get("profile"):
        profile = "\n".join(f"- {k}: {v}" for k, v in recalled["profile"].items())
        parts.append("About the user:\n" + prompts.data("long_term_memory", profile))
    if recalled.get("conversation"):
        parts.append(prompts.data("conversation", recalled["conversation"]))
    return "".join(f"\n\n{p}" for p in parts)


def today_line(ctx: RunContext) -> str:
    """Today's date and time in the caller's zone, so answers about "tomorrow" are right."""
    try:
        now = datetime.now(ZoneInfo(ctx.timezone))
    except (KeyError, ValueError):
        now = datetime.now(UTC)
    return f"Today is {now.strftime('%A %Y-%m-%d, %H:%M')} ({ctx.timezone})."
