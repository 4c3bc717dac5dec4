"""Repair and degradation in real runs: real MCP servers, Postgres, the scripted model server.

Covers: a relative date repaired by rules, an argument only the model can fix, an unfixable
one (structured tool_error, the run still finishes), a rate-limited tool answered from the
cache with a warning, the circuit breaker keeping calls off a failing server until its
cool-down, and the model timing out (fallback model, or a plain request to rephrase).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.identity import Identity
from core.settings import FallbackModelSettings
from tests.conftest import LiveServer, make_settings, stream_run, tool_invocations
from tests.fakes.openai_server import FakeOpenAI
from tests.sse import Frame
from tools.errors import CircuitOpen, ToolRateLimited
from tools.gateway import Requester, ToolGateway

FALLBACKS = {"github-v2": {"on": ["rate_limited", "timeout"], "use": "cache", "max_age": "1d"}}


@pytest.fixture(scope="module")
def live(
    db_url: str, fake_llm: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """The API with a cache fallback for github-v2."""
    settings = make_settings(
        db_url, fake_llm.base_url, tmp_path_factory.mktemp("keel"), fallbacks=FALLBACKS
    )
    with LiveServer(settings) as server:
        yield server


def _plan(tool: str, description: str) -> str:
    return json.dumps({"steps": [{"description": description, "tool": tool}]})


def _run(live: LiveServer, message: str, scopes: list[str], **token: Any) -> list[Frame]:
    auth = {"Authorization": f"Bearer {live.token('alice', 'acme', scopes=scopes, **token)}"}
    with httpx.Client(base_url=live.url, timeout=120, headers=auth) as c:
        thread = c.post("/v1/threads").json()["thread_id"]
        resp, frames = stream_run(c, thread, message)
    assert resp.status_code == 200
    return frames


def _data(frames: list[Frame], type_: str) -> list[dict[str, Any]]:
    return [f.data["data"] for f in frames if f.data["type"] == type_]


def _invocations(settings: Any, pin: str) -> int:
    return len(tool_invocations(Path(settings.data_dir), pin))


def _meeting(starts_at: str) -> str:
    return json.dumps({"title": "Sync", "starts_at": starts_at, "duration_min": 30})


def test_relative_meeting_time_is_repaired_by_rules_in_the_users_zone(
    live: LiveServer, fake_llm: FakeOpenAI
) -> None:
    # The words name no time the calendar adapter can read, so the model writes "tomorrow 3pm".
    fake_llm.script.extend(
        [_plan("calendar", "Schedule the sync we agreed"), _meeting("tomorrow 3pm"), "Booked."]
    )
    frames = _run(live, "Book the sync we agreed on", ["write:calendar"], tz="Asia/Shanghai")
    [repair] = _data(frames, "repair")
    assert (repair["method"], repair["changes"], repair["valid"]) == (
        "deterministic",
        ["datetime starts_at"],
        True,
    )
    assert repair["before"]["starts_at"] == "tomorrow 3pm"
    booked = repair["after"]["starts_at"]
    assert booked.endswith("T15:00:00+08:00")
    [call] = _data(frames, "tool_call")
    assert call["args"]["starts_at"] == booked and call["call_id"] == repair["call_id"]
    [result] = _data(frames, "tool_result")
    assert result["result"]["created"] is True
    assert frames[-1].data["data"]["status"] == "success"


def test_an_argument_only_the_model_can_fix_is_repaired_by_the_model(
    live: LiveServer, fake_llm: FakeOpenAI
) -> None:
    fixed = "2026-11-24T09:30:00+00:00"
    fake_llm.script.extend(
        [
            _plan("calendar", "Book the standup right after coffee"),
            _meeting("right after the usual coffee"),
            json.dumps({"title": "Sync", "starts_at": fixed, "duration_min": 30}),
            "Booked.",
        ]
    )
    frames = _run(live, "Book the standup right after coffee", ["write:calendar"])
    [repair] = _data(frames, "repair")
    assert (repair["method"], repair["valid"], repair["after"]["starts_at"]) == ("llm", True, fixed)
    # The model was shown the exact validation error and the tool's schema.
    repair_prompt = fake_llm.requests[2]["messages"][0]["content"]
    assert "starts_at: Input should be a valid datetime" in repair_prompt
    assert '"format": "date-time"' in repair_prompt
    assert _data(frames, "tool_call")[0]["args"]["starts_at"] == fixed
    assert frames[-1].data["data"]["status"] == "success"


def test_unfixable_arguments_give_a_structured_tool_error_and_the_run_finishes(
    live: LiveServer, fake_llm: FakeOpenAI
) -> None:
    still_bad = json.dumps({"title": "Sync", "starts_at": "whenever suits"})
    fake_llm.script.extend(
        [
            _plan("calendar", "Book a sync whenever"),
            _meeting("whenever"),
            still_bad,
            still_bad,
            "I could not book it.",
        ]
    )
    before = _invocations(live.settings, "calendar-v1")
    frames = _run(live, "Book a sync whenever", ["write:calendar"])
    [error] = _data(frames, "tool_error")
    assert error["code"] == "invalid_arguments"
    assert error["error"].startswith("starts_at: Input should be a valid datetime")
    assert error["expected"] == "ISO 8601 date-time with offset, e.g. 2026-11-24T15:00:00+08:00"
    assert error["hint"].startswith("give starts_at as")
    assert [(r["method"], r["valid"]) for r in _data(frames, "repair")] == [
        ("llm", False),
        ("llm", False),
    ]
    assert _data(frames, "tool_call") == []
    assert _invocations(live.settings, "calendar-v1") == before
    # The researcher's model was told the call was not made.
    assert "not called" in fake_llm.requests[4]["messages"][-1]["content"]
    assert frames[-1].data["data"]["status"] == "success"


def test_rate_limited_github_answers_from_cache_with_a_warning(
    live: LiveServer, fake_llm: FakeOpenAI
) -> None:
    ask = [_plan("github_trending", "Trending Go repositories this week"), "Go repos.", "Go."]
    fake_llm.script.extend(ask)
    fresh = _run(live, "Trending Go repos?", [])
    [live_result] = _data(fresh, "tool_result")
    assert live_result["cached_at"] is None
    ToolGateway(live.settings).inject_fault("github-v2", "rate_limited")
    try:
        fake_llm.script.extend(ask)
        frames = _run(live, "Trending Go repos?", [])
    finally:
        ToolGateway(live.settings).inject_fault("github-v2", None)
    [error] = _data(frames, "tool_error")
    assert error["code"] == "rate_limited"
    [warning] = _data(frames, "warning")
    assert warning["code"] == "tool_cached"
    assert warning["message"].startswith("github_trending 2.0.0 is failing (rate_limited)")
    [cached] = _data(frames, "tool_result")
    assert cached["cached_at"] is not None
    assert cached["result"] == live_result["result"]
    answer = "".join(d["text"] for d in _data(frames, "text_delta"))
    assert "Degraded sources: github_trending 2.0.0: cached" in answer
    assert frames[-1].data["data"]["status"] == "success"


@pytest.mark.asyncio
async def test_open_breaker_keeps_calls_off_the_server_until_the_cool_down(
    db_url: str, tmp_path: Path
) -> None:
    settings = make_settings(
        db_url,
        "http://127.0.0.1:9/v1",
        tmp_path,
        agents={"research": {"tools": ["github-v2"]}, "research_legacy": {"tools": []}},
        tools={"breaker": {"threshold": 2, "cooldown_s": 1.0}, "retry": {"attempts": 1}},
    )
    alice = Identity("alice", "acme")
    async with ToolGateway(settings) as gw:
        spec = gw.resolve("research", "github_trending")
        args = {"language": "go", "since": "weekly", "limit": 3}
        gw.inject_fault("github-v2", "rate_limited")
        for _ in range(2):
            with pytest.raises(ToolRateLimited):
                await gw.call(spec, args, caller=Requester(alice))
        assert _invocations(settings, "github-v2") == 2
        for _ in range(3):
            with pytest.raises(CircuitOpen):
                await gw.call(spec, args, caller=Requester(alice))
        assert _invocations(settings, "github-v2") == 2
        gw.inject_fault("github-v2", None)
        await asyncio.sleep(1.2)
        # Half-open: one trial call reaches the server; its success closes the circuit.
        assert (await gw.call(spec, args, caller=Requester(alice))).result["language"] == "go"
        assert (await gw.call(spec, args, caller=Requester(alice))).result["language"] == "go"
        assert _invocations(settings, "github-v2") == 4


@pytest.fixture
def backup_llm() -> Iterator[FakeOpenAI]:
    """A second model server, the fallback."""
    server = FakeOpenAI()
    server.start()
    yield server
    server.stop()


def test_llm_timeout_is_answered_by_the_fallback_model(
    db_url: str, fake_llm: FakeOpenAI, backup_llm: FakeOpenAI, tmp_path: Path
) -> None:
    settings = make_settings(db_url, fake_llm.base_url, tmp_path, faults={"llm": "timeout"})
    backup = FallbackModelSettings(base_url=backup_llm.base_url, model="backup")
    llm = settings.llm.model_copy(update={"fallback": backup, "timeout_s": 0.5})
    with LiveServer(settings.model_copy(update={"llm": llm})) as live:
        frames = _run(live, "What is the answer?", [])
    warnings = _data(frames, "warning")
    assert {w["code"] for w in warnings} == {"llm_fallback"}
    assert "fallback model (backup)" in warnings[0]["message"]
    # Plan, step and answer all came from the fallback; the main model never answered.
    assert [r["model"] for r in backup_llm.requests] == ["backup"] * 3
    assert fake_llm.requests == []
    answer = "".join(d["text"] for d in _data(frames, "text_delta"))
    assert answer == "The answer is 42."
    assert frames[-1].data["data"]["status"] == "success"


def test_llm_timeout_without_fallback_ends_with_a_plain_request_to_rephrase(
    db_url: str, fake_llm: FakeOpenAI, tmp_path: Path
) -> None:
    settings = make_settings(db_url, fake_llm.base_url, tmp_path, faults={"llm": "timeout"})
    llm = settings.llm.model_copy(update={"timeout_s": 0.5})
    with LiveServer(settings.model_copy(update={"llm": llm})) as live:
        frames = _run(live, "What is the answer?", [])
    kinds = [(f.data["type"], f.data["data"].get("status")) for f in frames]
    assert kinds[-3:] == [("agent_status", "error"), ("error", None), ("run_finished", "error")]
    [error] = _data(frames, "error")
    assert error["code"] == "model_error"
    assert "try again in a moment, or rephrase your question" in error["message"]
