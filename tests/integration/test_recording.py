"""Record a run through the API, then replay the graph against the recording."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from runs.recording import INVALID_PLAN
from tests.conftest import LiveServer, stream_run
from tests.fakes.openai_server import FakeOpenAI
from tests.recorded import load, normalise, replay


@pytest.mark.asyncio
@pytest.mark.parametrize("plan", ["two steps", "invalid"])
async def test_record_then_replay_reproduces_the_events(
    live: LiveServer, fake_llm: FakeOpenAI, tmp_path: Path, plan: str
) -> None:
    with live.client() as c:
        tid = c.post("/v1/threads").json()["thread_id"]
        stream_run(c, tid, "an earlier turn")
    if plan == "invalid":
        fake_llm.script.extend(["nonsense", "only finding", "the answer, streamed"])
    else:
        fake_llm.script.extend(
            [
                json.dumps(
                    {
                        "steps": [
                            {"description": "a", "tool": "none"},
                            {"description": "b", "tool": "none"},
                        ]
                    }
                ),
                "finding a",
                "finding b",
                "the answer, streamed in pieces",
            ]
        )
    with live.client() as c:
        _, frames = stream_run(c, tid, "the question")
    out = tmp_path / "run.json"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "api.cli",
            "record",
            tid,
            "-o",
            str(out),
            "--url",
            live.url,
            "--user",
            "alice",
            "--tenant",
            "acme",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    rec = load(out)
    assert rec["run_id"] == frames[0].data["run_id"]
    assert rec["events"] == [f.data for f in frames]
    assert (INVALID_PLAN in rec["model_outputs"]) == (plan == "invalid")
    replayed = await replay(rec)
    assert normalise(replayed) == normalise(rec["events"])


@pytest.mark.asyncio
async def test_replay_catches_a_changed_graph(live: LiveServer, fake_llm: FakeOpenAI) -> None:
    with live.client() as c:
        tid = c.post("/v1/threads").json()["thread_id"]
        _, frames = stream_run(c, tid, "q")
    events = [f.data for f in frames]
    from runs.recording import model_outputs

    rec = {"message": "q", "model_outputs": model_outputs(events), "events": events}
    tampered = [dict(e) for e in events]
    step = next(e for e in tampered if e["type"] == "step_result")
    step["data"] = {**step["data"], "text": "something else"}
    assert normalise(await replay(rec)) != normalise(tampered)


@pytest.mark.asyncio
async def test_record_then_replay_a_run_with_tools_and_a_repair(
    live: LiveServer, fake_llm: FakeOpenAI, tmp_path: Path
) -> None:
    fake_llm.script.extend(
        [
            json.dumps(
                {
                    "steps": [
                        {"description": "Trending Python repositories", "tool": "github_trending"},
                        {"description": "Book a review after coffee", "tool": "calendar"},
                    ]
                }
            ),
            "transformers leads.",
            json.dumps({"title": "Review", "starts_at": "after coffee", "duration_min": 30}),
            json.dumps({"title": "Review", "starts_at": "2026-11-24T10:00:00+00:00"}),
            "Booked at ten.",
            "Trending: transformers; review booked.",
        ]
    )
    token = live.token("alice", "acme", scopes=["write:calendar"])
    with live.client() as c:
        c.headers["Authorization"] = f"Bearer {token}"
        tid = c.post("/v1/threads").json()["thread_id"]
        _, frames = stream_run(c, tid, "Trending Python repos, and book a review after coffee")
    kinds = [f.data["type"] for f in frames]
    assert kinds.count("tool_result") == 2 and kinds.count("repair") == 1
    out = tmp_path / "tools.json"
    subprocess.run(
        [sys.executable, "-m", "api.cli", "record", tid, "-o", str(out), "--url", live.url]
        + ["--user", "alice", "--tenant", "acme"],
        check=True,
        capture_output=True,
        text=True,
    )
    rec = load(out)
    assert [t["tool_name"] for t in rec["tool_outputs"]] == [
        "github_trending.trending_repos",
        "calendar.schedule_meeting",
    ]
    assert {(t["qualified_name"], t["version"]) for t in rec["tools"]} == {
        ("github_trending.trending_repos", "2.0.0"),
        ("calendar.schedule_meeting", "1.0.0"),
    }
    assert len(rec["model_outputs"]) == 6
    assert normalise(await replay(rec)) == normalise(rec["events"])
    # A graph that calls its tools differently no longer matches the recording.
    rec["tool_outputs"][0]["result"] = {"source": "snapshot", "repos": []}
    assert normalise(await replay(rec)) != normalise(rec["events"])
