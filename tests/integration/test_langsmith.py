"""LangSmith through a local fake endpoint: a real run with two tool calls is traced there
under the same trace_id as its header, events, log lines and OTel spans; feedback follows it."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from core.otel import add_processor
from runs import langsmith_runs
from tests.conftest import LiveServer, make_settings, stream_run
from tests.fakes.langsmith_server import FakeLangSmith
from tests.fakes.openai_server import FakeOpenAI

_spans = InMemorySpanExporter()
add_processor(SimpleSpanProcessor(_spans))


@pytest.fixture(scope="module")
def smith() -> Iterator[FakeLangSmith]:
    server = FakeLangSmith()
    server.start()
    os.environ["LANGSMITH_API_KEY"] = "test-key"
    os.environ["LANGSMITH_ENDPOINT"] = server.url
    try:
        yield server
    finally:
        client = langsmith_runs.client()
        if client is not None:
            client.flush()
        del os.environ["LANGSMITH_API_KEY"], os.environ["LANGSMITH_ENDPOINT"]
        server.stop()


@pytest.fixture(scope="module")
def traced(
    smith: FakeLangSmith,
    db_url: str,
    fake_llm: FakeOpenAI,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LiveServer]:
    settings = make_settings(db_url, fake_llm.base_url, tmp_path_factory.mktemp("smith"))
    with LiveServer(settings) as server:
        yield server


def _flushed(smith: FakeLangSmith, needle: bytes) -> list[bytes]:
    client = langsmith_runs.client()
    assert client is not None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        client.flush()
        found = [b for b in smith.bodies("/runs/multipart") if needle in b]
        if found:
            return found
        time.sleep(0.2)
    return []


def test_one_trace_id_in_header_events_logs_spans_and_langsmith(
    traced: LiveServer,
    smith: FakeLangSmith,
    fake_llm: FakeOpenAI,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake_llm.script.extend(
        [
            json.dumps(
                {
                    "steps": [
                        {"description": "Trending Rust repos", "tool": "github_trending"},
                        {"description": "Trending Go repos", "tool": "github_trending"},
                    ]
                }
            ),
            "rust finding",
            "go finding",
            "Both listed.",
        ]
    )
    caplog.set_level(logging.INFO)
    _spans.clear()
    with traced.client() as c:
        tid = c.post("/v1/threads").json()["thread_id"]
        resp, frames = stream_run(c, tid, "Trending Rust and Go repositories?")
        trace_id = resp.headers["x-trace-id"]
        run_id = frames[0].data["run_id"]
        assert [f.data["type"] for f in frames].count("tool_result") == 2
        assert {f.data["trace_id"] for f in frames} == {trace_id}
        logged = {
            getattr(r, "trace_id", None)
            for r in caplog.records
            if r.name.startswith(("api", "runs"))
        }
        assert trace_id in logged and logged <= {trace_id, None}
        assert {
            format(s.context.trace_id, "032x")
            for s in _spans.get_finished_spans()
            if (s.attributes or {}).get("keel.run_id") == run_id
        } == {trace_id}
        # The LangSmith run: Keel's run id, with the trace_id and context in its metadata.
        posted = _flushed(smith, trace_id.encode())
        assert posted, "no LangSmith run carried the trace_id"
        body = b"".join(posted)
        assert run_id.encode() in body
        for needle in (b'"tenant"', b'"acme"', b'"agent_variant"', b'"tool_versions"', b"2.0.0"):
            assert needle in body, needle
        rated = c.post("/v1/feedback", json={"run_id": run_id, "rating": "thumbs_up"})
        assert rated.status_code == 201
    feedback = [json.loads(b) for b in smith.bodies("/feedback")]
    assert [(f["run_id"], f["key"], f["score"]) for f in feedback] == [(run_id, "user_rating", 1.0)]


def test_without_a_key_nothing_is_created(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LANGSMITH_API_KEY", raising=False)
    assert langsmith_runs.tracer() is None and langsmith_runs.client() is None
