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
