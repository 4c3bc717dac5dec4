"""Text coalescing: neighbouring text deltas of one node join; nothing else moves or merges."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from core.events import Event, NodeEvent, envelope
from runs.coalesce import coalesce, drain, take

T0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def _ev(i: int, type_: str, node: str | None = "summarizer", **data: object) -> Event:
    return envelope(
        NodeEvent(type=type_, node=node, data=dict(data)),
        seq=1,
        thread_id="t",
        run_id="r",
        trace_id="x" * 32,
        ts=T0 + timedelta(milliseconds=i),
    )


def _shape(events: list[Event]) -> list[tuple[str, str | None, str | None]]:
    return [(e.type, e.node, getattr(e.data, "text", None)) for e in events]


def test_neighbouring_deltas_join_and_other_events_keep_their_place() -> None:
    events = [
        _ev(0, "agent_status", status="summarizing"),
        _ev(1, "text_delta", text="The"),
        _ev(2, "text_delta", text=" sky"),
        _ev(3, "text_delta", text=" is"),
        _ev(4, "warning", code="c", message="m"),
        _ev(5, "text_delta", text=" blue"),
        _ev(6, "text_delta", node="other", text="!"),
        _ev(7, "agent_status", status="done"),
    ]
    out = coalesce(events, 2000)
    assert _shape(out) == [
        ("agent_status", "summarizer", None),
        ("text_delta", "summarizer", "The sky is"),
        ("warning", "summarizer", None),
        ("text_delta", "summarizer", " blue"),
        ("text_delta", "other", "!"),
        ("agent_status", "summarizer", None),
    ]
    assert out[1].ts == T0 + timedelta(milliseconds=1)  # the first piece's time
    # Joined, the envelope still encodes as a valid text_delta.
    assert '"text":"The sky is"' in out[1].model_dump_json()


def test_a_joined_delta_holds_at_most_max_chars() -> None:
    events = [_ev(i, "text_delta", text="abcd") for i in range(10)]
    out = coalesce(events, 10)
    assert [e.data.text for e in out] == ["abcdabcd"] * 5  # type: ignore[union-attr]
    assert "".join(e.data.text for e in out) == "abcd" * 10  # type: ignore[union-attr]


def test_drain_takes_what_is_queued_up_to_the_limit_and_sees_the_end() -> None:
    queue: asyncio.Queue[Event | None] = asyncio.Queue()
    for i in range(1, 5):
        queue.put_nowait(_ev(i, "text_delta", text=str(i)))
    queue.put_nowait(None)
    got, done = drain(queue, _ev(0, "text_delta", text="0"), 3)
    assert ([e.data.text for e in got], done) == (["0", "1", "2"], False)  # type: ignore[union-attr]
    got, done = drain(queue, queue.get_nowait(), 3)
    assert ([e.data.text for e in got], done) == (["3", "4"], True)  # type: ignore[union-attr]


def test_take_gathers_deltas_for_the_window_and_any_other_event_closes_it_at_once() -> None:
    async def scenario() -> tuple[list[str], bool, bool]:
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        for i in range(3):
            queue.put_nowait(_ev(i, "text_delta", text=str(i)))

        async def later() -> None:
            await asyncio.sleep(0.05)  # inside the window: joins the same write
            queue.put_nowait(_ev(3, "text_delta", text="3"))
            queue.put_nowait(_ev(4, "agent_status", status="done"))
            queue.put_nowait(None)

        feeder = asyncio.create_task(later())
        # A 30 s window: only the status event (and the end behind it) can close it in time.
        async with asyncio.timeout(10):
            got, done = await take(queue, 30.0, 256)
        await feeder
        return [e.type for e in got], done, queue.empty()

    got, done, emptied = asyncio.run(scenario())
    assert (got, done, emptied) == (["text_delta"] * 4 + ["agent_status"], True, True)
