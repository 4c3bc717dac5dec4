"""ASGI middleware: a trace_id per request (practice 1), a body size limit, no NUL in the URL."""

from __future__ import annotations

from opentelemetry import trace
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import problem
from core.errors import PayloadTooLarge
from core.tracing import new_trace_id, trace_id_from_traceparent, trace_id_var


class TraceMiddleware:
    """Take the trace_id from ``traceparent`` or mint one; expose it as ``X-Trace-Id``."""

    def __init__(self, app: ASGIApp) -> None:
        """Wrap ``app``."""
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Bind the trace_id for the request's lifetime."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # The OTel server span (FastAPI instrumentation, outermost) already honoured an
        # incoming traceparent or minted an id: adopt it, so both ids are one value.
        current = trace.get_current_span().get_span_context()
        headers = dict(scope.get("headers") or [])
        raw = headers.get(b"traceparent", b"").decode("latin-1")
        if current.is_valid:
            trace_id = format(current.trace_id, "032x")
        else:
            trace_id = trace_id_from_traceparent(raw) or new_trace_id()
        scope.setdefault("state", {})["trace_id"] = trace_id
        token = trace_id_var.set(trace_id)

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                hdrs = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-trace-id"]
                hdrs.append((b"x-trace-id", trace_id.encode()))
                message["headers"] = hdrs
            await send(message)

        try:
            await self.app(scope, receive, send_with_header)
        finally:
            trace_id_var.reset(token)


class BodyLimitMiddleware:
    """Refuse bodies over ``max_bytes`` with 413 before anything reads them whole.

    NULs in the path or query string are refused with 400.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        """Wrap ``app`` with a limit of ``max_bytes``."""
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check Content-Length, and count the bytes of chunked bodies."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Postgres text cannot hold NUL: an id or parameter carrying one is refused up front,
        # before it reaches a query (or a stream that has already answered 200).
        if "\x00" in scope.get("path", "") or b"%00" in scope.get("query_string", b"").lower():
            await problem(
                400, "Invalid request", "NUL bytes are not allowed in URLs.", "invalid_request"
            )(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await self._reject(scope, receive, send)
            return
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, counting_receive, send)
        except _TooLarge:
            await self._reject(scope, receive, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        err = PayloadTooLarge(f"request bodies are limited to {self.max_bytes} bytes")
        await problem(err.status, err.title, err.detail, err.code)(scope, receive, send)


class _TooLarge(Exception):
    pass
