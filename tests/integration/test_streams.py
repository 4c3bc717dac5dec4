"""Streams outlive clients: resume after disconnects, cancel, double-texting, replicas, replay."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import psycopg
import pytest

from core.events import Event
from runs.event_log import EventLog
from tests.conftest import LiveServer, make_settings, stream_run
from tests.fakes.openai_server import FakeOpenAI
from tests.sse import Frame, iter_frames, parse

LONG_ANSWER = " ".join(f"w{i}" for i in range(200))


def _thread(c: httpx.Client) -> str:
    tid: str = c.post("/v1/threads").json()["thread_id"]
    return tid


def _read_until(resp: httpx.Response, stop: int) -> list[Frame]:
    """Read frames until ``stop`` of them arrived (then the caller drops the connection)."""
    frames: list[Frame] = []
    for frame in iter_frames(resp.iter_lines()):
        frames.append(frame)
        if len(frames) >= stop:
            break
    return frames


def _start_and_drop(c: httpx.Client, tid: str, message: str, keep: int = 1) -> list[Frame]:
    """Start a run, read ``keep`` events, drop the connection; the run goes on."""
    with c.stream("POST", f"/v1/threads/{tid}/runs", json={"input": {"message": message}}) as r:
        assert r.status_code == 200, r.read()
        return _read_until(r, keep)


def _full_log(c: httpx.Client, tid: str) -> list[dict[str, Any]]:
    with c.stream("GET", f"/v1/threads/{tid}/stream", params={"after": 0}) as r:
        return [f.data for f in parse(r.iter_lines())]


def _wait_finished(live: LiveServer, tid: str, runs: int = 1) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        rows = live.sql(
            "SELECT count(*) AS n FROM runs WHERE thread_id = %s AND finished_at IS NOT NULL", tid
        )
        if rows[0]["n"] >= runs:
            return
        time.sleep(0.05)
    raise AssertionError("runs did not finish")


def test_resume_after_disconnect_at_random_points_20_times(
    live: LiveServer, fake_llm: FakeOpenAI
) -> None:
    rng = random.Random(20)
    fake_llm.delay_s = 0.005
    with live.client() as c:
        for _ in range(20):
            fake_llm.script.extend(
                [
                    json.dumps({"steps": [{"description": "s", "tool": "none"}]}),
                    "finding",
                    " ".join(f"t{i}" for i in range(30)),
                ]
            )
            tid = _thread(c)
            seen = _start_and_drop(c, tid, "go", keep=rng.randint(1, 30))
            last = seen[-1].data["seq"]
            with c.stream(
                "GET", f"/v1/threads/{tid}/stream", headers={"Last-Event-ID": str(last)}
            ) as r:
                resumed = [f.data for f in parse(r.iter_lines())]
            _wait_finished(live, tid)
            full = _full_log(c, tid)
            got = [f.data for f in seen] + resumed
            assert got == full, f"dropped after {last}"
            assert [e["seq"] for e in got] == list(range(1, len(full) + 1))
            assert got[-1]["type"] == "run_finished"


def test_cancel_mid_generation(live: LiveServer, fake_llm: FakeOpenAI) -> None:
    fake_llm.script.extend(
        [json.dumps({"steps": [{"description": "s", "tool": "none"}]}), "finding", LONG_ANSWER]
    )
    fake_llm.delay_s = 0.05
    with live.client() as c:
        tid = _thread(c)
        with c.stream("POST", f"/v1/threads/{tid}/runs", json={"input": {"message": "go"}}) as r:
            frames: list[Frame] = []
            cancelled_at = None
            for frame in iter_frames(r.iter_lines()):
                frames.append(frame)
                if cancelled_at is None and frames[-1].data["type"] == "text_delta":
                    run_id = frames[-1].data["run_id"]
                    resp = c.post(f"/v1/runs/{run_id}/cancel")
                    assert resp.status_code == 202, resp.text
                    assert resp.json() == {"run_id": run_id, "status": "cancelling"}
                    cancelled_at = time.monotonic()
        tail = [(f.data["type"], f.data["data"].get("status")) for f in frames[-2:]]
        assert tail == [("agent_status", "cancelled"), ("run_finished", "cancelled")]
        deltas = sum(1 for f in frames if f.data["type"] == "text_delta")
        assert deltas < 100  # stopped well before the 200-word answer ended
        assert live.sql("SELECT status FROM runs WHERE thread_id = %s", tid) == [
            {"status": "cancelled"}
        ]
        again = c.post(f"/v1/runs/{run_id}/cancel")
        assert again.status_code == 409
        fake_llm.delay_s = 0
        _, after = stream_run(c, tid, "still usable?")
        assert after[-1].data["data"]["status"] == "success"
        assert after[0].data["seq"] == frames[-1].data["seq"] + 1


def test_cancel_unknown_or_foreign_run(live: LiveServer) -> None:
    with live.client() as c:
        tid = _thread(c)
        _, frames = stream_run(c, tid, "hi")
        run_id = frames[0].data["run_id"]
        assert c.post("/v1/runs/nope/cancel").status_code == 404
    with live.client("mallory", "evil") as other:
        r = other.post(f"/v1/runs/{run_id}/cancel")
        assert r.status_code == 404
        assert r.headers["content-type"] == "application/problem+json"


@pytest.fixture()
def policy_server(
    request: pytest.FixtureRequest,
    db_url: str,
    fake_llm: FakeOpenAI,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LiveServer]:
    settings = make_settings(
        db_url,
        fake_llm.base_url,
        tmp_path_factory.mktemp("p"),
        runs={"double_texting": request.param},
    )
    with LiveServer(settings) as server:
        yield server


def _slow_script(fake_llm: FakeOpenAI) -> None:
    fake_llm.delay_s = 0.02
    fake_llm.script.extend(
        [
            json.dumps({"steps": [{"description": "s", "tool": "none"}]}),
            "finding",
            " ".join(f"a{i}" for i in range(60)),
        ]
    )


@pytest.mark.parametrize("policy_server", ["reject"], indirect=True)
def test_double_texting_reject(policy_server: LiveServer, fake_llm: FakeOpenAI) -> None:
    _slow_script(fake_llm)
    with policy_server.client() as c:
        tid = _thread(c)
        _start_and_drop(c, tid, "first")
        r = c.post(f"/v1/threads/{tid}/runs", json={"input": {"message": "second"}})
        assert r.status_code == 409
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["code"] == "conflict"
        _wait_finished(policy_server, tid)
        assert len(policy_server.sql("SELECT 1 FROM runs WHERE thread_id = %s", tid)) == 1


@pytest.mark.parametrize("policy_server", ["enqueue"], indirect=True)
def test_double_texting_enqueue(policy_server: LiveServer, fake_llm: FakeOpenAI) -> None:
    _slow_script(fake_llm)
    with policy_server.client() as c:
        tid = _thread(c)
        _start_and_drop(c, tid, "first")
        resp, second = stream_run(c, tid, "second")
        assert resp.status_code == 200
        log = _full_log(c, tid)
    first_run = log[0]["run_id"]
    assert second[0].data["run_id"] != first_run
    first_finished = next(e for e in log if e["type"] == "run_finished")
    assert first_finished["run_id"] == first_run
    assert first_finished["data"]["status"] == "success"
    assert second[0].data["seq"] == first_finished["seq"] + 1
    assert second[-1].data["data"]["status"] == "success"
    assert [e["seq"] for e in log] == list(range(1, len(log) + 1))


@pytest.mark.parametrize("policy_server", ["interrupt"], indirect=True)
def test_double_texting_interrupt(policy_server: LiveServer, fake_llm: FakeOpenAI) -> None:
    _slow_script(fake_llm)
    with policy_server.client() as c:
        tid = _thread(c)
        _start_and_drop(c, tid, "first", keep=4)
        fake_llm.delay_s = 0
        _, second = stream_run(c, tid, "second")
        log = _full_log(c, tid)
    first_finished = next(e for e in log if e["type"] == "run_finished")
    assert first_finished["data"]["status"] == "cancelled"
    assert second[0].data["type"] == "run_started"
    assert second[0].data["seq"] == first_finished["seq"] + 1
    assert second[-1].data["data"]["status"] == "success"


def test_live_tail_and_cancel_across_replicas(
    live: LiveServer, db_url: str, fake_llm: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> None:
    other = LiveServer(make_settings(db_url, fake_llm.base_url, tmp_path_factory.mktemp("r2")))
    with other, live.client() as a, other.client() as b:
        fake_llm.script.extend(
            [json.dumps({"steps": [{"description": "s", "tool": "none"}]}), "finding", LONG_ANSWER]
        )
        fake_llm.delay_s = 0.03
        tid = _thread(a)
        seen = _start_and_drop(a, tid, "go", keep=3)
        got: list[dict[str, Any]] = []

        def follow() -> None:
            with b.stream(
                "GET",
                f"/v1/threads/{tid}/stream",
                headers={"Last-Event-ID": str(seen[-1].data["seq"])},
            ) as r:
                got.extend(f.data for f in iter_frames(r.iter_lines()))

        reader = threading.Thread(target=follow)
        reader.start()
        deadline = time.monotonic() + 30
        while not any(e["type"] == "text_delta" for e in got):
            assert time.monotonic() < deadline, "no live events crossed replicas"
            time.sleep(0.02)
        run_id = seen[0].data["run_id"]
        assert b.post(f"/v1/runs/{run_id}/cancel").status_code == 202
        reader.join(30)
        assert not reader.is_alive()
        full = _full_log(a, tid)
    assert [f.data for f in seen] + got == full
    assert full[-1]["data"]["status"] == "cancelled"


def test_replay_pace_original_keeps_the_recorded_gaps(
    live: LiveServer, fake_llm: FakeOpenAI
) -> None:
    fake_llm.delay_s = 0.05
    fake_llm.script.extend(
        [
            json.dumps({"steps": [{"description": "s", "tool": "none"}]}),
            "finding",
            " ".join(f"x{i}" for i in range(20)),
        ]
    )
    with live.client() as c:
        tid = _thread(c)
        _, frames = stream_run(c, tid, "go")
        first = frames[0].data["run_id"]
        fake_llm.delay_s = 0
        stream_run(c, tid, "another")

        def replay(**params: Any) -> tuple[float, list[dict[str, Any]]]:
            t0 = time.monotonic()
            with c.stream("GET", f"/v1/replay/{tid}", params=params) as r:
                out = [f.data for f in parse(r.iter_lines())]
            return time.monotonic() - t0, out

        slow, paced = replay(run_id=first, pace="original")
        _, fast = replay(run_id=first)
    assert paced == fast == [f.data for f in frames]
    assert slow >= 0.8  # 20 tokens recorded 50 ms apart are replayed with their gaps


def test_replay_reads_a_page_per_finished_run_and_fills_what_has_none(live: LiveServer) -> None:
    with live.client() as c:
        tid = _thread(c)
        runs = [stream_run(c, tid, f"question {i}")[1][0].data["run_id"] for i in range(3)]
        full = _full_log(c, tid)

        def replay(**params: Any) -> list[dict[str, Any]]:
            with c.stream("GET", f"/v1/replay/{tid}", params=params) as r:
                return [f.data for f in parse(r.iter_lines())]

        pages = live.sql(
            "SELECT run_id, first_seq, last_seq FROM event_pages WHERE thread_id = %s"
            " ORDER BY first_seq",
            tid,
        )
        # One page per finished run; together they cover the log without gap or overlap.
        assert [p["run_id"] for p in pages] == runs
        assert [p["first_seq"] for p in pages] == [1] + [p["last_seq"] + 1 for p in pages[:-1]]
        assert pages[-1]["last_seq"] == full[-1]["seq"] == len(full)
        assert replay() == full
        middle = pages[1]["first_seq"] + 3
        assert replay(after=middle) == full[middle:]  # starts inside a page: the log fills in
        assert replay(run_id=runs[1]) == [e for e in full if e["run_id"] == runs[1]]
        # Pages never change, so the API serves those it has read from memory: the
        # database's copy of the first page is no longer read.
        live.sql("UPDATE event_pages SET frames = '' WHERE run_id = %s", runs[0])
        assert replay() == full
        # A page that is gone (as after pruning) is served from the events themselves.
        live.sql("DELETE FROM event_pages WHERE run_id = %s", runs[1])
        assert replay() == full
        assert replay(run_id=runs[1]) == [e for e in full if e["run_id"] == runs[1]]
        # Pruned events drop their page, and a dropped page is never served from memory.
        live.sql("DELETE FROM events WHERE run_id = %s", runs[0])
        assert replay() == [e for e in full if e["run_id"] != runs[0]]


def _checkpoints(c: httpx.Client, tid: str) -> dict[str, dict[str, Any]]:
    rows = c.get(f"/v1/threads/{tid}/history", params={"limit": 1000}).json()
    return {h["checkpoint_id"]: h for h in rows}


def test_fork_from_a_checkpoint(live: LiveServer) -> None:
    with live.client() as c:
        tid = _thread(c)
        stream_run(c, tid, "first turn")
        turn_one = _checkpoints(c, tid)
        end_of_first = c.get(f"/v1/threads/{tid}/history").json()[0]["checkpoint_id"]
        _, second = stream_run(c, tid, "second turn")
        turn_two = set(_checkpoints(c, tid)) - set(turn_one)
        resp, fork = stream_run(c, tid, "instead of the second turn", checkpoint_id=end_of_first)
        assert resp.status_code == 200
        assert fork[0].data["data"]["parent_checkpoint_id"] == end_of_first
        assert second[0].data["data"]["parent_checkpoint_id"] is None
        assert fork[-1].data["data"]["status"] == "success"
        history = _checkpoints(c, tid)
    fork_points = set(history) - set(turn_one) - turn_two
    assert len(fork_points) >= 4  # input, planner, researcher, summarizer of the fork
    newest = max((history[cp] for cp in fork_points), key=lambda h: h["ts"])
    chain: list[str] = []
    node: dict[str, Any] | None = newest
    while node is not None and node["checkpoint_id"] != end_of_first:
        chain.append(node["checkpoint_id"])
        node = history.get(node["parent_checkpoint_id"] or "")
    assert node is not None, "the fork's ancestry does not reach the checkpoint it forked from"
    assert set(chain) == fork_points
    assert not set(chain) & turn_two


def test_a_write_that_committed_before_its_connection_dropped_is_not_retried_into_a_clash(
    live: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first batch with text commits, then its connection "drops" before the client hears
    # of it (as in a Postgres crash): the retry finds its own events and the run goes on.
    real = EventLog.append
    dropped: list[int] = []

    async def commit_then_drop(self: EventLog, events: Sequence[Event]) -> None:
        await real(self, events)
        if not dropped and any(e.type == "text_delta" for e in events):
            dropped.append(events[0].seq)
            raise psycopg.OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(EventLog, "append", commit_then_drop)
    with live.client() as c:
        tid = _thread(c)
        resp, frames = stream_run(c, tid, "hello")
    assert resp.status_code == 200
    assert dropped
    seqs = [f.data["seq"] for f in frames]
    assert seqs == list(range(1, len(seqs) + 1))
    assert frames[-1].data["type"] == "run_finished"
    assert frames[-1].data["data"]["status"] == "success"
    stored = live.sql("SELECT seq FROM events WHERE thread_id = %s ORDER BY seq", tid)
    assert [r["seq"] for r in stored] == seqs
