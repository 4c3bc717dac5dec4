"""Text coalescing: a run's text deltas that arrive close together travel as one event.

A model streams its answer a token at a time; sending each token as its own event makes the
cost of a stream (encoding, the log's rows, SSE frames, the client's parsing) grow with the
tokens rather than with what a reader can notice. The run's writer takes what the run emitted
since its last write; when the first of it is a text delta, it keeps taking text deltas for
``streams.delta_window_ms`` (any other event, or the run's end, closes the window at once), and
joins neighbouring ``text_delta`` events of one node into one (at most
``streams.delta_max_chars`` characters each). A run's first text delta is sent without
waiting: the window never delays the first token. Events are numbered after joining, so ``seq``
stays gap-free, and any other event (a status, a tool call, ``run_finished``) keeps its place:
only deltas that were next to each other are joined. The joined text is exactly the pieces'
text in order; the event's ``ts`` is its first piece's.
"""

from __future__ import annotations

import asyncio

from core.events import Event, TextDelta, TextDeltaData


async def take(
    queue: asyncio.Queue[Event | None], window_s: float, limit: int
) -> tuple[list[Event], bool]:
    """The run's next events to write, and whether the run's end (``None``) came.

    Waits for the first; when it is a text delta (and ``window_s`` is set), keeps taking
    text deltas until the window after it closes, and stops early at any other event or the
    end, which need not wait. Then takes whatever else is queued, ``limit`` events at most.
    """
    first = await queue.get()
    if not window_s or first is None or first.type != "text_delta":
        return drain(queue, first, limit)
    events: list[Event] = [first]
    deadline = asyncio.get_running_loop().time() + window_s
    while (left := deadline - asyncio.get_running_loop().time()) > 0 and len(events) < limit:
        try:
            async with asyncio.timeout(left):
                item = await queue.get()
        except TimeoutError:
            break
        if item is None or item.type != "text_delta":
            return drain(queue, item, limit, events)
        events.append(item)
    return events, False


def drain(
    queue: asyncio.Queue[Event | None],
    first: Event | None,
    limit: int,
    events: list[Event] | None = None,
) -> tuple[list[Event], bool]:
    """``first`` and what is queued behind it (``limit`` at most); True once the end came.

    ``None`` in the queue marks the run's end; ``events`` are taken already.
    """
    events = [] if events is None else events
    item = first
    while True:
        if item is None:
            return events, True
        events.append(item)
        if len(events) >= limit or queue.empty():
            return events, False
        item = queue.get_nowait()


def coalesce(events: list[Event], max_chars: int) -> list[Event]:
    """``events`` with each run of neighbouring text deltas of one node joined."""
    out: list[Event] = []
    pieces: list[str] = []
    chars = 0
    for ev in events:
        prev = out[-1] if out else None
        if (
            isinstance(ev, TextDelta)
            and isinstance(prev, TextDelta)
            and prev.node == ev.node
            and chars + len(ev.data.text) <= max_chars
        ):
            pieces.append(ev.data.text)
            chars += len(ev.data.text)
            continue
        _join(prev, pieces)
        pieces = [ev.data.text] if isinstance(ev, TextDelta) else []
        chars = len(pieces[0]) if pieces else 0
        out.append(ev)
    _join(out[-1] if out else None, pieces)
    return out


def _join(ev: Event | None, pieces: list[str]) -> None:
    """Give the text delta ``ev`` the joined text of its ``pieces`` (when there are several)."""
    if isinstance(ev, TextDelta) and len(pieces) > 1:
        ev.data = TextDeltaData.model_construct(text="".join(pieces))
