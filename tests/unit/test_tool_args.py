"""Deterministic tool arguments and lock drift messages."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from tools.lock import drift, server_entry
from tools.servers.calendar.v1.adapter import _TITLE as TITLE
from tools.servers.calendar.v1.adapter import CalendarV1, when_of, window_of
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


def test_a_follow_up_keeps_the_language_and_period_the_user_named_before() -> None:
    earlier = (
        "Recent turns:\nUser: Which Go repositories are trending this month?\n"
        "Assistant: 1. a/b (Rust bindings for Go) 2. c/d\nUser: And the Rust ones today?"
    )
    assert language_of("Which of them has the fewest stars?", earlier) == "rust"
    assert period_of("Which of them has the fewest stars?", earlier) == "daily"
    assert language_of("Which of them?", earlier.rsplit("\n", 1)[0]) == "go"
    assert period_of("Which of them?", earlier.rsplit("\n", 1)[0]) == "monthly"
    assert language_of("Top TypeScript repos this week", earlier) == "typescript"
    assert period_of("Top TypeScript repos this week", earlier) == "weekly"


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


NOW = datetime(2026, 12, 3, 10, 0, tzinfo=ZoneInfo("Europe/Lisbon"))  # a Thursday


@pytest.mark.parametrize(
    ("text", "when", "title"),
    [
        (
            "Book a 30 minute meeting called Roadmap Review tomorrow at 3pm",
            "2026-12-04T15:00",
            "Roadmap Review",
        ),
        (
            "Schedule 'Design review' on Friday at 10:00 for 45 minutes",
            "2026-12-04T10:00",
            "Design review",
        ),
        ("Book a meeting titled Budget sync next Monday 9am", "2026-12-07T09:00", "Budget sync"),
        ("Set up a call with Bob", None, None),
        ("Book 'Retro' the day after tomorrow at 11:00", "2026-12-05T11:00", "Retro"),
    ],
)
def test_meeting_time_and_title_are_read_from_the_words(
    text: str, when: str | None, title: str | None
) -> None:
    found = when_of(text, NOW)
    assert (found.isoformat()[:16] if found else None) == when
    assert found is None or str(found.tzinfo) == "Europe/Lisbon"
    named = TITLE.search(text)
    assert ((named["t"] or named["q"]) if named else None) == title


def test_listing_window_follows_the_words() -> None:
    assert window_of("What's on my calendar tomorrow?", NOW) == {
        "start": "2026-12-04T00:00:00+00:00",
        "days": 1,
    }
    assert window_of("Any events the day after tomorrow?", NOW) == {
        "start": "2026-12-05T00:00:00+00:00",
        "days": 1,
    }
    assert window_of("Anything next week?", NOW)["start"].startswith("2026-12-07")
    assert window_of("my next 3 days", NOW)["days"] == 3
    assert window_of("When is the planning meeting?", NOW)["days"] == 31


def test_an_explicit_zone_in_the_words_is_converted() -> None:
    berlin = NOW.astimezone(ZoneInfo("Europe/Berlin"))
    found = when_of("Book it tomorrow at 11:00 UTC", berlin)
    assert found is not None and found.isoformat() == "2026-12-04T12:00:00+01:00"
