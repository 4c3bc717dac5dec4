"""The event envelope v1: one discriminated union, strict about shape."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from core.events import EVENT_ADAPTER, EVENT_TYPES, NodeEvent, envelope, events_json_schema, now

IDS = {"seq": 1, "thread_id": "t", "run_id": "r", "trace_id": "a" * 32, "ts": now()}
SAMPLES: dict[str, dict[str, Any]] = {
    "run_started": {"agent": "research", "message": "hi"},
    "agent_status": {"status": "calling_tool", "tool_name": "documents"},
    "text_delta": {"text": "x"},
    "plan": {"steps": [{"description": "d", "tool": "none"}]},
    "step_result": {"index": 0, "description": "d", "text": "t"},
    "tool_call": {"call_id": "c", "tool_name": "x", "args": {"a": 1}},
    "tool_result": {"call_id": "c", "tool_name": "x", "result": [1, 2]},
    "tool_error": {"tool_name": "x", "error": "Invalid date format", "expected": "YYYY-MM-DD"},
    "confirmation_required": {
        "confirmation_id": "c",
        "call_id": "c",
        "tool_name": "calendar.schedule_meeting",
        "server": "calendar",
        "version": "1.0.0",
        "args": {"title": "t"},
    },
    "confirmation_decided": {
        "confirmation_id": "c",
        "tool_name": "calendar.schedule_meeting",
        "approve": False,
        "user_id": "alice",
    },
    "repair": {"tool_name": "x", "before": {"a": "1"}, "after": {"a": 1}, "method": "coerce"},
    "warning": {"code": "degraded_to_cache", "message": "m"},
    "code_block": {"language": "python", "code": "print(1)"},
    "image_generated": {"url": "/a.png", "alt": "chart"},
    "table": {"columns": ["a"], "rows": [[1]]},
    "memory": {"store": "session", "op": "read", "hits": 2},
    "error": {"code": "model_error", "message": "m"},
    "run_finished": {"status": "success", "duration_ms": 1.5},
}


def test_every_type_has_a_sample() -> None:
    assert set(SAMPLES) == EVENT_TYPES


@pytest.mark.parametrize("type_", sorted(SAMPLES))
def test_each_type_round_trips_through_json(type_: str) -> None:
    ev = envelope(NodeEvent(type=type_, node="n", data=SAMPLES[type_]), **IDS)
    again = EVENT_ADAPTER.validate_json(ev.model_dump_json())
    assert again == ev
    assert ev.model_dump(mode="json")["ts"].endswith("Z")


@pytest.mark.parametrize(
    "bad",
    [
        {"type": "no_such_type", "data": {}},
        {"type": "text_delta", "data": {"text": 1}},
        {"type": "text_delta", "data": {"text": "x", "extra": True}},
        {"type": "agent_status", "data": {"status": "guessing"}},
        {"type": "run_finished", "data": {"status": "fine", "duration_ms": 1}},
    ],
)
def test_malformed_events_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        envelope(NodeEvent(**bad), **IDS)


def test_seq_starts_at_one() -> None:
    with pytest.raises(ValidationError):
        envelope(NodeEvent(type="text_delta", data={"text": "x"}), **{**IDS, "seq": 0})


def test_schema_maps_every_type() -> None:
    schema = events_json_schema()
    assert set(schema["discriminator"]["mapping"]) == EVENT_TYPES
