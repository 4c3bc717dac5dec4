"""Crash and resume (agentic resource overload, LLM10): ``kill -9`` the API process at random
points of runs that book a meeting, then restart it.

Policy: a run whose process died is failed, not resumed — a surviving replica (here the
restarted one) appends ``error{run_interrupted}`` and ``run_finished{error}`` after its last
logged event. A client that reconnects with ``Last-Event-ID`` (as EventSource does) reads every
event exactly once, gap-free, through to ``run_finished``; the calendar holds at most one
booking per run, and exactly one for every run whose log shows the booking's result.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable

import httpx

from tests.chaos.conftest import ApiProcess, assert_gap_free, scaled
from tests.fakes.openai_server import FakeOpenAI
from tests.sse import iter_frames

RUNS = scaled(2, 50)
ANSWER = " ".join(f"w{i}" for i in range(60))
PLAN = json.dumps(
    {"steps": [{"description": "Schedule a meeting called sync tomorrow", "tool": "calendar"}]}
)
MEETING = json.dumps({"title": "sync", "starts_at": "2026-12-01T15:00:00+00:00"})


def _read(client: httpx.Client, method: str, path: str, seqs: list[int], **kw: object) -> str:
    """Read frames into ``seqs`` until run_finished or the connection ends; the final status."""
    try:
        with client.stream(method, path, **kw) as resp:  # type: ignore[arg-type]
            if resp.status_code != 200:
                return ""
            for frame in iter_frames(resp.iter_lines()):
                seqs.append(int(frame.id or 0))
                if frame.data["type"] == "run_finished":
                    return str(frame.data["data"]["status"])
    except httpx.HTTPError:
        pass
    return ""


def test_kill_9_mid_run_then_restart(
    api_factory: Callable[..., ApiProcess],
    fake_llm: FakeOpenAI,
    figure: Callable[[str, str], None],
) -> None:
    api = api_factory(KEEL_RUNS__HEARTBEAT_S="0.5", KEEL_RUNS__STALE_AFTER_S="2")
    rng = random.Random(9)
    endings: Counter[str] = Counter()
    lost = duplicated = reconnects = 0
    bookings: list[tuple[int, bool]] = []
    restart_s: list[float] = []
    for _ in range(RUNS):
        fake_llm.reset()
        fake_llm.script.extend([PLAN, MEETING, "Booked.", ANSWER])
        fake_llm.delay_s = 0.01
        with api.client(scopes=["write:calendar", "read:calendar"]) as c:
            tid = c.post("/v1/threads").json()["thread_id"]
            seqs: list[int] = []
            killer = threading.Timer(rng.uniform(0.0, 2.0), api.kill9)
            killer.start()
            status = _read(
                c, "POST", f"/v1/threads/{tid}/runs", seqs, json={"input": {"message": "Book"}}
            )
            killer.join()
            started = time.monotonic()
            api.start()
            restart_s.append(time.monotonic() - started)
            run = api.sql("SELECT run_id FROM runs WHERE thread_id = %s", tid)
            if not run:
                endings["never started"] += 1
                continue
            for _attempt in range(200):
                if status:
                    break
                reconnects += 1
                last = seqs[-1] if seqs else 0
                status = _read(
                    c,
                    "GET",
                    f"/v1/threads/{tid}/stream",
                    seqs,
                    headers={"Last-Event-ID": str(last)},
                )
                if not status:
                    time.sleep(0.1)
            endings[status or "no run_finished"] += 1
        logged = [
            r["seq"]
            for r in api.sql("SELECT seq FROM events WHERE thread_id = %s ORDER BY seq", tid)
        ]
        lost += len(set(logged) - set(seqs))
        duplicated += len(seqs) - len(set(seqs))
        assert_gap_free(seqs)
        assert seqs == logged
        key = hashlib.sha256(f"{run[0]['run_id']}:0".encode()).hexdigest()[:32]
        table = api.sql("SELECT to_regclass('tool_calendar_events') IS NOT NULL AS e")[0]["e"]
        rows = (
            api.sql(
                "SELECT count(*) AS n FROM tool_calendar_events WHERE idempotency_key = %s", key
            )
            if table
            else []
        )
        result = api.sql(
            "SELECT count(*) AS n FROM events WHERE thread_id = %s AND type = 'tool_result'",
            tid,
        )
        bookings.append((rows[0]["n"] if rows else 0, result[0]["n"] > 0))
    once = sum(1 for n, seen in bookings if n == 1 and seen)
    figure(
        "crash and resume",
        f"{RUNS} runs killed (SIGKILL) at random points and the API restarted "
        f"(median restart {sorted(restart_s)[len(restart_s) // 2]:.1f} s): endings "
        f"{dict(endings)}; {lost} events lost, {duplicated} duplicated over {reconnects} "
        f"reconnects; bookings: {once} runs booked exactly once after a logged result, "
        f"{sum(1 for n, _ in bookings if n > 1)} booked twice",
    )
    assert lost == 0 and duplicated == 0
    assert "no run_finished" not in endings
    assert all(n <= 1 for n, _ in bookings)
    assert all(n == 1 for n, seen in bookings if seen)
