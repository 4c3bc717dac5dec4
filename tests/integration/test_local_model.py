"""End to end on the real packaged local model: llama.cpp server, ChatOpenAI, Postgres, SSE."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from core.settings import Settings
from graphs.llm import LocalModelServer, gguf_path, verify_sha256
from tests.conftest import LiveServer, make_settings, stream_run

pytestmark = pytest.mark.local_llm


@pytest.fixture(scope="module")
def local_live(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp("local")
    settings = Settings()
    local = settings.llm.local
    server = LocalModelServer(local, settings.data_dir / "models", tmp / "llm.log")
    base_url = server.start()
    try:
        settings = make_settings(db_url, base_url, tmp)
        settings = settings.model_copy(
            update={"llm": settings.llm.model_copy(update={"provider": "local", "local": local})}
        )
        with LiveServer(settings) as live:
            yield live
    finally:
        server.stop()


def test_packaged_model_matches_its_pin() -> None:
    settings = Settings()
    local = settings.llm.local
    assert local.sha256, "the packaged model must be pinned by sha256"
    verify_sha256(gguf_path(local, settings.data_dir / "models"), local.sha256)


def test_a_tampered_model_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"GGUF not really")
    with pytest.raises(Exception, match="does not match the pin"):
        verify_sha256(fake, "0" * 64)


def test_run_on_the_local_model(local_live: LiveServer) -> None:
    with local_live.client() as c:
        thread_id = c.post("/v1/threads").json()["thread_id"]
        resp, frames = stream_run(c, thread_id, "Why is the sky blue? Answer briefly.")
        checks = c.get("/readyz").json()["checks"]
        assert {"postgres", "llm", "quota_store", "tools"} <= checks.keys()
        assert set(checks.values()) == {"ok"}
    types = [f.data["type"] for f in frames]
    assert types[0] == "run_started"
    assert types[-1] == "run_finished"
    assert frames[-1].data["data"]["status"] == "success", frames[-3:]
    assert "plan" in types and "step_result" in types
    answer = "".join(f.data["data"]["text"] for f in frames if f.data["type"] == "text_delta")
    assert len(answer.strip()) > 0
    assert frames[-1].data["data"]["usage"]["output_tokens"] > 0
    assert {f.data["trace_id"] for f in frames} == {resp.headers["x-trace-id"]}
    assert [f.data["seq"] for f in frames] == list(range(1, len(frames) + 1))


def test_model_server_dies_with_its_parent(tmp_path: Path) -> None:
    """Regression: a `keel serve` killed with SIGKILL left its llama.cpp server running."""
    import os
    import signal
    import subprocess
    import sys
    import time

    script = (
        "from core.settings import Settings; from graphs.llm import LocalModelServer;"
        "import pathlib, sys, time; s = Settings();"
        "srv = LocalModelServer(s.llm.local, s.data_dir / 'models', pathlib.Path(sys.argv[1]));"
        "srv.start(); print(srv.proc.pid, flush=True); time.sleep(600)"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path / "llm.log")], stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    with parent.stdout:
        child = int(parent.stdout.readline())
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        with open(f"/proc/{child}/stat") as f:
            if f.read().split()[2] == "Z":
                return
        time.sleep(0.1)
    os.kill(child, signal.SIGKILL)
    raise AssertionError("the model server outlived its parent")


@pytest.mark.parametrize(
    ("agent", "version"), [("research", "2.0.0"), ("research_legacy", "1.0.0")]
)
def test_local_model_plans_github_trending_and_each_agent_calls_its_pinned_version(
    local_live: LiveServer, agent: str, version: str
) -> None:
    with local_live.client() as c:
        thread_id = c.post("/v1/threads").json()["thread_id"]
        _, frames = stream_run(
            c,
            thread_id,
            "Are there any trending TypeScript frameworks on GitHub this month?",
            agent=agent,
        )
    calls = [f.data["data"] for f in frames if f.data["type"] == "tool_call"]
    assert [(d["server"], d["version"]) for d in calls] == [("github_trending", version)]
    results = [f.data["data"] for f in frames if f.data["type"] == "tool_result"]
    assert [d["version"] for d in results] == [version]
    assert frames[-1].data["data"]["status"] == "success"
    answer = "".join(f.data["data"]["text"] for f in frames if f.data["type"] == "text_delta")
    assert answer.strip()
