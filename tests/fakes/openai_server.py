"""A scripted OpenAI-compatible HTTP server, so tests exercise langchain-openai's real wire path.

Each request takes the next scripted reply (``"!status 500"`` answers with that error,
``"!length TEXT"`` with TEXT cut at the token cap: ``finish_reason: length``); with
none left, a default by request kind: a valid one-step plan for ``response_format`` requests,
a short text otherwise. Streaming requests get SSE chunks (one per word) and a usage chunk;
requests are recorded for asserts.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from core.db import free_port

DEFAULT_PLAN = json.dumps({"steps": [{"description": "Recall the facts", "tool": "none"}]})
DEFAULT_STEP = "The fact is that forty-two is the answer."
DEFAULT_ANSWER = "The answer is 42."


class FakeOpenAI:
    """The server and its script."""

    def __init__(self) -> None:
        """Create a stopped server with an empty script."""
        self.script: deque[str] = deque()
        self.requests: list[dict[str, Any]] = []
        self.delay_s = 0.0
        # Replies by the request's structured-output schema name (else "stream" or "text"),
        # used once the script is empty: the same request gets the same reply, however often
        # it is asked (a node that runs again after a crash).
        self.by_schema: dict[str, str] = {}
        self.port = free_port()
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/health", self._health),
                Route("/v1/models", self._models),
            ]
        )
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI base URL to configure."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        """Serve in a background thread until ``stop``."""
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="off",
            loop="asyncio",
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fake OpenAI server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop serving."""
        if self._server and self._thread:
            self._server.should_exit = True
            self._thread.join(10)

    def reset(self) -> None:
        """Forget the script and the recorded requests."""
        self.script.clear()
        self.requests.clear()
        self.delay_s = 0.0
        self.by_schema.clear()

    async def _models(self, _: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": "fake", "object": "model"}]})

    async def _health(self, _: Request) -> Response:
        return JSONResponse({"status": "ok"})

    def _reply_for(self, body: dict[str, Any]) -> str:
        if self.script:
            return self.script.popleft()
        fmt = body.get("response_format") or {}
        kind = "stream" if body.get("stream") else "text"
        name = fmt.get("json_schema", {}).get("name") or kind
        if name in self.by_schema:
            return self.by_schema[name]
        if body.get("response_format"):
            return DEFAULT_PLAN
        return DEFAULT_ANSWER if body.get("stream") else DEFAULT_STEP

    async def _chat(self, request: Request) -> Response:
        response = await self._reply(request)
        # No keep-alive: each LiveServer has its own event loop, and langchain-openai caches
        # its httpx client per base URL; a pooled connection would outlive its loop.
        response.headers["connection"] = "close"
        return response

    async def _reply(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        text = self._reply_for(body)
        if text.startswith("!status "):
            status = int(text.split()[1])
            return JSONResponse(
                {"error": {"message": "scripted failure", "type": "server_error", "code": status}},
                status_code=status,
            )
        finish = "stop"
        if text.startswith("!length "):
            finish, text = "length", text.removeprefix("!length ")
        model = body.get("model", "fake")
        usage = {
            "prompt_tokens": 10,
            "completion_tokens": len(text.split()),
            "total_tokens": 10 + len(text.split()),
        }
        cid = f"chatcmpl-{uuid.uuid4().hex[:12]}"
        if not body.get("stream"):
            return JSONResponse(
                {
                    "id": cid,
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": finish,
                            "message": {"role": "assistant", "content": text},
                        }
                    ],
                    "usage": usage,
                }
            )

        async def chunks() -> AsyncIterator[str]:
            import asyncio

            def frame(
                delta: dict[str, Any],
                finish: str | None = None,
                extra: dict[str, Any] | None = None,
            ) -> str:
                payload = {
                    "id": cid,
                    "object": "chat.completion.chunk",
                    "created": int(time.time()),
                    "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                }
                payload.update(extra or {})
                return f"data: {json.dumps(payload)}\n\n"

            yield frame({"role": "assistant", "content": ""})
            words = text.split(" ")
            for i, word in enumerate(words):
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                yield frame({"content": word if i == 0 else " " + word})
            yield frame({}, finish)
            if (body.get("stream_options") or {}).get("include_usage"):
                yield (
                    "data: "
                    + json.dumps(
                        {
                            "id": cid,
                            "object": "chat.completion.chunk",
                            "created": int(time.time()),
                            "model": model,
                            "choices": [],
                            "usage": usage,
                        }
                    )
                    + "\n\n"
                )
            yield "data: [DONE]\n\n"

        return StreamingResponse(chunks(), media_type="text/event-stream")
