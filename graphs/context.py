"""Per-run values that travel in LangGraph's ``context_schema``, never in state."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from langchain_core.language_models import BaseChatModel

from core.identity import Identity
from core.settings import LLMSettings, get_settings
from memory.layers import MemoryLayers
from tools.gateway import ToolGateway


def _default_llm() -> LLMSettings:
    return get_settings().llm


@dataclass(frozen=True)
class RunContext:
    """Who runs, under which trace, with which model settings.

    ``identity`` is the authenticated caller, whole (tier and API key included): the tool
    gateway limits and charges tool calls by it, so nothing rebuilds it from parts.
    ``chat_model`` overrides the model built from ``llm`` (scripted models in unit tests);
    ``tools`` is the app's tool gateway (``None``: tool steps answer from the model alone);
    ``memory`` the session and long-term stores (``None``: only short-term memory).
    """

    identity: Identity = Identity("anonymous", "default")
    trace_id: str = ""
    run_id: str = ""
    thread_id: str = ""
    llm: LLMSettings = field(default_factory=_default_llm)
    chat_model: BaseChatModel | None = None
    agent: str = "research"
    tools: ToolGateway | None = None
    timezone: str = "UTC"  # the user's (JWT claim ``tz``), for dates in tool arguments
    llm_fault: Literal["timeout"] | None = None  # ``faults.llm``: tests and demos only
    memory: MemoryLayers | None = None
