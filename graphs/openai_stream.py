"""``ChatOpenAI`` whose token stream skips the OpenAI SDK's per-chunk objects.

Profiled on one answer streaming 1,000 words (``python -m bench.spy stream``), 42 % of the
API's event loop went to the SDK's stream: every chunk is built into a pydantic
``ChatCompletionChunk`` (``construct_type``), which langchain-openai then turns back into a
dict (``model_dump``) to make its message chunk. Here the chat-completions stream is read as
SSE lines from the SDK's own streaming response, each ``data:`` line is decoded once with
``json``, and langchain-openai's own converter makes the message chunk, so what a caller gets
(text, usage, finish reason, callbacks, LangSmith runs) is what ``ChatOpenAI`` gives.

What stays the SDK's: the request (payload, headers, retries, timeouts) and its errors, which
are raised before the first chunk as the same ``openai`` exceptions, so fallbacks and circuit
breakers see no difference. Anything else (the Responses API, ``response_format`` streams,
response headers) goes through ``ChatOpenAI`` unchanged. The per-chunk wall-clock limit
(``stream_chunk_timeout``) is kept, with one rescheduled deadline instead of a task per chunk.
The reader yields to the event loop after each chunk: the SDK's parsing was slow enough that
the socket ran dry between chunks, and this one is not.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import openai
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun
from langchain_core.messages import AIMessageChunk, BaseMessage, BaseMessageChunk
from langchain_core.outputs import ChatGenerationChunk
from langchain_openai import ChatOpenAI
from langchain_openai.chat_models._client_utils import StreamChunkTimeoutError
from langchain_openai.chat_models.base import (
    _handle_openai_api_error,
    _handle_openai_bad_request,
)


class StreamingChatOpenAI(ChatOpenAI):
    """``ChatOpenAI`` with a lean chat-completions token stream (see the module docstring)."""

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        """Stream the reply's chunks, read from the SSE lines of the SDK's response."""
        payload = self._lean_payload(messages, stop, dict(kwargs))
        if payload is None:
            async for chunk in super()._astream(messages, stop, run_manager, **kwargs):
                yield chunk
            return
        chunk_class: type[BaseMessageChunk] = AIMessageChunk
        try:
            create = self.async_client.with_streaming_response.create
            async with create(**payload) as response:
                async for data in self._chunks(response.iter_lines()):
                    generation = self._convert_chunk_to_generation_chunk(data, chunk_class, {})
                    if generation is None:
                        continue
                    chunk_class = generation.message.__class__
                    if run_manager:
                        logprobs = (generation.generation_info or {}).get("logprobs")
                        await run_manager.on_llm_new_token(
                            generation.text, chunk=generation, logprobs=logprobs
                        )
                    yield generation
        except openai.BadRequestError as e:
            _handle_openai_bad_request(e)
        except openai.APIError as e:
            _handle_openai_api_error(e)

    def _lean_payload(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> dict[str, Any] | None:
        """The request as ``ChatOpenAI`` would send it, or None where only it can stream."""
        if self._use_responses_api({**kwargs, **self.model_kwargs}):
            return None
        if self.include_response_headers or self._uses_gateway:
            return None
        kwargs["stream"] = True
        if self._should_stream_usage(kwargs.pop("stream_usage", None), **kwargs):
            kwargs["stream_options"] = {"include_usage": True}
        payload = self._get_request_payload(messages, stop=stop, **kwargs)
        return None if "response_format" in payload else payload

    async def _chunks(self, lines: AsyncIterator[str]) -> AsyncIterator[dict[str, Any]]:
        """Each event as a dict, until ``[DONE]``; a stream silent too long times out.

        An event carrying ``error`` is raised as ``openai.APIError``, as the SDK does. The
        deadline is off while the caller holds a chunk, so it only ever fires in this read.
        """
        limit = self.stream_chunk_timeout if (self.stream_chunk_timeout or 0) > 0 else None
        loop, got = asyncio.get_running_loop(), 0
        try:
            async with asyncio.timeout(None) as deadline:
                deadline.reschedule(limit and loop.time() + limit)
                async for text in _events(lines):
                    if text.startswith("[DONE]"):
                        return
                    event = json.loads(text)
                    if isinstance(event, dict) and event.get("error"):
                        error = event["error"]
                        raise openai.APIError(str(error), None, body=error)  # type: ignore[arg-type]
                    got += 1
                    deadline.reschedule(None)
                    yield event
                    # Lines already buffered are read without suspending: let the loop run the
                    # run's other tasks (the event log, the readers) between chunks, or a fast
                    # model's whole answer would reach them as one late burst.
                    await asyncio.sleep(0)
                    deadline.reschedule(limit and loop.time() + limit)
        except TimeoutError as e:
            raise StreamChunkTimeoutError(
                float(limit or 0), model_name=self.model_name, chunks_received=got
            ) from e


async def _events(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    """The data of each SSE event: its ``data:`` lines joined; comments and other fields skipped."""
    data: list[str] = []
    async for line in lines:
        if line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        elif not line and data:
            yield "\n".join(data)
            data = []
    if data:
        yield "\n".join(data)
