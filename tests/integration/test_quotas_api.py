"""Quotas at the API: 429 problem+json with Retry-After, concurrency, timeout, fair queueing."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.cli import main
from core.db import free_port
from core.settings import get_settings
from tests.conftest import LiveServer, make_settings, stream_run
from tests.fakes.openai_server import FakeOpenAI
from tests.quota_helpers import quota_settings
from tests.sse import Frame, parse

_servers = itertools.count(1)


@pytest.fixture
def serve(db_url: str, fake_llm: FakeOpenAI, tmp_path: Path) -> Iterator[Any]:
    """Start an API with the given quota settings; all are stopped after the test."""
    with contextlib.ExitStack() as stack:

        def start(quotas: dict[str, Any]) -> LiveServer:
            settings = make_settings(db_url, fake_llm.base_url, tmp_path, quotas=quotas)
            # langchain-openai caches one async HTTP client per (base_url, timeout) for the
            # process, bound to the event loop that used it first; each server runs its own
            # loop, so each gets its own timeout and with it its own client.
            timeout = 120 + next(_servers) / 1000
            llm = settings.llm.model_copy(update={"timeout_s": timeout})
            settings = settings.model_copy(update={"llm": llm})
            return stack.enter_context(LiveServer(settings))

        yield start


def _thread(c: httpx.Client) -> str:
    r = c.post("/v1/threads")
    assert r.status_code == 201, r.text
    thread_id: str = r.json()["thread_id"]
    return thread_id


def _frames(resp: httpx.Response) -> Iterator[Frame]:
    """Frames of an SSE response as they arrive."""
    lines: list[str] = []
    for line in resp.iter_lines():
        lines.append(line)
        if line == "":
            yield from parse(lines)
            lines = []


def _read_until(frames: Iterator[Frame], pred: Any) -> list[Frame]:
    seen: list[Frame] = []
    for f in frames:
        seen.append(f)
        if pred(f):
            return seen
    raise AssertionError(f"stream ended before the expected event: {[f.event for f in seen]}")


def _status(f: Frame) -> str | None:
    status: str | None = f.data["data"].get("status")
    return status


def _assert_429(r: httpx.Response, limit: str) -> None:
    assert r.status_code == 429, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["code"] == "quota_exceeded" and body["status"] == 429
    assert body["limit"] == limit
    assert body["trace_id"] == r.headers["x-trace-id"]
    assert int(r.headers["retry-after"]) == body["retry_after"] >= 1


def test_over_the_run_rate_answers_429_naming_the_limit(serve: Any) -> None:
    live = serve(quota_settings("memory", runs_per_minute=2))
    with live.client() as c:
        for _ in range(2):
            resp, frames = stream_run(c, _thread(c), "hi")
            assert resp.status_code == 200 and _status(frames[-1]) == "success"
        resp, frames = stream_run(c, _thread(c), "hi")
        _assert_429(resp, "runs_per_minute")
        assert int(resp.headers["retry-after"]) <= 60
        assert "2 runs per minute" in resp.json()["detail"]
        usage = c.get("/v1/usage").json()
    assert usage["subject"] == "user:acme:alice" and usage["tier"] == "free"
    assert usage["limits"]["runs_per_minute"] == 2
    assert usage["usage"]["runs_last_minute"] == 2
    assert usage["usage"]["concurrent_runs"] == 0
    assert usage["usage"]["llm_tokens_today"] > 0
    with live.client("bob") as c:  # another user is not affected
        resp, _ = stream_run(c, _thread(c), "hi")
        assert resp.status_code == 200


def test_concurrent_runs_limit_per_user(serve: Any, fake_llm: FakeOpenAI) -> None:
    live = serve(quota_settings("memory", concurrent_runs=1))
    fake_llm.delay_s = 0.25  # run 1 outlasts the second request (~1 s)
    with live.client() as c:
        t1, t2 = _thread(c), _thread(c)
        with c.stream("POST", f"/v1/threads/{t1}/runs", json={"input": {"message": "a"}}) as r1:
            frames = _frames(r1)
            _read_until(frames, lambda f: f.event == "run_started")
            resp, _ = stream_run(c, t2, "b")
            _assert_429(resp, "concurrent_runs")
            rest = list(frames)
        assert _status(rest[-1]) == "success"
        resp, frames2 = stream_run(c, t2, "b")  # the slot was given back before run_finished
        assert resp.status_code == 200 and _status(frames2[-1]) == "success"


def test_run_over_its_max_duration_is_cancelled_with_a_warning(
    serve: Any, fake_llm: FakeOpenAI
) -> None:
    live = serve(quota_settings("memory", max_run_duration_s=0.5))
    fake_llm.delay_s = 0.5  # the streamed answer takes ~2 s
    with live.client() as c:
        resp, frames = stream_run(c, _thread(c), "slow")
        usage = c.get("/v1/usage").json()["usage"]
    assert resp.status_code == 200
    warning, finished = frames[-2].data, frames[-1].data
    assert warning["type"] == "warning" and warning["data"]["code"] == "run_timeout"
    assert "0.5 s" in warning["data"]["message"]
    assert finished["type"] == "run_finished" and finished["data"]["status"] == "timeout"
    assert 500 <= finished["data"]["duration_ms"] < 2000
    assert usage["concurrent_runs"] == 0
    rows = live.sql("SELECT status FROM runs WHERE run_id = %s", finished["run_id"])
    assert rows == [{"status": "timeout"}]


def test_queued_runs_are_served_round_robin_across_users(serve: Any, fake_llm: FakeOpenAI) -> None:
    cfg = quota_settings("memory", policy="queue")
    live = serve({**cfg, "max_active_runs": 1})
    fake_llm.delay_s = 0.3  # A1 (~1.2 s) outlasts the three submissions that follow it
    with live.client("ann") as ann, live.client("ben") as ben, contextlib.ExitStack() as stack:
        threads = {name: _thread(c) for name, c in [("A1", ann), ("A2", ann), ("A3", ann)]}
        threads["B1"] = _thread(ben)
        streams: dict[str, Iterator[Frame]] = {}
        heads: dict[str, list[Frame]] = {}
        for name in ["A1", "A2", "A3", "B1"]:
            c = ann if name.startswith("A") else ben
            resp = stack.enter_context(
                c.stream(
                    "POST",
                    f"/v1/threads/{threads[name]}/runs",
                    json={"input": {"message": f"run {name}"}},
                )
            )
            assert resp.status_code == 200
            streams[name] = _frames(resp)
            # A1 takes the only run slot; the others wait, each in its user's queue.
            heads[name] = _read_until(streams[name], lambda f: _status(f) in {"planning", "queued"})
        tails = {name: list(s) for name, s in streams.items()}
    queued = {
        n: [f.data["data"]["position"] for f in heads[n] + tails[n] if _status(f) == "queued"]
        for n in heads
    }
    assert queued == {"A1": [], "A2": [1], "A3": [2, 1], "B1": [1]}
    assert all(_status(t[-1]) == "success" for t in tails.values())
    plans = [r for r in fake_llm.requests if r.get("response_format")]
    order = [next(n for n in threads if f"run {n}" in r["messages"][-1]["content"]) for r in plans]
    assert order == ["A1", "A2", "B1", "A3"]  # FIFO would be A1, A2, A3, B1


def test_a_full_user_queue_answers_429(serve: Any, fake_llm: FakeOpenAI) -> None:
    cfg = quota_settings("memory", policy="queue", concurrent_runs=1, max_queued=1)
    live = serve(cfg)
    fake_llm.delay_s = 0.3  # the first run outlasts the next two requests
    with live.client() as c, contextlib.ExitStack() as stack:
        t1, t2, t3 = _thread(c), _thread(c), _thread(c)
        body = {"input": {"message": "x"}}
        first = _frames(stack.enter_context(c.stream("POST", f"/v1/threads/{t1}/runs", json=body)))
        _read_until(first, lambda f: _status(f) == "planning")
        second = _frames(stack.enter_context(c.stream("POST", f"/v1/threads/{t2}/runs", json=body)))
        assert (
            _read_until(second, lambda f: _status(f) == "queued")[-1].data["data"]["position"] == 1
        )
        resp, _ = stream_run(c, t3, "x")
        _assert_429(resp, "max_queued")
        assert _status(list(second)[-1]) == "success"


def test_two_api_processes_sharing_redis_enforce_one_limit(serve: Any) -> None:
    cfg = quota_settings("redis", runs_per_minute=3)
    one, two = serve(cfg), serve(cfg)
    codes = []
    with one.client() as c1, two.client() as c2:
        for c in [c1, c2, c1, c2, c1]:
            resp, _ = stream_run(c, _thread(c), "hi")
            codes.append(resp.status_code)
        assert c2.get("/v1/usage").json()["usage"]["runs_last_minute"] == 3
    assert codes == [200, 200, 200, 429, 429]


def _keel(live: LiveServer, monkeypatch: pytest.MonkeyPatch, *argv: str) -> int:
    """Run the ``keel`` command against the live server's database."""
    monkeypatch.setenv("KEEL_DATABASE__URL", live.settings.database.url or "")
    get_settings.cache_clear()
    try:
        return main(list(argv))
    finally:
        get_settings.cache_clear()


def _create_key(
    live: LiveServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> str:
    args = ["apikey", "create", "--user", "svc", "--tenant", "acme", "--tier", "enterprise"]
    assert _keel(live, monkeypatch, *args) == 0
    key = capsys.readouterr().out.strip()
    assert key.startswith("keel_")
    return key


def test_api_keys_authenticate_and_have_their_own_quota(
    serve: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    live = serve(quota_settings("memory", runs_per_minute=1))
    key1 = _create_key(live, monkeypatch, capsys)
    key2 = _create_key(live, monkeypatch, capsys)
    rows = live.sql("SELECT key_id, key_hash, user_id, tier FROM api_keys ORDER BY created_at")
    assert [(r["user_id"], r["tier"]) for r in rows[-2:]] == [("svc", "enterprise")] * 2
    assert all(r["key_hash"] not in (key1, key2) and len(r["key_hash"]) == 64 for r in rows)
    as_bearer = httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {key1}"})
    as_header = httpx.Client(base_url=live.url, headers={"X-API-Key": key2})
    with as_bearer as c1, as_header as c2, live.client("svc") as jwt:
        usage = c1.get("/v1/usage").json()
        assert usage["subject"] == f"key:{key1.split('_')[1]}" and usage["tier"] == "enterprise"
        # One run per minute each: key 1, key 2 and the user's own JWT draw on three buckets.
        for c in (c1, c2, jwt):
            resp, frames = stream_run(c, _thread(c), "hi")
            assert resp.status_code == 200 and _status(frames[-1]) == "success"
        resp, _ = stream_run(c1, _thread(c1), "again")
        _assert_429(resp, "runs_per_minute")
        threads = {t["thread_id"] for t in jwt.get("/v1/threads").json()}
        assert len(threads) == 4  # a key acts as its user: same threads
    bad = httpx.Client(base_url=live.url, headers={"X-API-Key": key1[:-2] + "xx"})
    with bad:
        r = bad.get("/v1/usage")
    assert r.status_code == 401 and r.json()["code"] == "unauthenticated"
    assert _keel(live, monkeypatch, "apikey", "revoke", key1.split("_")[1]) == 0
    with httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {key1}"}) as c:
        assert c.get("/v1/usage").status_code == 401


def test_a_day_of_llm_tokens_used_up_answers_429(serve: Any) -> None:
    live = serve(quota_settings("memory", llm_tokens_per_day=5))
    with live.client() as c:
        resp, frames = stream_run(c, _thread(c), "hi")  # admitted; its usage overshoots the day
        assert _status(frames[-1]) == "success"
        used = frames[-1].data["data"]["usage"]["total_tokens"]
        assert c.get("/v1/usage").json()["usage"]["llm_tokens_today"] == used > 5
        resp, _ = stream_run(c, _thread(c), "hi")
    _assert_429(resp, "llm_tokens_per_day")
    assert int(resp.headers["retry-after"]) > 3600


def test_an_unreachable_quota_storage_answers_503_not_500(serve: Any) -> None:
    cfg = {**quota_settings("memory"), "storage_url": f"redis://127.0.0.1:{free_port()}/0"}
    live = serve(cfg)
    with live.client() as c:
        resp, _ = stream_run(c, _thread(c), "hi")
    assert resp.status_code == 503, resp.text
    assert resp.json()["code"] == "quota_storage_unavailable"
    assert resp.headers["retry-after"] == "5"
