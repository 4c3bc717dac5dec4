"""`langgraph dev` serves the graph registered in langgraph.json (LangGraph Studio's server)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from core.db import free_port
from core.settings import ROOT
from tests.fakes.openai_server import FakeOpenAI

pytestmark = pytest.mark.studio


@pytest.fixture(scope="module")
def studio(fake_llm: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`langgraph dev` on the project's langgraph.json, run from a scratch directory."""
    work = tmp_path_factory.mktemp("studio")
    config = json.loads((ROOT / "langgraph.json").read_text())
    config["graphs"] = {k: str(ROOT / v.removeprefix("./")) for k, v in config["graphs"].items()}
    config["dependencies"] = [str(ROOT)]
    (work / "langgraph.json").write_text(json.dumps(config))
    port = free_port()
    env = {
        **os.environ,
        "LANGGRAPH_CLI_NO_ANALYTICS": "1",
        "LANGGRAPH_NO_VERSION_CHECK": "1",
        "KEEL_LLM__PROVIDER": "openai",
        "KEEL_LLM__BASE_URL": fake_llm.base_url,
    }
    log = (work / "studio.log").open("wb")
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "langgraph"),
            "dev",
            "--port",
            str(port),
            "--no-browser",
            "--no-reload",
        ],
        cwd=work,
        env=env,
        stdout=log,
        stderr=log,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (work / "studio.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "langgraph dev did not start"
            try:
                if httpx.get(f"{url}/ok", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def test_studio_lists_the_research_graph(studio: str) -> None:
    assistants = httpx.post(f"{studio}/assistants/search", json={}, timeout=30).json()
    assert [a["graph_id"] for a in assistants] == ["research"]


def test_studio_runs_the_graph(studio: str, fake_llm: FakeOpenAI) -> None:
    fake_llm.script.extend(
        [
            json.dumps({"steps": [{"description": "look it up", "tool": "none"}]}),
            "Paris is the capital.",
            "The capital of France is Paris.",
        ]
    )
    r = httpx.post(
        f"{studio}/runs/wait",
        timeout=60,
        json={
            "assistant_id": "research",
            "input": {"messages": [{"role": "user", "content": "Capital of France?"}]},
        },
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["messages"][-1]["content"] == "The capital of France is Paris."
    assert out["plan"] == [{"description": "look it up", "tool": "none"}]
