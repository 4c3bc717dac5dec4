"""ASGI middleware: a trace_id per request (practice 1), allowed hosts, a body size limit."""

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

    NULs in the path or query string are refused with 400. ``uploads`` maps a path to its own
    limit (file uploads are larger than any JSON body).
    """

    def __init__(self, app: ASGIApp, max_bytes: int, uploads: dict[str, int] | None = None) -> None:
        """Wrap ``app`` with a limit of ``max_bytes`` (``uploads[path]`` on those paths)."""
        self.app = app
        self.max_bytes = max_bytes
        self.uploads = uploads or {}

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
        limit = self.uploads.get(scope.get("path", ""), self.max_bytes)
        length = headers.get(b"content-length")
        if length is not None:
            if not length.isdigit() or int(length) > limit:
                await self._reject(scope, receive, send, limit)
                return
            await self.app(scope, receive, send)
            return
        if b"chunked" not in headers.get(b"transfer-encoding", b"").lower():
            await self.app(scope, receive, send)
            return
        # A chunked body has no length up front: read it here, up to the limit, so the answer
        # past it is 413 (an error raised inside the app's body read would surface as 400).
        buffered: list[Message] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return
            seen += len(message.get("body", b""))
            if seen > limit:
                await self._reject(scope, receive, send, limit)
                return
            buffered.append(message)
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return buffered.pop(0) if buffered else await receive()

        await self.app(scope, replay, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        err = PayloadTooLarge(f"request bodies are limited to {limit} bytes")
        await problem(err.status, err.title, err.detail, err.code)(scope, receive, send)


class HostCheckMiddleware:
    """Serve only the ``Host`` names in ``allowed`` (``*``: any; ``*.example.com``: subdomains).

    A web page that rebinds its own name to 127.0.0.1 still sends its own name as ``Host``,
    so a server that answers loopback names only cannot be read by it (DNS rebinding).
    Others get 400 problem+json before any route runs.
    """

    def __init__(self, app: ASGIApp, allowed: list[str]) -> None:
        """Wrap ``app``, serving the hosts of ``allowed``."""
        self.app = app
        self.any = "*" in allowed
        self.exact = {h.lower() for h in allowed if not h.startswith("*")}
        self.suffixes = tuple(h.lower()[1:] for h in allowed if h.startswith("*."))

    def allows(self, host: str) -> bool:
        """Whether a ``Host`` header value (with or without a port) is served."""
        if self.any:
            return True
        host = host.strip().lower()
        if host.startswith("["):
            name = host[1 : host.find("]")] if "]" in host else ""
        else:
            name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        return name in self.exact or (bool(name) and name.endswith(self.suffixes))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse a request whose ``Host`` is not allowed."""
        if scope["type"] != "http" or self.any:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        host = headers.get(b"host", b"").decode("latin-1")
        if self.allows(host):
            await self.app(scope, receive, send)
            return
        await problem(
            400, "Invalid host", f"this server does not answer for host {host!r}", "invalid_host"
        )(scope, receive, send)
