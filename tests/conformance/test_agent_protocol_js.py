"""The Agent Protocol through the official JS client, ``@langchain/langgraph-sdk`` (pinned in
``tests/conformance/js/package.json``, installed by ``make test``), on Node, against Keel.

``js/protocol.mjs`` drives one session (an interrupt resumed by a Command, assistants,
threads, a streamed run in four modes, a resume after ``Last-Event-ID``, wait, background and
join, state, history, the store, another tenant and no token) and prints what it saw.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from tests.conformance.conftest import WRITE
from tests.conftest import LiveServer
from tests.fakes.openai_server import DEFAULT_ANSWER, FakeOpenAI

JS = Path(__file__).parent / "js"


def test_the_js_client_works_against_keel(keel: LiveServer, fake_llm: FakeOpenAI) -> None:
    node = shutil.which("node")
    assert node, "Node.js 20+ is needed for the JS client suite"
    assert (JS / "node_modules" / "@langchain" / "langgraph-sdk").is_dir(), (
        "run `make test` (or `npm ci` in tests/conformance/js) to install the JS client"
    )
    fake_llm.script.extend(
        [
            json.dumps({"steps": [{"description": "Schedule js sync", "tool": "calendar"}]}),
            json.dumps({"title": "js sync", "starts_at": "2026-12-01T09:00:00+00:00"}),
        ]
    )
    env = {
        **os.environ,
        "KEEL_URL": keel.url,
        "KEEL_TOKEN": keel.token("alice", "acme", scopes=WRITE),
        "KEEL_OTHER_TOKEN": keel.token("mallory", "evil", scopes=WRITE),
    }
    done = subprocess.run(
        [node, "protocol.mjs"], cwd=JS, env=env, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == {
        "interruptTool": ["calendar.schedule_meeting"],
        "threadStatus": "interrupted",
        "resumedAnswer": DEFAULT_ANSWER,
        "assistants": sorted(keel.settings.agents),
        "updated": {"sdk": "js", "n": 1},
        "searched": [True],
        "events": ["metadata", "custom", "messages", "updates", "values"],
        "tokens": DEFAULT_ANSWER,
        "answer": DEFAULT_ANSWER,
        "answerIdMatches": True,
        "updates": ["memory_router", "planner", "researcher", "summarizer", "remember"],
        "customIdsAreSeqs": True,
        "resumedSeqs": seen["expectedSeqs"],
        "expectedSeqs": seen["expectedSeqs"],
        "waitedMessages": 4,
        "joined": 6,
        "runStatuses": ["success", "success", "success"],
        "state": 6,
        "history": 3,
        "otherTenant": 404,
        "otherRun": 404,
        "noToken": 401,
        "storePut": 200,
        "storeGet": {"value": "sdk"},
        "otherStore": 404,
    }
    assert len(seen["expectedSeqs"]) >= 5
