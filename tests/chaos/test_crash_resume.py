"""Crash and resume (agentic resource overload, LLM10): ``kill -9`` one of two replicas at a
random point of a run that books a meeting; the other replica resumes the run.

Policy: runs are leased (runs/executor.py). Once the killed replica's lease lapses, the
surviving one takes the run over and resumes it from its last checkpoint with a
``warning{run_resumed}``, continuing the thread's seq. A client that reconnects to the survivor
with ``Last-Event-ID`` (as EventSource does) reads every event exactly once, gap-free, through
to ``run_finished``; the calendar holds exactly one booking per run (the resumed step books
with the same idempotency key). The killed replica restarts while the next run goes on the
other, and the roles swap each round.
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
ANSWER = " ".join(f"w{i}" for i in range(120))
PLAN = json.dumps(
    {"steps": [{"description": "Schedule a meeting called sync tomorrow", "tool": "calendar"}]}
)
MEETING = json.dumps({"title": "sync", "starts_at": "2026-12-01T15:00:00+00:00"})
LEASE = {"KEEL_RUNS__HEARTBEAT_S": "0.5", "KEEL_RUNS__STALE_AFTER_S": "2"}


def _read(
    client: httpx.Client, method: str, path: str, frames: list[dict[str, object]], **kw: object
) -> str:
    """Read events into ``frames`` until run_finished or the connection ends; the final status."""
    try:
        with client.stream(method, path, **kw) as resp:  # type: ignore[arg-type]
            if resp.status_code != 200:
                return ""
            for frame in iter_frames(resp.iter_lines()):
                frames.append(frame.data)
                if frame.data["type"] == "run_finished":
                    return str(frame.data["data"]["status"])  # type: ignore[index]
    except httpx.HTTPError:
        pass
    return ""


def _follow(survivor: ApiProcess, tid: str, frames: list[dict[str, object]]) -> str:
    """Reconnect to ``survivor`` after the last event read, until the run finishes (60 s)."""
    deadline = time.monotonic() + 60
    with survivor.client(scopes=["write:calendar", "read:calendar"]) as c:
        while time.monotonic() < deadline:
            last = frames[-1]["seq"] if frames else 0
            status = _read(
                c, "GET", f"/v1/threads/{tid}/stream", frames, headers={"Last-Event-ID": str(last)}
            )
            if status:
                return status
            time.sleep(0.1)
    return ""


def _bookings(api: ApiProcess, run_id: str) -> int:
    key = hashlib.sha256(f"{run_id}:0".encode()).hexdigest()[:32]
    if not api.sql("SELECT to_regclass('tool_calendar_events') IS NOT NULL AS e")[0]["e"]:
        return 0
    rows = api.sql("SELECT count(*) AS n FROM tool_calendar_events WHERE idempotency_key = %s", key)
    return int(rows[0]["n"])


def test_kill_9_a_replica_mid_run_the_other_resumes_it(
    api_factory: Callable[..., ApiProcess],
    fake_llm: FakeOpenAI,
    figure: Callable[[str, str], None],
) -> None:
    replicas = [api_factory("a", **LEASE), api_factory("b", **LEASE)]
    fake_llm.by_schema.update({"Plan": PLAN, "MeetingArgs": MEETING, "stream": ANSWER})
    fake_llm.delay_s = 0.01
    rng = random.Random(9)
    endings: Counter[str] = Counter()
    lost = duplicated = resumed = 0
    booked: list[tuple[int, bool]] = []
    restarts: list[float] = []
    restarting: threading.Thread | None = None
    ends: list[str] = []
    for i in range(RUNS):
        if restarting is not None:
            restarting.join()
        victim, survivor = replicas[i % 2], replicas[(i + 1) % 2]
        frames: list[dict[str, object]] = []
        with victim.client(scopes=["write:calendar", "read:calendar"]) as c:
            tid = c.post("/v1/threads").json()["thread_id"]
            killer = threading.Timer(rng.uniform(0.2, 2.5), victim.kill9)
            killer.start()
            status = _read(
                c, "POST", f"/v1/threads/{tid}/runs", frames, json={"input": {"message": "Book"}}
            )
            killer.join()
        started = time.monotonic()

        def restart(api: ApiProcess = victim, t0: float = started) -> None:
            api.start()
            restarts.append(time.monotonic() - t0)

        restarting = threading.Thread(target=restart)
        restarting.start()
        status = status or _follow(survivor, tid, frames)
        endings[status or "no run_finished"] += 1
        ends.append(status)
        seqs = [int(f["seq"]) for f in frames]  # type: ignore[call-overload]
        logged = [
            r["seq"]
            for r in survivor.sql("SELECT seq FROM events WHERE thread_id = %s ORDER BY seq", tid)
        ]
        lost += len(set(logged) - set(seqs))
        duplicated += len(seqs) - len(set(seqs))
        assert_gap_free(seqs)
        assert seqs == logged
        resumed += any(
            f["data"].get("code") == "run_resumed" for f in frames if f["type"] == "warning"
        )  # type: ignore[attr-defined]
        run_id = str(frames[0]["run_id"])
        booked.append(
            (_bookings(survivor, run_id), any(f["type"] == "tool_result" for f in frames))
        )
    if restarting is not None:
        restarting.join()
    success = endings["success"]
    figure(
        "crash and resume",
        f"{RUNS} runs, one of two replicas killed (SIGKILL) at a random point of each: endings "
        f"{dict(endings)} ({resumed} resumed by the other replica, the rest finished before "
        f"the kill); {lost} events lost, {duplicated} duplicated; bookings: "
        f"{sum(1 for n, seen in booked if n == 1 and seen)} runs booked exactly once, "
        f"{sum(1 for n, _ in booked if n > 1)} twice, "
        f"{sum(1 for n, seen in booked if n == 0 and seen)} results without a booking; "
        f"median restart {sorted(restarts)[len(restarts) // 2]:.1f} s",
    )
    assert lost == 0 and duplicated == 0
    assert success >= RUNS - RUNS // 25, endings  # at least 48 of 50
    assert all(n <= 1 for n, _ in booked), booked
    assert all(n == 1 for (n, _), end in zip(booked, ends, strict=True) if end == "success")
