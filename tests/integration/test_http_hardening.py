"""HTTP hardening (issue 20, items 5, 11, 12): request-head limits on a real ``keel serve``,
allowed hosts, per-tier caps on threads and streams, 413 for chunked bodies, ``GET
/v1/threads/{id}`` and a protected ``/metrics``."""

from __future__ import annotations

import select
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.chaos.conftest import ApiProcess, api_env
from tests.conftest import LiveServer, make_settings
from tests.fakes.openai_server import FakeOpenAI

LIMIT = 8192


def _exchange(port: int, request: bytes, timeout_s: float = 10.0) -> bytes:
    """Send ``request`` whole on a fresh connection and read until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(request)
        out = b""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            out += chunk
            if b"\r\n\r\n" in out and b"content-length" in out.lower():
                head, _, body = out.partition(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                if len(body) >= length:
                    break
        return out


def _status(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1]) if raw.startswith(b"HTTP/1.1 ") else 0


@pytest.fixture(scope="module")
def served(
    db_url: str, fake_llm: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiProcess]:
    """``keel serve`` as a child process with an 8 KiB head limit and 20 headers at most."""
    tmp = tmp_path_factory.mktemp("served")
    env = api_env(
        db_url,
        fake_llm,
        tmp / "data",
        KEEL_SERVER__MAX_HEADER_BYTES=str(LIMIT),
        KEEL_SERVER__MAX_HEADERS="20",
    )
    api = ApiProcess(env, tmp / "api.log").start()
    yield api
    api.stop()


def test_oversized_header_gets_431_problem_before_auth(served: ApiProcess) -> None:
    request = (
        b"GET /v1/threads HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: "
        + b"a" * (LIMIT * 4)
        + b"\r\nConnection: close\r\n\r\n"
    )
    raw = _exchange(served.port, request)
    assert _status(raw) == 431, raw[:300]
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"content-type: application/problem+json" in head.lower()
    assert b'"code": "headers_too_large"' in body and b'"trace_id": "' in body


def test_too_many_headers_get_431(served: ApiProcess) -> None:
    extra = b"".join(b"X-H%d: v\r\n" % i for i in range(40))
    raw = _exchange(served.port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + extra + b"\r\n")
    assert _status(raw) == 431, raw[:300]


def test_endless_header_is_cut_off_not_buffered(served: ApiProcess) -> None:
    """A header that never ends: refused once past the limit, long before 4 MB are read."""
    sent, answer, total = 0, b"", 4 * 1024 * 1024
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
        chunk = b"a" * 16384
        deadline = time.monotonic() + 30
        try:
            while sent < total and time.monotonic() < deadline:
                sock.sendall(chunk)
                sent += len(chunk)
                if select.select([sock], [], [], 0)[0]:
                    answer = sock.recv(65536)
                    break
            else:
                ready = select.select([sock], [], [], 5)[0]
                answer = sock.recv(65536) if ready else b""
        except (BrokenPipeError, ConnectionResetError):
            pass  # closed by the server mid-send: refused
    assert sent < total, "the server read 4 MB of one header without refusing it"
    assert answer in (b"",) or _status(answer) == 431, answer[:200]
    assert httpx.get(f"{served.url}/healthz", timeout=10).status_code == 200


def test_headers_under_the_limit_are_served(served: ApiProcess) -> None:
    r = httpx.get(f"{served.url}/healthz", headers={"X-Ok": "a" * (LIMIT // 2)}, timeout=10)
    assert r.status_code == 200


@pytest.fixture(scope="module")
def capped(
    db_url: str, fake_llm: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """The API with free users capped at 3 threads and 1 stream, and /metrics behind a scope."""
    tiers = {"free": {"max_threads": 3, "concurrent_streams": 1}}
    settings = make_settings(
        db_url,
        fake_llm.base_url,
        tmp_path_factory.mktemp("capped"),
        quotas=tiers,
        server={"metrics_scope": "metrics:read"},
        runs={"max_body_bytes": 1024},
    )
    with LiveServer(settings) as server:
        yield server


def _assert_problem(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = r.json()
    assert body["code"] == code and body["trace_id"] == r.headers["x-trace-id"]
    return body


def test_foreign_host_header_is_refused(capped: LiveServer) -> None:
    """A DNS-rebinding page sends its own name as Host: only loopback names are served."""
    r = httpx.get(f"{capped.url}/healthz", headers={"Host": "attacker.example:8000"})
    _assert_problem(r, 400, "invalid_host")
    for host in (f"127.0.0.1:{capped.port}", f"localhost:{capped.port}", "[::1]:80"):
        assert httpx.get(f"{capped.url}/healthz", headers={"Host": host}).status_code == 200


def test_thread_cap_per_user_answers_429(capped: LiveServer) -> None:
    user = f"u-{uuid.uuid4().hex[:8]}"
    with capped.client(user) as c:
        for _ in range(3):
            assert c.post("/v1/threads").status_code == 201
        body = _assert_problem(c.post("/v1/threads"), 429, "limit_reached")
        assert body["limit"] == "max_threads"
    with capped.client(f"{user}-other") as other:
        assert other.post("/v1/threads").status_code == 201


def _fake_live_run(live: LiveServer, thread_id: str) -> None:
    """A run row that looks live (its lease runs for an hour), so a thread's stream stays open."""
    live.sql(
        "INSERT INTO runs (run_id, thread_id, trace_id, agent, status, lease_expires_at)"
        " VALUES (%s, %s, %s, 'research', 'running', now() + interval '1 hour')",
        str(uuid.uuid4()),
        thread_id,
        uuid.uuid4().hex,
    )


def test_concurrent_stream_cap_answers_429_with_retry_after(capped: LiveServer) -> None:
    user = f"s-{uuid.uuid4().hex[:8]}"
    with capped.client(user) as c:
        tid = c.post("/v1/threads").json()["thread_id"]
        _fake_live_run(capped, tid)
        with c.stream("GET", f"/v1/threads/{tid}/stream") as first:
            assert first.status_code == 200
            r = c.get(f"/v1/threads/{tid}/stream")
            body = _assert_problem(r, 429, "quota_exceeded")
            assert body["limit"] == "concurrent_streams"
            assert int(r.headers["retry-after"]) >= 1
        deadline = time.monotonic() + 15
        status = 429
        while status == 429 and time.monotonic() < deadline:
            # The slot comes back when the server notices the first stream's disconnect.
            status = c.get(f"/v1/replay/{tid}").status_code
        assert status == 200


def test_oversized_chunked_body_answers_413(capped: LiveServer) -> None:
    def body() -> Iterator[bytes]:
        for _ in range(8):
            yield b'{"x": "' + b"a" * 512 + b'"}'

    with capped.client() as c:
        r = c.post("/v1/feedback", content=body(), headers={"Content-Type": "application/json"})
    _assert_problem(r, 413, "payload_too_large")


def test_get_thread_for_the_owner_only(capped: LiveServer) -> None:
    with capped.client("owner") as c:
        created = c.post("/v1/threads").json()
        r = c.get(f"/v1/threads/{created['thread_id']}")
        assert r.status_code == 200, r.text
        assert r.json()["thread_id"] == created["thread_id"]
    with capped.client("owner", tenant="other-tenant") as stranger:
        _assert_problem(stranger.get(f"/v1/threads/{created['thread_id']}"), 404, "not_found")
    with capped.client("someone-else") as neighbour:
        _assert_problem(neighbour.get(f"/v1/threads/{created['thread_id']}"), 404, "not_found")


def test_metrics_need_the_scope_when_configured(capped: LiveServer) -> None:
    _assert_problem(httpx.get(f"{capped.url}/metrics"), 401, "unauthenticated")
    with capped.client() as c:
        _assert_problem(c.get("/metrics"), 403, "forbidden")
    token = capped.token(scopes=["metrics:read"])
    r = httpx.get(f"{capped.url}/metrics", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and "keel_" in r.text


def test_metrics_stay_open_without_a_scope_configured(served: ApiProcess) -> None:
    assert httpx.get(f"{served.url}/metrics", timeout=10).status_code == 200
