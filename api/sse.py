"""SSE responses of ready-made frames: one write per burst, pings, and dropping slow readers.

The event log renders each event's frame once (``runs.event_log.Frame``); this response only
joins the frames that are ready into one body chunk and sends it, so a reader that is behind
catches up in few writes and the cost per event stays a string join. ``frames`` turns a live
stream into those chunks, with a ``: ping`` comment after a quiet spell (proxies keep the
connection open).

A reader the fan-out dropped for falling too far behind (``LiveStream.dropped``) is cut off at
once, even while a write to it is blocked on its full socket: its last frame's ``id`` is where
it resumes with ``Last-Event-ID``. If that last write cannot finish, the connection is closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping

from starlette.background import BackgroundTask
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from runs.event_log import Frame

# How long the end of a dropped reader's response may wait for its socket before it is closed.
_END_WAIT_S = 1.0
PING = ": ping\n\n"


async def frames(stream: AsyncIterator[list[Frame]]) -> AsyncIterator[str]:
    """Each burst of frames as one chunk; an empty burst (a quiet spell) as a ping."""
    async for burst in stream:
        yield "".join([f.text for f in burst]) if burst else PING


class SseResponse(Response):
    """A ``text/event-stream`` of the text chunks ``chunks`` yields."""

    media_type = "text/event-stream"

    def __init__(
        self,
        chunks: AsyncIterator[str],
        *,
        dropped: asyncio.Event | None = None,
        headers: Mapping[str, str] | None = None,
        background: BackgroundTask | None = None,
    ) -> None:
        """Stream ``chunks``; stop early once ``dropped`` is set."""
        self.chunks = chunks
        self.dropped = dropped or asyncio.Event()
        self.status_code = 200
        self.background = background
        self.complete = False  # the response's last chunk was sent
        self.init_headers(
            {"Cache-Control": "no-store", "X-Accel-Buffering": "no", **(headers or {})}
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Send the stream until it ends, the client goes, or the reader is dropped."""
        body = asyncio.create_task(self._send_all(send))
        gone = asyncio.create_task(_disconnect(receive))
        dropped = asyncio.create_task(self.dropped.wait())
        try:
            await asyncio.wait((body, gone, dropped), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (body, gone, dropped):
                task.cancel()
            await asyncio.gather(body, gone, dropped, return_exceptions=True)
        if self.dropped.is_set() and not gone.done() and not self.complete:
            await _end(send)
        if self.background is not None:
            await self.background()

    async def _send_all(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        async for chunk in self.chunks:
            await _body(send, chunk, more=True)
        await _body(send, "", more=False)
        self.complete = True


async def _body(send: Send, chunk: str, *, more: bool) -> None:
    await send({"type": "http.response.body", "body": chunk.encode(), "more_body": more})


async def _end(send: Send) -> None:
    """End a dropped reader's response; a socket that stays full is closed by the server."""
    try:
        async with asyncio.timeout(_END_WAIT_S):
            await _body(send, "", more=False)
    except (TimeoutError, OSError, RuntimeError):
        pass


async def _disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
