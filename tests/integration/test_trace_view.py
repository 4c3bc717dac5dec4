"""The trace view: a run's nodes and tool calls with their durations, for its owner only."""

from __future__ import annotations

import json
import re

from tests.conftest import LiveServer, stream_run
from tests.fakes.openai_server import FakeOpenAI


def test_trace_view_shows_each_node_and_tool_call(live: LiveServer, fake_llm: FakeOpenAI) -> None:
    fake_llm.script.extend(
        [
            json.dumps(
                {
                    "steps": [
                        {"description": "Trending Rust repos", "tool": "github_trending"},
                        {"description": "Why Rust", "tool": "none"},
                    ]
                }
            ),
            "rust finding",
            "why finding",
            "Rust is popular.",
        ]
    )
    with live.client() as c:
        tid = c.post("/v1/threads").json()["thread_id"]
        resp, frames = stream_run(c, tid, "Trending Rust repos and why?")
        trace_id = resp.headers["x-trace-id"]
        r = c.get(f"/v1/traces/{trace_id}")
    assert r.status_code == 200, r.text
    body = r.json()
    (run,) = body["runs"]
    assert run["run_id"] == frames[0].data["run_id"]
    assert run["events"] == [f.data for f in frames]
    spans = run["spans"]
    assert spans[0]["kind"] == "run" and spans[0]["status"] == "success"
    nodes = [s["name"] for s in spans if s["kind"] == "node"]
    assert nodes[0] == "planner: planning"
    assert "summarizer: summarizing" in nodes
    assert sum(1 for n in nodes if n.startswith("researcher:")) >= 2
    tools = [s for s in spans if s["kind"] == "tool"]
    assert [(t["name"], t["status"]) for t in tools] == [("github_trending.trending_repos", "ok")]
    assert all(s["duration_ms"] >= 0 for s in spans)
    assert (
        sum(s["duration_ms"] for s in spans if s["kind"] == "node") <= spans[0]["duration_ms"] + 1
    )


def test_trace_of_another_user_is_404(live: LiveServer) -> None:
    with live.client() as c:
        tid = c.post("/v1/threads").json()["thread_id"]
        resp, _ = stream_run(c, tid, "hi")
    trace_id = resp.headers["x-trace-id"]
    with live.client("mallory", "evil") as other:
        r = other.get(f"/v1/traces/{trace_id}")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    with live.client() as c:
        assert c.get("/v1/traces/not-a-trace-id").status_code == 422


def test_trace_page_draws_the_waterfall_from_the_trace_api(live: LiveServer) -> None:
    with live.client() as c:
        page = c.get("/traces/" + "ab" * 16)
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        # The UI's trace page, whose script reads the same JSON the API serves.
        script = re.search(r'src="(/assets/trace-[^"]+\.js)"', page.text)
        assert script, page.text
        assert "/v1/traces/" in c.get(script[1]).text
        assert c.get("/traces/not-a-trace").status_code == 422
