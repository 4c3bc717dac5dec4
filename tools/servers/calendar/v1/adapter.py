"""calendar 1.x: listing by default, booking when the step says so.

Dates and times are read from the user's own words by rules (``dateparser`` in the caller's
time zone): "tomorrow" lists tomorrow, "next week" next week, "tomorrow at 3pm" books then, "for
45 minutes" sets the duration, "called Roadmap Review" or a quoted name sets the title. The
model is asked only for what the words do not settle (a title, or a time the rules missed),
with today's date in the prompt, so a small model never has to invent the year.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from dateparser.search import search_dates
from pydantic import BaseModel, Field

from tools.adapter import Adapter, Ask, Step, Usage
from tools.gateway import ToolSpec

MEETING_ARGS = """Extract the meeting to book. Answer with JSON {{"title": "...",
"starts_at": "...", "duration_min": 30}}. Today is {today}. For starts_at write the day and
time as the user said them ("tomorrow 15:00", "Friday 10:00") or ISO 8601 with offset."""

_DURATION = re.compile(r"\b(\d+)\s*-?\s*(minutes?|mins?|hours?|hrs?)\b", re.I)
_TITLE = re.compile(
    r"(?:called|titled|named|about)\s+[\"“']?(?P<t>[^\"”']+?)[\"”']?"
    r"(?=\s+(?:on|at|for|tomorrow|today|next|this|with)\b|[.?!]?$)"
    r"|[\"“'](?P<q>[^\"”']{2,80})[\"”']",
    re.I,
)
_LISTING = re.compile(
    r"\b(which|what)\b[^?]*\b(meetings|events|appointments)\b"
    r"|\bwhat(?:'s| is)?\b[^?]*\bon my (calendar|agenda|schedule)\b"
    r"|\b(list|show)\b[^?]*\b(meetings|events|appointments|calendar|agenda)\b",
    re.I,
)
_DAY_AFTER = re.compile(r"\b(?:the\s+)?day\s+after\s+tomorrow\b", re.I)
_WHEN_WORDS = re.compile(
    r"\d\s*(?:am|pm)\b|\d:\d\d|\b(?:today|tomorrow|tonight|monday|tuesday|wednesday|thursday|"
    r"friday|saturday|sunday|january|february|march|april|may|june|july|august|september|"
    r"october|november|december|noon|days?)\b",
    re.I,
)


class MeetingArgs(BaseModel):
    """A meeting to book."""

    title: str = Field(max_length=200)
    starts_at: str = Field(description="the day and time as the user said them, or ISO 8601")
    duration_min: int = Field(ge=5, le=480, default=30)


def _now(step: Step) -> datetime:
    try:
        return datetime.now(ZoneInfo(step.timezone))
    except (KeyError, ValueError):
        return datetime.now(ZoneInfo("UTC"))


def when_of(text: str, now: datetime) -> datetime | None:
    """The moment ``text`` names ("tomorrow at 3pm"), in ``now``'s zone; durations ignored.

    An explicit zone in the words ("11:00 UTC") is honoured and converted.
    """
    zone = str(now.tzinfo) if now.tzinfo is not None else "UTC"
    words = _DAY_AFTER.sub("in 2 days", _DURATION.sub(" ", text))
    found = search_dates(
        words,
        languages=["en"],
        settings={
            "RELATIVE_BASE": now.replace(tzinfo=None),
            "PREFER_DATES_FROM": "future",
            "RETURN_AS_TIMEZONE_AWARE": True,
            "TIMEZONE": zone,
            "TO_TIMEZONE": zone,
        },
    )
    named = [d for phrase, d in found or [] if _WHEN_WORDS.search(phrase)]
    return named[-1] if named else None


def window_of(text: str, now: datetime) -> dict[str, Any]:
    """The listing window the words name: a day, a weekday, next week, N days."""
    lowered = text.lower()
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if m := re.search(r"\b(?:next|coming)\s+(\d+)\s+days\b", lowered):
        return {"start": now.isoformat(), "days": max(1, min(31, int(m[1])))}
    if "next week" in lowered:
        monday = midnight + timedelta(days=7 - midnight.weekday())
        return {"start": monday.isoformat(), "days": 7}
    if _DAY_AFTER.search(lowered):
        return {"start": (midnight + timedelta(days=2)).isoformat(), "days": 1}
    if "tomorrow" in lowered:
        return {"start": (midnight + timedelta(days=1)).isoformat(), "days": 1}
    if "today" in lowered or "tonight" in lowered:
        return {"start": midnight.isoformat(), "days": 1}
    if "this week" in lowered:
        return {"start": now.isoformat(), "days": 7 - now.weekday()}
    return {"start": now.isoformat(), "days": 31 if lowered.lstrip().startswith("when") else 14}


def _event_line(event: dict[str, Any]) -> str:
    try:
        start = datetime.fromisoformat(str(event["starts_at"]))
        end = datetime.fromisoformat(str(event["ends_at"]))
    except (KeyError, ValueError):
        return f"- {event.get('title')}: {event.get('starts_at')}"
    when = f"{start.strftime('%A %Y-%m-%d %H:%M')}-{end.strftime('%H:%M')} {start.strftime('%Z')}"
    return f"- {event.get('title')}: {when.strip()}"


class CalendarV1(Adapter):
    """``list_events(start, days)`` and ``schedule_meeting(title, starts_at, duration, key)``."""

    def note(self, result: Any) -> str:
        """One line per event (title, weekday, date, times), or the booking made."""
        if isinstance(result, dict) and isinstance(result.get("events"), list):
            lines = [_event_line(e) for e in result["events"] if isinstance(e, dict)]
            return "Events:\n" + "\n".join(lines) if lines else "No events in that window."
        if isinstance(result, dict) and isinstance(result.get("event"), dict):
            return "Booked:\n" + _event_line(result["event"])
        return super().note(result)

    def answer(self, result: Any, step: Step) -> str | None:
        """A listing asked for as one ("which meetings do I have tomorrow?"): every event found.

        Asked "which meetings", a small model leaves out the dentist appointment; the calendar
        does not know which entries the user calls meetings, so all of them are said.
        """
        if not _LISTING.search(step.question) or not isinstance(result, dict):
            return None
        if not isinstance(result.get("events"), list):
            return None
        events = [e for e in result["events"] if isinstance(e, dict)]
        if not events:
            return "Nothing is on your calendar in that window."
        lines = "\n".join(_event_line(e) for e in events)
        return f"You have {len(events)} event{'' if len(events) == 1 else 's'}:\n{lines}"

    def tool_for(self, text: str) -> str | None:
        """Booking words ask for ``schedule_meeting``; anything else lists events."""
        booking = re.search(r"\b(schedule|book|set up|arrange)\b", text, re.I)
        return "schedule_meeting" if booking else "list_events"

    async def arguments(self, spec: ToolSpec, step: Step, ask: Ask) -> tuple[Any, Usage]:
        """The window the words name, or the meeting: rules first, the model for the rest."""
        now = _now(step)
        if spec.name != "schedule_meeting":
            return window_of(step.question, now), {}
        title = _TITLE.search(step.question)
        when = when_of(step.question, now)
        duration = _DURATION.search(step.question)
        usage: Usage = {}
        args: dict[str, Any] = {}
        if title is None or when is None:
            today = now.strftime("%A %Y-%m-%d, %H:%M") + f" ({step.timezone})"
            parsed, usage = await ask(
                MeetingArgs,
                MEETING_ARGS.format(today=today),
                f"Question: {step.question}\nStep: {step.description}",
            )
            if not isinstance(parsed, MeetingArgs):
                return None, usage
            args = parsed.model_dump()
        if title is not None:
            args["title"] = (title["t"] or title["q"]).strip()[:200]
        if when is not None:
            args["starts_at"] = when.isoformat()
        if duration is not None:
            minutes = int(duration[1]) * (60 if duration[2].lower().startswith("h") else 1)
            args["duration_min"] = max(5, min(480, minutes))
        args.setdefault("duration_min", 30)
        return args, usage  # the pipeline adds the idempotency key
