"""calendar 1.x: listing by default, booking when the step says so (the model writes it)."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from pydantic import BaseModel, Field

from tools.adapter import Adapter, Ask, Step, Usage
from tools.gateway import ToolSpec

MEETING_ARGS = """Extract the meeting to book. Answer with JSON {"title": "...",
"starts_at": "YYYY-MM-DDTHH:MM:SS+00:00", "duration_min": 30}."""


class MeetingArgs(BaseModel):
    """A meeting to book."""

    title: str = Field(max_length=200)
    starts_at: str = Field(description="ISO 8601 date-time with offset")
    duration_min: int = Field(ge=5, le=480, default=30)


class CalendarV1(Adapter):
    """``list_events(days)`` and ``schedule_meeting(title, starts_at, duration_min, key)``."""

    def tool_for(self, text: str) -> str | None:
        """Booking words ask for ``schedule_meeting``; anything else lists events."""
        booking = re.search(r"\b(schedule|book|set up|arrange)\b", text, re.I)
        return "schedule_meeting" if booking else "list_events"

    async def arguments(self, spec: ToolSpec, step: Step, ask: Ask) -> tuple[Any, Usage]:
        """A week of events, or the meeting the model reads from the step."""
        if spec.name != "schedule_meeting":
            return {"days": 7}, {}
        parsed, usage = await ask(
            MeetingArgs, MEETING_ARGS, f"Question: {step.question}\nStep: {step.description}"
        )
        if not isinstance(parsed, MeetingArgs):
            return None, usage
        # One key per run and step: a retried step books once.
        key = hashlib.sha256(f"{step.run_id}:{step.index}".encode()).hexdigest()[:32]
        return {**parsed.model_dump(), "idempotency_key": key}, usage
