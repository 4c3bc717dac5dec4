"""Durable runs: a run whose lease lapses is taken over and resumed, its seq continued."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer, make_settings
from tests.fakes.openai_server import FakeOpenAI
from tests.sse import iter_frames, parse

ANSWER = " ".join(f"t{i}" for i in range(80))
PLAN = json.dumps({"steps": [{"description": "s", "tool": "none"}]})


@pytest.fixture(scope="module")
def leased(
    db_url: str, fake_llm: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """The API with short leases (renewed every 0.2 s, lapsed after 1 s)."""
    settings = make_settings(
        db_url,
        fake_llm.base_url,
        tmp_path_factory.mktemp("leased"),
        runs={"heartbeat_s": 0.2, "stale_after_s": 1.0, "max_attempts": 2},
    )
    with LiveServer(settings) as server:
        yield server


def _log(c: httpx.Client, tid: str) -> list[dict[str, Any]]:
    with c.stream("GET", f"/v1/threads/{tid}/stream", params={"after": 0}) as r:
        return [f.data for f in parse(r.iter_lines())]


def _script(fake_llm: FakeOpenAI, plan: str = PLAN, **more: str) -> None:
    """The same replies however often a node asks (it runs again after a take-over)."""
    fake_llm.by_schema.update({"Plan": plan, "text": "finding", "stream": ANSWER, **more})
    fake_llm.delay_s = 0.03


def _orphan(
    live: LiveServer,
    c: httpx.Client,
    attempts: int | None = None,
    until: str = "text_delta",
    settle_s: float = 0.0,
    message: str = "go",
) -> tuple[str, list[dict[str, Any]]]:
    """Start a run; ``settle_s`` after its first ``until`` event, hand it to a dead replica.

    Returns the thread and the events read so far.
    """
    tid = c.post("/v1/threads").json()["thread_id"]
    seen: list[dict[str, Any]] = []
    with c.stream("POST", f"/v1/threads/{tid}/runs", json={"input": {"message": message}}) as r:
        for frame in iter_frames(r.iter_lines()):
            seen.append(frame.data)
            if frame.data["type"] == until:
                break
    time.sleep(settle_s)
    live.sql(
        "UPDATE runs SET owner = 'dead-replica', lease_expires_at = now() - interval '1 second',"
        " attempts = coalesce(%s, attempts) WHERE run_id = %s",
        attempts,
        seen[0]["run_id"],
    )
    return tid, seen


def _ended(live: LiveServer, run_id: str) -> None:
    deadline = time.monotonic() + 30
    while live.sql("SELECT status FROM runs WHERE run_id = %s", run_id)[0]["status"] in (
        "queued",
        "running",
    ):
        assert time.monotonic() < deadline, "the run was not resumed to its end"
        time.sleep(0.1)


def test_a_run_whose_lease_lapsed_is_resumed_with_its_seq_continued(
    leased: LiveServer, fake_llm: FakeOpenAI
) -> None:
    _script(fake_llm)
    with leased.client() as c:
        tid, seen = _orphan(leased, c)
        run_id = seen[0]["run_id"]
        _ended(leased, run_id)
        events = _log(c, tid)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    kinds = [e["type"] for e in events]
    assert kinds.count("run_started") == 1 and kinds.count("run_finished") == 1
    warnings = [e["data"]["code"] for e in events if e["type"] == "warning"]
    assert warnings == ["run_resumed"]
    assert events[-1]["data"]["status"] == "success"
    resumed_at = kinds.index("warning")
    # Nothing of the first owner after the take-over: the warning follows its last event, and
    # the answer after it is whole (the summarizer ran again from its start).
    after = "".join(e["data"]["text"] for e in events[resumed_at:] if e["type"] == "text_delta")
    assert after.split() == ANSWER.split()
    assert (
        leased.sql("SELECT attempts, owner FROM runs WHERE run_id = %s", run_id)[0]["attempts"] == 2
    )


def test_a_run_past_its_attempts_ends_with_a_clear_error(
    leased: LiveServer, fake_llm: FakeOpenAI
) -> None:
    _script(fake_llm)
    with leased.client() as c:
        tid, seen = _orphan(leased, c, attempts=2)  # max_attempts: 2, used up
        with c.stream(
            "GET", f"/v1/threads/{tid}/stream", headers={"Last-Event-ID": str(seen[-1]["seq"])}
        ) as r:
            rest = [f.data for f in parse(r.iter_lines())]
        events = _log(c, tid)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert [e["seq"] for e in seen + rest] == [e["seq"] for e in events]
    errors = [e["data"]["code"] for e in events if e["type"] == "error"]
    assert errors == ["run_attempts_exhausted"]
    assert events[-1]["type"] == "run_finished"
    assert events[-1]["data"]["status"] == "error"


def test_code_cut_off_by_a_crash_is_not_run_again_by_the_resumed_run(
    leased: LiveServer, fake_llm: FakeOpenAI
) -> None:
    code = json.dumps({"code": "import time\ntime.sleep(20)\nprint('done')"})
    _script(fake_llm, json.dumps({"steps": [{"description": "run", "tool": "python_exec"}]}))
    fake_llm.by_schema["CodeArgs"] = code
    log = leased.settings.data_dir / "tools" / "python-v1.log"
    before = log.read_text().count('"invoke"') if log.exists() else 0
    token = leased.token(scopes=["exec:code"])
    with httpx.Client(
        base_url=leased.url, timeout=60, headers={"Authorization": f"Bearer {token}"}
    ) as c:
        # a question with something to compute (else the planner's code step is model-only)
        message = "Wait 20 seconds, then say done."
        tid, seen = _orphan(leased, c, until="tool_call", settle_s=1.0, message=message)
        _ended(leased, seen[0]["run_id"])
        events = _log(c, tid)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    errors = [e["data"]["code"] for e in events if e["type"] == "tool_error"]
    assert errors == ["outcome_unknown"]
    assert [e["data"]["code"] for e in events if e["type"] == "warning"] == ["run_resumed"]
    assert events[-1]["data"]["status"] == "success"
    assert log.read_text().count('"invoke"') - before == 1  # the code ran once, not twice
