"""An OpenAI-compatible ``/v1/embeddings`` server over the packaged MiniLM model.

It stands in for a production embeddings endpoint so the session-memory contract suite runs
the ``OpenAIEmbedder`` over its real HTTP wire path with real vectors.
"""

from __future__ import annotations

import base64
import threading
import time
from typing import Any

import numpy as np
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from core.db import free_port
from core.embeddings import MiniLMEmbedder


class EmbeddingsServer:
    """Serves ``POST /v1/embeddings`` in a background thread; counts requests."""

    def __init__(self, embedder: MiniLMEmbedder) -> None:
        self.embedder = embedder
        self.port = free_port()
        self.requests = 0
        self.app = Starlette(routes=[Route("/v1/embeddings", self._embed, methods=["POST"])])
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def _embed(self, request: Request) -> Response:
        self.requests += 1
        body: dict[str, Any] = await request.json()
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        vectors = await self.embedder.embed([str(t) for t in texts])
        b64 = body.get("encoding_format") == "base64"
        data = [
            {
                "object": "embedding",
                "index": i,
                "embedding": base64.b64encode(np.asarray(v, dtype="<f4").tobytes()).decode()
                if b64
                else v,
            }
            for i, v in enumerate(vectors)
        ]
        return JSONResponse(
            {
                "object": "list",
                "model": body.get("model", "all-MiniLM-L6-v2"),
                "data": data,
                "usage": {"prompt_tokens": 0, "total_tokens": 0},
            }
        )

    def __enter__(self) -> EmbeddingsServer:
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("embeddings server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server and self._thread:
            self._server.should_exit = True
            self._thread.join(10)
