"""The live event path at load: coalesced text, slow readers dropped, runs never held up."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import LiveServer, make_settings
from tests.fakes.openai_server import FakeOpenAI
from tests.sse import Frame, parse

PLAN = json.dumps({"steps": [{"description": "s", "tool": "none"}]})


@pytest.fixture(scope="module")
def stream_server(
    db_url: str, fake_llm: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A server that joins text over 40 ms and drops readers 512 frames behind."""
    settings = make_settings(
        db_url,
        fake_llm.base_url,
        tmp_path_factory.mktemp("bp"),
        streams={"delta_window_ms": 40, "subscriber_buffer": 512},
    )
    with LiveServer(settings) as server:
        yield server


def _thread(c: httpx.Client) -> str:
    tid: str = c.post("/v1/threads").json()["thread_id"]
    return tid


def _wait_finished(live: LiveServer, tid: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        rows = live.sql("SELECT status FROM runs WHERE thread_id = %s", tid)
        if rows and rows[0]["status"] not in ("queued", "running"):
            return
        time.sleep(0.05)
    raise AssertionError("the run did not finish")


def _log(c: httpx.Client, tid: str, after: int = 0) -> list[Frame]:
    with c.stream("GET", f"/v1/threads/{tid}/stream", headers={"Last-Event-ID": str(after)}) as r:
        return parse(r.iter_lines())


def _follow(c: httpx.Client, tid: str) -> list[Frame]:
    """Read the thread to its run's end as a client does: resume by Last-Event-ID if cut."""
    frames: list[Frame] = []
    while not frames or frames[-1].data["type"] != "run_finished":
        frames += _log(c, tid, frames[-1].data["seq"] if frames else 0)
    return frames


def test_text_is_joined_into_fewer_events_and_resumes_gap_free(
    stream_server: LiveServer, fake_llm: FakeOpenAI
) -> None:
    answer = " ".join(f"t{i}" for i in range(60))
    fake_llm.script.extend([PLAN, "finding", answer])
    fake_llm.delay_s = 0.004  # tokens ~4 ms apart: about ten per 40 ms window
    with stream_server.client() as c:
        tid = _thread(c)
        with c.stream("POST", f"/v1/threads/{tid}/runs", json={"input": {"message": "go"}}) as r:
            frames = parse(r.iter_lines())
        deltas = [f.data for f in frames if f.data["type"] == "text_delta"]
        assert "".join(d["data"]["text"] for d in deltas) == answer
        assert 1 < len(deltas) < 60 / 2, len(deltas)  # joined, yet still streamed in pieces
        seqs = [f.data["seq"] for f in frames]
        assert seqs == list(range(1, len(seqs) + 1))
        assert [f.id for f in frames] == [str(s) for s in seqs]
        # Resuming after any of them gives exactly the rest, from the log.
        middle = deltas[len(deltas) // 2]["seq"]
        assert [f.data for f in _log(c, tid, middle)] == [f.data for f in frames[middle:]]
    fake_llm.delay_s = 0.0


def _stalled_reader(live: LiveServer, tid: str) -> socket.socket:
    """POST a run on a socket with a tiny receive buffer, and read none of the stream yet."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    sock.connect(("127.0.0.1", live.port))
    body = json.dumps({"input": {"message": "go"}}).encode()
    head = (
        f"POST /v1/threads/{tid}/runs HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {live.token()}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    sock.sendall(head.encode() + body)
    return sock


def _read_all(sock: socket.socket) -> str:
    sock.settimeout(30)
    chunks = []
    while data := sock.recv(65536):
        chunks.append(data)
    sock.close()
    raw = b"".join(chunks).decode()
    head, _, chunked = raw.partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 200"), head[:200]
    body, rest = [], chunked
    while rest:
        size, _, rest = rest.partition("\r\n")
        n = int(size, 16)
        body.append(rest[:n])
        rest = rest[n + 2 :]
        if n == 0:
            break
    return "".join(body)


def test_a_reader_that_falls_behind_is_dropped_and_resumes_while_others_get_everything(
    stream_server: LiveServer, fake_llm: FakeOpenAI
) -> None:
    # 4,000 tokens of 2,000 characters (8 MB): more than the socket buffers of a stalled reader
    # hold (the kernel may keep 4 MB of it).
    words = [f"w{i}" + "x" * 2000 for i in range(4000)]
    fake_llm.script.extend([PLAN, "finding", " ".join(words)])
    fake_llm.delay_s = 0.001
    with stream_server.client() as c:
        tid = _thread(c)
        stalled = _stalled_reader(stream_server, tid)
        time.sleep(0.3)  # the run is under way
        follower = _follow(c, tid)  # another reader of the thread, reading at full speed
        _wait_finished(stream_server, tid)  # the run ended while one reader read nothing
        full = [f.data for f in _log(c, tid)]
        got = [f.data for f in parse(_read_all(stalled).splitlines())]
    fake_llm.delay_s = 0.0
    assert full[-1]["type"] == "run_finished" and full[-1]["data"]["status"] == "success"
    assert [f.data for f in follower] == full
    # The stalled reader was cut off partway, at a frame boundary, with no gap before it...
    assert got and got[-1]["type"] != "run_finished"
    assert got == full[: len(got)]
    # ...and resuming from its last id gives it exactly the rest.
    with stream_server.client() as c:
        rest = [f.data for f in _log(c, tid, got[-1]["seq"])]
    assert got + rest == full
