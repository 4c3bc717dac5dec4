"""A local stand-in for the LangSmith API: answers ``/info`` and records what is posted."""

from __future__ import annotations

import threading
import time
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from core.db import free_port

INFO = {
    "version": "0.10.0",
    "batch_ingest_config": {
        "size_limit": 100,
        "size_limit_bytes": 20_971_520,
        "scale_up_qsize_trigger": 1000,
        "scale_up_nthreads_limit": 16,
        "scale_down_nempty_trigger": 4,
    },
    "instance_flags": {},
}


class FakeLangSmith:
    """The server, in a background thread, and the requests it received."""

    def __init__(self) -> None:
        """Create a stopped server."""
        self.port = free_port()
        self.requests: list[tuple[str, str, bytes]] = []
        app = Starlette(
            routes=[
                Route("/info", self._info),
                Route("/{path:path}", self._record, methods=["GET", "POST", "PATCH", "PUT"]),
            ]
        )
        self._server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @property
    def url(self) -> str:
        """The endpoint to configure as ``LANGSMITH_ENDPOINT``."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Serve until ``stop``."""
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fake LangSmith did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop serving."""
        self._server.should_exit = True
        self._thread.join(10)

    def bodies(self, path: str) -> list[bytes]:
        """The bodies posted to ``path``."""
        return [b for _, p, b in self.requests if p == path]

    async def _info(self, _: Request) -> JSONResponse:
        return JSONResponse(INFO)

    async def _record(self, request: Request) -> JSONResponse:
        self.requests.append((request.method, request.url.path, await request.body()))
        body: dict[str, Any] = {}
        return JSONResponse(body)
