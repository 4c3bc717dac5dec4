"""Parse an SSE byte stream into (id, event, data) frames, as a browser would."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any


@dataclass
class Frame:
    """One SSE message."""

    id: str | None
    event: str | None
    data: dict[str, Any]


def parse(lines: Iterable[str]) -> list[Frame]:
    """Frames of an SSE stream given as lines (comments and pings skipped)."""
    frames: list[Frame] = []
    fields: dict[str, list[str]] = {}
    for raw in lines:
        line = raw.rstrip("\r")
        if line == "":
            if "data" in fields:
                frames.append(
                    Frame(
                        id=fields.get("id", [None])[-1],  # type: ignore[list-item]
                        event=fields.get("event", [None])[-1],  # type: ignore[list-item]
                        data=json.loads("\n".join(fields["data"])),
                    )
                )
            fields = {}
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        fields.setdefault(name, []).append(value[1:] if value.startswith(" ") else value)
    return frames


def iter_frames(lines: Iterable[str]) -> Iterator[Frame]:
    """Frames as they complete, for tests that act in the middle of a stream."""
    buf: list[str] = []
    for line in lines:
        buf.append(line)
        if line == "":
            yield from parse(buf)
            buf = []


def kinds(frames: list[Frame]) -> list[tuple[str, str | None]]:
    """Each frame's event type and ``data.status`` (None where it has none)."""
    return [(f.data["type"], f.data["data"].get("status")) for f in frames]


def one(frames: list[Frame], type_: str) -> dict[str, Any]:
    """The data of the only frame of ``type_`` (fails if there are none or several)."""
    found = [f.data["data"] for f in frames if f.data["type"] == type_]
    assert len(found) == 1, (type_, found)
    return found[0]
