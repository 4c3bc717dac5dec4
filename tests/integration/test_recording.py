"""Record a run through the API, then replay the graph against the recording."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from api.recording import INVALID_PLAN
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
    from api.recording import model_outputs

    rec = {"message": "q", "model_outputs": model_outputs(events), "events": events}
    tampered = [dict(e) for e in events]
    step = next(e for e in tampered if e["type"] == "step_result")
    step["data"] = {**step["data"], "text": "something else"}
    assert normalise(await replay(rec)) != normalise(tampered)
