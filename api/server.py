"""The HTTP server (uvicorn on httptools) with request-head limits enforced while parsing.

uvicorn's httptools protocol has no limit on a request's head: a 50 MB header is buffered
whole and handed to the app. Here the request line plus headers are capped at
``server.max_header_bytes`` and their number at ``server.max_headers``; beyond either the
connection answers 431 problem+json and closes, before routing or authentication. Bytes of a
head still incomplete are counted as they arrive, so memory stays bounded by the limit plus
one socket read, whatever the client sends.
"""

from __future__ import annotations

import json
from typing import Any

import httptools
import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from core.settings import ServerSettings, Settings
from core.tracing import new_trace_id


class _HeadTooLarge(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol that refuses oversized request heads with 431."""

    max_header_bytes = 16_384
    max_headers = 100

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Start with no request head in progress."""
        super().__init__(*args, **kwargs)
        self._in_head = False
        self._began_in_chunk = False
        self._head_bytes = 0
        self._parsed_bytes = 0
        self._header_count = 0

    def data_received(self, data: bytes) -> None:
        """Feed ``data`` to the parser, answering 431 as soon as a head exceeds the limits."""
        self._unset_keepalive_if_required()
        self._began_in_chunk = False
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _HeadTooLarge):
                self._refuse(exc.__context__.detail)
                return
            self._bad_request()
            return
        except httptools.HttpParserError:
            self._bad_request()
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        # httptools buffers a header's value until it ends: count the bytes of a head still
        # open here, or a single endless header would grow without bound.
        if self._in_head and not self._began_in_chunk:
            self._head_bytes += len(data)
            if self._head_bytes > self.max_header_bytes:
                self._refuse(f"request headers exceed {self.max_header_bytes} bytes")

    def on_message_begin(self) -> None:
        """A new request: its head starts."""
        super().on_message_begin()
        self._in_head = True
        self._began_in_chunk = True
        self._head_bytes = self._parsed_bytes = self._header_count = 0

    def on_url(self, url: bytes) -> None:
        """Count the request target against the head's size."""
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        """Count one header against the head's size and the number of headers."""
        self._header_count += 1
        if self._header_count > self.max_headers:
            raise _HeadTooLarge(f"requests are limited to {self.max_headers} headers")
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        """The head is whole: hand the request on."""
        self._in_head = False
        super().on_headers_complete()

    def _count(self, n: int) -> None:
        self._parsed_bytes += n
        if self._parsed_bytes > self.max_header_bytes:
            raise _HeadTooLarge(f"request headers exceed {self.max_header_bytes} bytes")

    def _bad_request(self) -> None:
        msg = "Invalid HTTP request received."
        self.logger.warning(msg)
        self.send_400_response(msg)

    def _refuse(self, detail: str) -> None:
        self.logger.warning("refused a request head: %s", detail)
        trace_id = new_trace_id()
        body = json.dumps(
            {
                "type": "https://keel.dev/problems/headers_too_large",
                "title": "Request header fields too large",
                "status": 431,
                "detail": detail,
                "code": "headers_too_large",
                "trace_id": trace_id,
            }
        ).encode()
        head = (
            "HTTP/1.1 431 Request Header Fields Too Large\r\n"
            "content-type: application/problem+json\r\n"
            f"content-length: {len(body)}\r\n"
            f"x-trace-id: {trace_id}\r\n"
            "connection: close\r\n\r\n"
        ).encode("ascii")
        self._in_head = False
        self.transport.write(head + body)
        self.transport.close()


def protocol_class(server: ServerSettings) -> type[LimitedHttpToolsProtocol]:
    """The HTTP protocol class enforcing ``server``'s head limits."""
    return type(
        "KeelHttpProtocol",
        (LimitedHttpToolsProtocol,),
        {"max_header_bytes": server.max_header_bytes, "max_headers": server.max_headers},
    )


def server_config(app: FastAPI, settings: Settings, **overrides: Any) -> uvicorn.Config:
    """The uvicorn configuration ``keel serve`` (and the tests' live server) runs ``app`` with."""
    options: dict[str, Any] = {
        "host": settings.server.host,
        "port": settings.server.port,
        "http": protocol_class(settings.server),
        "log_config": None,
        "access_log": False,
        # Used if an h11 protocol is ever chosen: it caps the head too (answering 400).
        "h11_max_incomplete_event_size": settings.server.max_header_bytes,
        **overrides,
    }
    return uvicorn.Config(app, **options)
