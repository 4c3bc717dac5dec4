"""A scripted chat model for unit tests: GenericFakeChatModel plus json_schema structured output."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.runnables import Runnable, RunnableLambda


class ScriptedChatModel(GenericFakeChatModel):
    """Replies with the scripted messages in order; structured output parses the next one."""

    def with_structured_output(  # type: ignore[override]
        self,
        schema: dict[str, Any],
        *,
        method: str = "json_schema",
        include_raw: bool = False,
        **_: Any,
    ) -> Runnable[Any, Any]:
        """Parse the next scripted reply as JSON like ChatOpenAI's json_schema mode with a dict
        schema (the parsed object, unvalidated). Pydantic schemas never come here: the nodes
        bind their response format and validate the reply themselves (``graphs.nodes``)."""
        assert method == "json_schema" and isinstance(schema, dict)

        async def parse(messages: Any) -> Any:
            raw = await self.ainvoke(messages)
            parsed: dict[str, Any] | None
            error: Exception | None = None
            try:
                parsed = json.loads(raw.text)
            except json.JSONDecodeError as exc:
                parsed, error = None, exc
            if include_raw:
                return {"raw": raw, "parsed": parsed, "parsing_error": error}
            if error:
                raise error
            return parsed

        return RunnableLambda(parse)


def scripted(*replies: str) -> ScriptedChatModel:
    """A model that answers ``replies`` in order."""
    messages: Iterator[AIMessage] = iter(AIMessage(r) for r in replies)
    return ScriptedChatModel(messages=messages)
