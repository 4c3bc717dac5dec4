"""bench.spy_summary counts only the event loop's busy samples."""

from __future__ import annotations

from bench.spy_summary import summarise

LOOP = "run (uvicorn/main.py:632);Runner.run (asyncio/runners.py:118)"
RAW = [
    f"{LOOP};_stream (api/executor.py:10);construct (openai/_models.py:262) 6",
    f"{LOOP};_writer (api/executor.py:20);execute (psycopg/cursor_async.py:100) 2",
    f"{LOOP};select (selectors.py:468) 50",  # waiting: not counted
    "_worker (concurrent/futures/thread.py:81);dumps (json/encoder.py:1) 9",  # other thread
]


def test_shares_are_of_the_loops_busy_samples() -> None:
    text = summarise(RAW, top=10)
    assert text.startswith("event loop busy samples: 8\n")
    assert " 75.0% | openai" in text and " 25.0% | psycopg" in text
    assert " 75.0% | _stream (api/executor.py:10)" in text
    assert "json" not in text and "Runner.run" not in text
