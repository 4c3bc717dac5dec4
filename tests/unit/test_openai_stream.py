"""The lean token stream (graphs/openai_stream.py) gives what ChatOpenAI gives, on the wire."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
from langchain_core.messages import AIMessageChunk
from langchain_openai import ChatOpenAI
from langchain_openai.chat_models._client_utils import StreamChunkTimeoutError
from pydantic import SecretStr

from graphs.openai_stream import StreamingChatOpenAI
from tests.fakes.openai_server import FakeOpenAI


def _model(cls: type[ChatOpenAI], fake: FakeOpenAI, **kw: Any) -> ChatOpenAI:
    return cls(
        base_url=fake.base_url,
        model="fake",
        api_key=SecretStr("x"),
        max_retries=0,
        stream_usage=True,
        **kw,
    )


async def _chunks(model: ChatOpenAI) -> list[AIMessageChunk]:
    out = []
    async for chunk in model.astream("hi"):
        assert isinstance(chunk, AIMessageChunk)
        out.append(chunk)
    return out


def _seen(chunks: list[AIMessageChunk]) -> list[tuple[Any, ...]]:
    return [(c.text, c.usage_metadata, c.response_metadata, c.chunk_position) for c in chunks]


@pytest.mark.asyncio
async def test_chunks_text_usage_and_finish_are_chat_openais(fake_llm: FakeOpenAI) -> None:
    reply = "The sky is blue because air scatters short waves."
    fake_llm.script.extend([reply, reply])
    lean = await _chunks(_model(StreamingChatOpenAI, fake_llm))
    sdk = await _chunks(_model(ChatOpenAI, fake_llm))
    assert _seen(lean) == _seen(sdk)
    assert "".join(c.text for c in lean) == reply
    assert [c.usage_metadata["total_tokens"] for c in lean if c.usage_metadata] == [19]


@pytest.mark.asyncio
async def test_a_server_error_is_the_sdks_exception_before_any_chunk(fake_llm: FakeOpenAI) -> None:
    fake_llm.script.append("!status 500")
    with pytest.raises(openai.InternalServerError):
        await _chunks(_model(StreamingChatOpenAI, fake_llm))


@pytest.mark.asyncio
async def test_a_stream_silent_past_the_chunk_timeout_fails(fake_llm: FakeOpenAI) -> None:
    fake_llm.script.append("slow words here")
    fake_llm.delay_s = 0.5
    model = _model(StreamingChatOpenAI, fake_llm, stream_chunk_timeout=0.2)
    with pytest.raises(StreamChunkTimeoutError) as caught:
        await _chunks(model)
    assert caught.value.chunks_received == 1  # the role chunk came at once; the first word not


async def _lines(*lines: str) -> AsyncIterator[str]:
    for line in lines:
        yield line


@pytest.mark.asyncio
async def test_events_join_data_lines_and_skip_comments_until_done() -> None:
    model = StreamingChatOpenAI(base_url="http://127.0.0.1:9/v1", model="m", api_key=SecretStr("x"))
    lines = _lines(": ping", "", 'data: {"a":', "data: 1}", "", "event: x", "data: [DONE]", "")
    assert [e async for e in model._chunks(lines)] == [{"a": 1}]


@pytest.mark.asyncio
async def test_an_error_event_mid_stream_is_an_api_error() -> None:
    model = StreamingChatOpenAI(base_url="http://127.0.0.1:9/v1", model="m", api_key=SecretStr("x"))
    lines = _lines('data: {"choices": []}', "", 'data: {"error": {"message": "overloaded"}}', "")
    with pytest.raises(openai.APIError, match="overloaded"):
        [e async for e in model._chunks(lines)]


@pytest.mark.asyncio
async def test_the_loop_runs_other_tasks_between_chunks(fake_llm: FakeOpenAI) -> None:
    """A fast model's buffered lines must not starve the run's other tasks (its readers)."""
    fake_llm.script.append(" ".join(f"w{i}" for i in range(300)))
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    seen = []
    try:
        async for _ in _model(StreamingChatOpenAI, fake_llm).astream("hi"):
            seen.append(ticks)
    finally:
        task.cancel()
    assert len(seen) > 300
    assert all(b > a for a, b in zip(seen, seen[1:], strict=False))
