"""Tool argument validation and repair: the schema model, the rules, the model's turn, the error."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from tools.validation import ArgumentsInvalid, args_model, validate, validate_and_repair

# The schemas FastMCP publishes for calendar.schedule_meeting and github_trending v2.
MEETING: dict[str, Any] = {
    "type": "object",
    "required": ["title", "starts_at"],
    "properties": {
        "title": {"type": "string", "minLength": 1, "maxLength": 200},
        "starts_at": {"type": "string", "format": "date-time"},
        "duration_min": {"type": "integer", "minimum": 5, "maximum": 480, "default": 30},
        "attendees": {
            "anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "null"}],
            "default": None,
        },
        "idempotency_key": {
            "anyOf": [{"type": "string", "minLength": 8, "maxLength": 128}, {"type": "null"}],
            "default": None,
        },
    },
}
TRENDING: dict[str, Any] = {
    "type": "object",
    "required": ["language"],
    "properties": {
        "language": {"type": "string"},
        "since": {"type": "string", "enum": ["daily", "weekly", "monthly"], "default": "weekly"},
        "limit": {"type": "integer", "minimum": 1, "maximum": 25, "default": 5},
    },
}
# 2026-11-23 20:00 UTC is 2026-11-24 04:00 in Shanghai: "tomorrow" there is the 25th.
NOW = datetime(2026, 11, 23, 5, 0, tzinfo=UTC)


def test_the_model_is_strict_and_forbids_unknown_keys() -> None:
    assert validate(MEETING, {"title": "Sync", "starts_at": "2026-11-24T15:00:00+08:00"}) == []
    errors = validate(MEETING, {"title": "Sync", "date": "tomorrow", "duration_min": "30"})
    kinds = {(str(e["loc"][0]), e["type"]) for e in errors}
    assert kinds == {
        ("starts_at", "missing"),
        ("date", "extra_forbidden"),
        ("duration_min", "int_type"),
    }
    # A naive date-time lacks the offset the tool needs to book the right hour.
    assert validate(MEETING, {"title": "Sync", "starts_at": "2026-11-24T15:00:00"}) != []
    fields = args_model(TRENDING).model_fields
    assert {f.alias for f in fields.values()} == {"language", "since", "limit"}


@pytest.mark.asyncio
async def test_tomorrow_for_schedule_meeting_is_repaired_by_rules_in_the_users_zone() -> None:
    out = await validate_and_repair(
        MEETING, {"title": "Sync", "date": "tomorrow 3pm"}, tz="Asia/Shanghai", now=NOW
    )
    assert out.args == {"title": "Sync", "starts_at": "2026-11-24T15:00:00+08:00"}
    [step] = out.repairs
    assert step.method == "deterministic"
    assert step.before == {"title": "Sync", "date": "tomorrow 3pm"}
    assert step.changes == ("rename date -> starts_at", "datetime starts_at")
    assert step.valid


@pytest.mark.asyncio
async def test_rules_coerce_match_enums_convert_units_and_clamp() -> None:
    out = await validate_and_repair(
        TRENDING, {"language": "rust", "since": "Monthly", "limit": "100"}, tz="UTC", now=NOW
    )
    assert out.args == {"language": "rust", "since": "monthly", "limit": 25}
    meeting = await validate_and_repair(
        MEETING,
        {"title": "Sync", "starts_at": "2026-11-24T15:00:00", "duration_min": "1.5h"},
        tz="Europe/Paris",
        now=NOW,
    )
    assert meeting.args["starts_at"] == "2026-11-24T15:00:00+01:00"
    assert meeting.args["duration_min"] == 90


@pytest.mark.asyncio
async def test_what_rules_cannot_fix_goes_to_the_model_with_the_exact_error() -> None:
    seen: list[tuple[dict[str, Any], str]] = []

    async def model(
        schema: dict[str, Any], args: dict[str, Any], error: str
    ) -> dict[str, Any] | None:
        seen.append((args, error))
        return {**args, "starts_at": "2026-11-24T09:30:00+00:00"}

    out = await validate_and_repair(
        MEETING,
        {
            "title": "Standup",
            "starts_at": "right after the usual coffee",
            "idempotency_key": "k" * 8,
        },
        tz="UTC",
        now=NOW,
        llm=model,
        keep=frozenset({"idempotency_key"}),
    )
    assert out.args["starts_at"] == "2026-11-24T09:30:00+00:00"
    assert out.args["idempotency_key"] == "k" * 8
    assert [r.method for r in out.repairs] == ["llm"]
    # The model saw the exact validation error, and never the key Keel sets itself.
    assert seen[0][1].startswith("starts_at: Input should be a valid datetime")
    assert "idempotency_key" not in seen[0][0]


@pytest.mark.asyncio
async def test_unfixable_arguments_raise_a_structured_error_after_two_model_tries() -> None:
    calls = 0

    async def model(
        schema: dict[str, Any], args: dict[str, Any], error: str
    ) -> dict[str, Any] | None:
        nonlocal calls
        calls += 1
        return {"title": "Sync", "starts_at": "still not a date"}

    with pytest.raises(ArgumentsInvalid) as info:
        await validate_and_repair(
            MEETING, {"title": "Sync", "starts_at": "whenever"}, tz="UTC", now=NOW, llm=model
        )
    err = info.value
    assert calls == 2
    assert err.code == "invalid_arguments"
    assert err.expected == "ISO 8601 date-time with offset, e.g. 2026-11-24T15:00:00+08:00"
    assert err.hint is not None and err.hint.startswith("give starts_at as ISO 8601")
    assert [(r.method, r.valid) for r in err.repairs] == [("llm", False), ("llm", False)]


@pytest.mark.asyncio
async def test_date_tomorrow_alone_becomes_starts_at_tomorrow_in_the_users_zone() -> None:
    out = await validate_and_repair(
        MEETING, {"title": "Sync", "date": "tomorrow"}, tz="Asia/Shanghai", now=NOW
    )
    # 05:00 UTC is 13:00 in Shanghai: tomorrow at the same time, with the +08:00 offset.
    assert out.args == {"title": "Sync", "starts_at": "2026-11-24T13:00:00+08:00"}
    assert [r.method for r in out.repairs] == ["deterministic"]
