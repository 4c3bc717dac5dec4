"""One trace_id across the X-Trace-Id header, every event, every log line and every span."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from core.otel import add_processor
from tests.conftest import LiveServer, stream_run
from tests.fakes.openai_server import FakeOpenAI

_exporter = InMemorySpanExporter()
add_processor(SimpleSpanProcessor(_exporter))


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    _exporter.clear()
    yield _exporter
    _exporter.clear()


def test_one_trace_id_everywhere(
    live: LiveServer,
    fake_llm: FakeOpenAI,
    spans: InMemorySpanExporter,
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
    with live.client() as c:
        tid = c.post("/v1/threads").json()["thread_id"]
        resp, frames = stream_run(c, tid, "Trending Rust and Go repositories?")
    trace_id = resp.headers["x-trace-id"]
    assert {f.data["trace_id"] for f in frames} == {trace_id}
    assert [f.data["type"] for f in frames].count("tool_result") == 2

    run_spans = [
        s
        for s in spans.get_finished_spans()
        if s.attributes and s.attributes.get("keel.run_id") == frames[0].data["run_id"]
    ]
    assert len(run_spans) == 1
    mine = [
        s for s in spans.get_finished_spans() if s.context.trace_id == run_spans[0].context.trace_id
    ]
    assert {format(s.context.trace_id, "032x") for s in mine} == {trace_id}
    names = [s.name for s in mine]
    # The official instrumentations: the HTTP server span, and SQL statements of the run.
    server = [s for s in mine if s.kind == SpanKind.SERVER]
    assert [s.name for s in server] == ["POST /v1/threads/{thread_id}/runs"]
    assert any((s.attributes or {}).get("db.system") == "postgresql" for s in mine)
    assert names.count("node planner") == 1
    assert names.count("node researcher") == 2
    assert names.count("node summarizer") == 1
    assert names.count("tool github_trending.trending_repos") == 2
    assert names.count("llm") == 4
    by_id = {s.context.span_id: s for s in mine}
    for s in mine:
        if s.name.startswith("node "):
            assert s.parent is not None and by_id[s.parent.span_id].name == "run"
        if s.name == "llm":
            assert s.parent is not None and by_id[s.parent.span_id].name.startswith("node ")
    llm_out = sum(
        int(s.attributes.get("gen_ai.usage.output_tokens", 0))  # type: ignore[union-attr]
        for s in mine
        if s.name == "llm"
    )
    assert llm_out == frames[-1].data["data"]["usage"]["output_tokens"]

    from core.tracing import JsonFormatter

    fmt = JsonFormatter()
    run_id = frames[0].data["run_id"]
    lines = [
        json.loads(fmt.format(r)) for r in caplog.records if getattr(r, "run_id", None) == run_id
    ]
    events = {line["event"] for line in lines}
    assert {"run started", "run finished"} <= events
    assert {line["trace_id"] for line in lines} == {trace_id}
    assert {line["thread_id"] for line in lines} == {tid}
