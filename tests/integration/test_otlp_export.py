"""`tracing.otlp_endpoint` really exports: a child process's spans reach a local OTLP receiver,
including the span of an httpx request made under the instrumentation ``keel serve`` installs."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from core.settings import ROOT

CHILD = """
import httpx
from core.otel import configure, instrument_httpx, provider, tracer
from core.settings import TracingSettings
configure(TracingSettings(otlp_endpoint="{url}", service_name="keel-otlp-test"))
instrument_httpx()
with tracer("keel.test").start_as_current_span("exported span"):
    httpx.post("{url}".replace("/v1/traces", "/probe"), content=b"")
provider().shutdown()
"""


class _Receiver(BaseHTTPRequestHandler):
    bodies: list[tuple[str, bytes]] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        self.bodies.append((self.path, body))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *_: object) -> None:
        return


@pytest.fixture
def receiver() -> Iterator[HTTPServer]:
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_spans_are_exported_to_the_configured_otlp_endpoint(receiver: HTTPServer) -> None:
    url = f"http://127.0.0.1:{receiver.server_port}/v1/traces"
    done = subprocess.run(
        [sys.executable, "-c", CHILD.format(url=url)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    paths = [p for p, _ in _Receiver.bodies]
    assert paths == ["/probe", "/v1/traces"]
    body = _Receiver.bodies[1][1]
    assert b"exported span" in body and b"keel-otlp-test" in body
    # The instrumented httpx request is a client span of the same trace.
    assert b"POST" in body
