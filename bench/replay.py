"""Replay from the event log vs walking checkpoints with ``aget_state_history``.

    .venv/bin/python -m bench.replay [--reps 20]

Builds threads of at least 100 and 1,000 events (whole turns of a scripted model over the
OpenAI wire protocol, embedded Postgres), then times, interleaved, median of ``reps``: the
whole ``GET /v1/replay/{thread}`` over HTTP; the replay's server-side read alone
(``EventLog.frames`` in process: a first read, and a repeat served from its page cache); and
``graph.aget_state_history`` over the same thread's checkpoints in process. Prints one JSON
row per figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from api.app import create_app
from core.db import EmbeddedPostgres, free_port, open_pool
from core.identity import issue_token
from core.settings import Settings
from graphs.graph import build_graph
from runs.event_log import EventLog
from tests.fakes.openai_server import FakeOpenAI

ANSWER = " ".join(f"w{i}" for i in range(93))  # with the run's other events: ~100 per turn


def serve(settings: Settings) -> tuple[uvicorn.Server, threading.Thread, str]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=port, log_level="warning", loop="asyncio"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    return server, thread, f"http://127.0.0.1:{port}"


def make_thread(c: httpx.Client, fake: FakeOpenAI, events: int) -> str:
    """A thread of at least ``events`` events, made of whole turns."""
    tid: str = c.post("/v1/threads").json()["thread_id"]
    last = 0
    while last < events:
        fake.script.extend(
            [json.dumps({"steps": [{"description": "s", "tool": "none"}]}), "finding", ANSWER]
        )
        with c.stream("POST", f"/v1/threads/{tid}/runs", json={"input": {"message": "go"}}) as r:
            r.raise_for_status()
            ids = [line for line in r.iter_lines() if line.startswith("id: ")]
        last = int(ids[-1][4:])
    return tid


def time_replay(c: httpx.Client, tid: str) -> tuple[float, int]:
    t0 = time.perf_counter()
    with c.stream("GET", f"/v1/replay/{tid}") as r:
        n = sum(1 for line in r.iter_lines() if line.startswith("id: "))
    return time.perf_counter() - t0, n


async def time_frames(url: str, tid: str) -> tuple[float, float]:
    """The replay's server-side work alone, in process, no HTTP: (first read, repeat read).

    The pool is warmed first, as the API's is (its statements prepared). The first read gets
    every page's text from Postgres; the repeat is served the pages from the EventLog's
    memory, as the API's later replays of the thread are.
    """
    pool = await open_pool(url, 1, 1)
    uncached = EventLog(pool, page_cache_bytes=0)
    for _ in range(8):
        [_ async for _ in uncached.frames(tid)]
    log = EventLog(pool)
    took = []
    for _ in range(2):
        t0 = time.perf_counter()
        n = sum([len(chunk) async for chunk in log.frames(tid)])
        took.append(time.perf_counter() - t0)
        assert n > 0
    await pool.close()
    return took[0], took[1]


async def time_history(url: str, tid: str, reps: int) -> list[tuple[float, int]]:
    pool = await open_pool(url, 1, 2)
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

    graph = build_graph(AsyncPostgresSaver(pool))
    out = []
    config: Any = {"configurable": {"thread_id": tid}}
    [_ async for _ in graph.aget_state_history(config)]  # warm, like the replay's read
    for _ in range(reps):
        t0 = time.perf_counter()
        n = len([s async for s in graph.aget_state_history(config)])
        out.append((time.perf_counter() - t0, n))
    await pool.close()
    return out


def measure(reps: int = 20) -> list[dict[str, Any]]:
    """The four figures as rows (``key``, ``figure``, ``ratio``, ``a``, ``b``, ``n``, ...)."""
    tmp = Path(tempfile.mkdtemp(prefix="keel-bench-"))
    pg = EmbeddedPostgres(tmp / "pg")
    pg.start()
    fake = FakeOpenAI()
    fake.start()
    try:
        settings = Settings(
            env="test",
            data_dir=tmp,
            database={"url": pg.url},
            llm={"provider": "openai", "base_url": fake.base_url},
            quotas={"free": {"runs_per_minute": 100_000}},
        )
        server, thread, url = serve(settings)
        token = issue_token(settings.auth, user="bench", tenant="bench", scopes=[])
        with httpx.Client(
            base_url=url, timeout=120, headers={"Authorization": f"Bearer {token}"}
        ) as c:
            small, big = make_thread(c, fake, 100), make_thread(c, fake, 1000)
            rows: dict[str, list[float]] = {
                "replay_100": [],
                "replay_1000": [],
                "frames_1000": [],
                "frames_1000_repeat": [],
                "history": [],
            }
            counts: dict[str, int] = {}
            for _ in range(reps):
                t, counts["replay_100"] = time_replay(c, small)
                rows["replay_100"].append(t)
                t, counts["replay_1000"] = time_replay(c, big)
                rows["replay_1000"].append(t)
                first, repeat = asyncio.run(time_frames(pg.url, big))
                rows["frames_1000"].append(first)
                rows["frames_1000_repeat"].append(repeat)
                ((t, counts["history"]),) = asyncio.run(time_history(pg.url, big, 1))
                rows["history"].append(t)
        server.should_exit = True
        thread.join(30)
    finally:
        fake.stop()
        pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in rows.items()}
    return [
        {
            "key": "replay_http",
            "figure": "replay of a 1,000-event thread over HTTP ÷ aget_state_history",
            "ratio": med["replay_1000"] / med["history"],
            "a": med["replay_1000"],
            "b": med["history"],
            "n": reps,
            "events": counts["replay_1000"],
            "checkpoints": counts["history"],
        },
        {
            "key": "replay_read",
            "figure": "replay's server-side read (in process, no HTTP) ÷ aget_state_history",
            "ratio": med["frames_1000"] / med["history"],
            "a": med["frames_1000"],
            "b": med["history"],
            "n": reps,
            "events": counts["replay_1000"],
        },
        {
            "key": "replay_read_cached",
            "figure": "replay's server-side read, pages already in memory ÷ aget_state_history",
            "ratio": med["frames_1000_repeat"] / med["history"],
            "a": med["frames_1000_repeat"],
            "b": med["history"],
            "n": reps,
            "events": counts["replay_1000"],
        },
        {
            "key": "replay_growth",
            "figure": "replay t(1,000 events) ÷ t(100 events), over HTTP",
            "ratio": med["replay_1000"] / med["replay_100"],
            "a": med["replay_1000"],
            "b": med["replay_100"],
            "n": reps,
            "events": counts["replay_100"],
        },
    ]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--reps", type=int, default=20)
    for row in measure(p.parse_args().reps):
        print(json.dumps(row))


if __name__ == "__main__":
    main()
