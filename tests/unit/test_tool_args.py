"""Deterministic tool arguments and lock drift messages."""

from __future__ import annotations

import pytest

from tools.lock import drift, server_entry
from tools.servers.calendar.v1.adapter import CalendarV1
from tools.servers.github_trending.v2.adapter import GithubTrendingV2
from tools.servers.github_trending.wording import language_of, period_of


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("Trending Python repos", "python"),
        ("what's hot in Rust this week", "rust"),
        ("popular C++ libraries", "c++"),
        ("top Go projects", "go"),
        ("Is Django good?", "python"),
        ("TypeScript frameworks", "typescript"),
    ],
)
def test_language_is_read_from_the_step(text: str, lang: str) -> None:
    assert language_of(text) == lang


def test_period_and_calendar_tool_follow_the_wording() -> None:
    assert [period_of(t) for t in ["today", "this month", "this week", "lately"]] == [
        "daily",
        "monthly",
        "weekly",
        "weekly",
    ]
    assert CalendarV1().tool_for("Book a meeting with Bob") == "schedule_meeting"
    assert CalendarV1().tool_for("Am I free tomorrow?") == "list_events"
    assert GithubTrendingV2().tool_for("book") is None


def test_drift_names_the_changed_added_and_removed_tools() -> None:
    old = server_entry("s", "1.0.0", {"a": {"x": 1}, "b": {"y": 1}})
    new = server_entry("s", "1.0.0", {"a": {"x": 2}, "c": {"z": 1}})
    msg = drift("s-v1", old, new)
    assert msg is not None
    assert "tool 'c' added" in msg and "tool 'b' removed" in msg
    assert "tool 'a' schema changed" in msg
    assert drift("s-v1", old, old) is None
    assert "not in tools.lock" in (drift("s-v1", None, new) or "")
    bumped = server_entry("s", "1.1.0", {"a": {"x": 1}, "b": {"y": 1}})
    assert "pins version 1.0.0" in (drift("s-v1", old, bumped) or "")
