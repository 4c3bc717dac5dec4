"""`/metrics` counts what the event log records: runs, tools, tokens, errors, warnings, streams."""

from __future__ import annotations

import json

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import LiveServer, stream_run
from tests.fakes.openai_server import FakeOpenAI


def _scrape(live: LiveServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with live.client() as c:
        r = c.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(r.text)
        for s in fam.samples
    }


def _delta(before: dict, after: dict, name: str, **labels: str) -> float:  # type: ignore[type-arg]
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


def test_a_run_with_a_tool_call_and_a_degradation_is_counted(
    live: LiveServer, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script.extend(
        [
            json.dumps(
                {
                    "steps": [
                        {"description": "Trending Rust repos", "tool": "github_trending"},
                        {"description": "Plot it", "tool": "python_exec"},
                    ]
                }
            ),
            "rust finding",
            "plot finding",
            "Done.",
        ]
    )
    before = _scrape(live)
    with live.client() as c:
        tid = c.post("/v1/threads").json()["thread_id"]
        _, frames = stream_run(c, tid, "Trending Rust repos, plotted")
    after = _scrape(live)
    types = [f.data["type"] for f in frames]
    assert (
        _delta(before, after, "keel_runs_total", agent="research", variant="", status="success")
        == 1
    )
    assert _delta(before, after, "keel_events_total", type="text_delta") == types.count(
        "text_delta"
    )
    assert _delta(before, after, "keel_events_total", type="run_finished") == 1
    assert (
        _delta(
            before,
            after,
            "keel_tool_calls_total",
            server="github_trending",
            version="2.0.0",
            outcome="ok",
        )
        == 1
    )
    # No exec:code scope: the python_exec step ends in a tool_error, counted by its code.
    codes = [f.data["data"]["code"] for f in frames if f.data["type"] == "tool_error"]
    assert len(codes) == 1
    assert _delta(before, after, "keel_errors_total", code=codes[0]) == 1
    usage = frames[-1].data["data"]["usage"]
    assert _delta(before, after, "keel_llm_tokens_total", kind="output") == usage["output_tokens"]
    assert (
        _delta(before, after, "keel_run_duration_seconds_count", variant="", status="success") == 1
    )
    assert after[("keel_open_streams", ())] == 0


def test_model_errors_are_counted_by_code(live: LiveServer, fake_llm: FakeOpenAI) -> None:
    fake_llm.script.extend(["!status 500"] * 2)
    before = _scrape(live)
    with live.client() as c:
        tid = c.post("/v1/threads").json()["thread_id"]
        stream_run(c, tid, "hi")
    after = _scrape(live)
    assert _delta(before, after, "keel_errors_total", code="model_error") == 1
    assert (
        _delta(before, after, "keel_runs_total", agent="research", variant="", status="error") == 1
    )
