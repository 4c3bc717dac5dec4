"""A scripted chat model for unit tests: GenericFakeChatModel plus json_schema structured output."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.runnables import Runnable, RunnableLambda
from pydantic import BaseModel, ValidationError


class ScriptedChatModel(GenericFakeChatModel):
    """Replies with the scripted messages in order; structured output parses the next one."""

    def with_structured_output(  # type: ignore[override]
        self,
        schema: type[BaseModel] | dict[str, Any],
        *,
        method: str = "json_schema",
        include_raw: bool = False,
        **_: Any,
    ) -> Runnable[Any, Any]:
        """Parse the next scripted reply into ``schema`` like ChatOpenAI's json_schema mode
        (a dict schema gives the parsed JSON object, unvalidated, as ChatOpenAI does)."""
        assert method == "json_schema"

        async def parse(messages: Any) -> Any:
            raw = await self.ainvoke(messages)
            parsed: BaseModel | dict[str, Any] | None
            error: Exception | None = None
            try:
                if isinstance(schema, dict):
                    parsed = json.loads(raw.text)
                else:
                    parsed = schema.model_validate_json(raw.text)
            except (ValidationError, json.JSONDecodeError) as exc:
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
