"""Human-in-the-loop confirmation of sensitive tools (``tools.confirm``): a held call ends the
run ``interrupted``; ``POST /v1/runs/{run_id}/confirm`` resumes it in a new run that books
exactly once when approved and never when rejected. Real Postgres, the real calendar server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer, make_settings, stream_run, tool_invocations
from tests.fakes.openai_server import FakeOpenAI
from tests.sse import Frame, kinds, one, parse

CONFIRM = ["calendar.schedule_meeting", "python_exec"]
WRITE = ["read:calendar", "write:calendar"]


@pytest.fixture(scope="module")
def hitl(
    db_url: str, fake_llm: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """The API with confirmation on for bookings and code."""
    settings = make_settings(
        db_url, fake_llm.base_url, tmp_path_factory.mktemp("hitl"), tools={"confirm": CONFIRM}
    )
    with LiveServer(settings) as server:
        yield server


def _client(
    live: LiveServer, scopes: list[str], user: str = "alice", tenant: str = "acme"
) -> httpx.Client:
    token = live.token(user, tenant, scopes=scopes)
    return httpx.Client(
        base_url=live.url, timeout=120, headers={"Authorization": f"Bearer {token}"}
    )


def _booking_script(fake_llm: FakeOpenAI, title: str) -> None:
    fake_llm.script.extend(
        [
            json.dumps(
                {"steps": [{"description": f"Schedule a meeting {title}", "tool": "calendar"}]}
            ),
            json.dumps({"title": title, "starts_at": "2026-12-01T09:00:00+00:00"}),
        ]
    )


def _bookings(live: LiveServer, title: str) -> int:
    exists = live.sql("SELECT to_regclass('tool_calendar_events') IS NOT NULL AS e")[0]["e"]
    if not exists:
        return 0
    rows = live.sql("SELECT count(*) AS n FROM tool_calendar_events WHERE title = %s", title)
    n: int = rows[0]["n"]
    return n


def _invoked(live: LiveServer, tool: str) -> int:
    """How many times the calendar server itself ran ``tool`` (its own invocation log)."""
    return sum(r["tool"] == tool for r in tool_invocations(live.settings.data_dir, "calendar-v1"))


def _confirm(
    c: httpx.Client, run_id: str, approve: bool, **body: Any
) -> tuple[httpx.Response, list[Frame]]:
    with c.stream("POST", f"/v1/runs/{run_id}/confirm", json={"approve": approve, **body}) as resp:
        if resp.status_code != 200:
            resp.read()
            return resp, []
        return resp, parse(resp.iter_lines())


def _held(live: LiveServer, c: httpx.Client, fake_llm: FakeOpenAI, title: str) -> list[Frame]:
    _booking_script(fake_llm, title)
    tid = c.post("/v1/threads").json()["thread_id"]
    resp, frames = stream_run(c, tid, f"Book a meeting called {title} on Dec 1 at 9")
    assert resp.status_code == 200, resp.text
    return frames


HELD = [
    ("run_started", None),
    ("agent_status", "planning"),
    ("plan", None),
    ("agent_status", "calling_tool"),
    ("confirmation_required", None),
    ("agent_status", "awaiting_confirmation"),
    ("run_finished", "interrupted"),
]


def test_held_booking_interrupts_and_approval_books_exactly_once(
    hitl: LiveServer, fake_llm: FakeOpenAI
) -> None:
    title = "hitl approve"
    invoked = _invoked(hitl, "schedule_meeting")
    with _client(hitl, WRITE) as c:
        held = _held(hitl, c, fake_llm, title)
        assert kinds(held) == HELD
        asked = one(held, "confirmation_required")
        assert asked == {
            "confirmation_id": asked["confirmation_id"],
            "call_id": asked["confirmation_id"],
            "tool_name": "calendar.schedule_meeting",
            "server": "calendar",
            "version": "1.0.0",
            "args": {
                "title": title,
                "starts_at": "2026-12-01T09:00:00+00:00",
                "duration_min": 30,
            },
            "permissions": ["write:calendar"],
        }
        assert held[-2].data["data"]["tool_name"] == "calendar.schedule_meeting"
        run_id = held[0].data["run_id"]
        assert _bookings(hitl, title) == 0
        assert _invoked(hitl, "schedule_meeting") == invoked
        assert hitl.sql("SELECT status FROM runs WHERE run_id = %s", run_id) == [
            {"status": "interrupted"}
        ]

        fake_llm.script.extend(["Booked for Dec 1.", "Your meeting is booked."])
        resp, frames = _confirm(c, run_id, True, confirmation_id=asked["confirmation_id"])
        assert resp.status_code == 200, resp.text
        assert kinds(frames) == [
            ("run_started", None),
            ("confirmation_decided", None),
            ("agent_status", "calling_tool"),
            ("tool_call", None),
            ("tool_result", None),
            ("agent_status", "thinking"),
            ("step_result", None),
            ("agent_status", "summarizing"),
            *[("text_delta", None)] * 4,
            ("memory", None),
            ("agent_status", "done"),
            ("run_finished", "success"),
        ]
        new_run = frames[0].data["run_id"]
        assert new_run != run_id and frames[0].data["thread_id"] == held[0].data["thread_id"]
        assert frames[0].data["data"]["resumes_run_id"] == run_id
        assert frames[0].data["seq"] == held[-1].data["seq"] + 1
        assert one(frames, "confirmation_decided") == {
            "confirmation_id": asked["confirmation_id"],
            "tool_name": "calendar.schedule_meeting",
            "approve": True,
            "user_id": "alice",
            "comment": None,
        }
        assert one(frames, "tool_call")["args"] == asked["args"]
        assert _bookings(hitl, title) == 1
        assert _invoked(hitl, "schedule_meeting") == invoked + 1

        again, _ = _confirm(c, run_id, True)
        assert again.status_code == 409
        assert again.headers["content-type"].startswith("application/problem+json")
        assert _bookings(hitl, title) == 1
        assert _invoked(hitl, "schedule_meeting") == invoked + 1

    audit = hitl.sql(
        "SELECT trace_id, user_id, tool, decision, outcome, confirmation_id FROM tool_audit"
        " WHERE confirmation_id = %s OR trace_id = %s ORDER BY id",
        asked["confirmation_id"],
        frames[0].data["trace_id"],
    )
    assert [(a["decision"], a["outcome"]) for a in audit] == [
        ("held", "confirmation_required"),
        ("approved", "confirmed"),
        ("allowed", "ok"),
    ]
    assert {a["user_id"] for a in audit} == {"alice"}
    assert [a["trace_id"] for a in audit] == [held[0].data["trace_id"]] + [
        frames[0].data["trace_id"]
    ] * 2


def test_rejection_books_nothing_and_the_run_goes_on_to_its_answer(
    hitl: LiveServer, fake_llm: FakeOpenAI
) -> None:
    title = "hitl reject"
    invoked = _invoked(hitl, "schedule_meeting")
    with _client(hitl, WRITE) as c:
        held = _held(hitl, c, fake_llm, title)
        assert kinds(held) == HELD
        run_id = held[0].data["run_id"]
        fake_llm.script.extend(["Not booked.", "I did not book the meeting."])
        resp, frames = _confirm(c, run_id, False, comment="wrong day")
    assert resp.status_code == 200, resp.text
    assert kinds(frames) == [
        ("run_started", None),
        ("confirmation_decided", None),
        ("tool_error", None),
        ("agent_status", "thinking"),
        ("step_result", None),
        ("agent_status", "summarizing"),
        *[("text_delta", None)] * 6,
        ("memory", None),
        ("agent_status", "done"),
        ("run_finished", "success"),
    ]
    error = one(frames, "tool_error")
    assert (error["code"], error["tool_name"]) == ("not_confirmed", "calendar.schedule_meeting")
    assert error["error"].endswith("the user rejected the call: wrong day")
    assert "".join(f.data["data"]["text"] for f in frames if f.data["type"] == "text_delta") == (
        "I did not book the meeting."
    )
    assert _bookings(hitl, title) == 0
    assert _invoked(hitl, "schedule_meeting") == invoked
    # The researcher's model was told the call was declined.
    assert "the user declined it: wrong day" in json.dumps(fake_llm.requests[-2])
    audit = hitl.sql(
        "SELECT decision, comment FROM tool_audit WHERE confirmation_id = %s ORDER BY id",
        one(held, "confirmation_required")["confirmation_id"],
    )
    assert audit == [
        {"decision": "held", "comment": None},
        {"decision": "rejected", "comment": "wrong day"},
    ]


def test_only_the_runs_owner_may_confirm_and_only_a_waiting_run(
    hitl: LiveServer, fake_llm: FakeOpenAI
) -> None:
    title = "hitl owner"
    with _client(hitl, WRITE) as c:
        held = _held(hitl, c, fake_llm, title)
    run_id = held[0].data["run_id"]
    for user, tenant in (("bob", "acme"), ("alice", "globex")):
        with _client(hitl, WRITE, user, tenant) as other:
            resp, _ = _confirm(other, run_id, True)
            assert resp.status_code == 404, (user, tenant)
            assert resp.headers["content-type"].startswith("application/problem+json")
            assert "trace_id" in resp.json()
    with _client(hitl, WRITE) as c:
        wrong, _ = _confirm(c, run_id, True, confirmation_id="not-the-one")
        assert wrong.status_code == 409
        # A new message supersedes the held call: confirming it afterwards is refused.
        fake_llm.script.extend(["Nothing to do.", "Fine."])
        resp, later = stream_run(c, held[0].data["thread_id"], "Never mind.")
        assert later[-1].data["data"]["status"] == "success"
        stale, _ = _confirm(c, run_id, True)
        assert stale.status_code == 409
        finished, _ = _confirm(c, later[0].data["run_id"], True)
        assert finished.status_code == 409
        assert c.post("/v1/runs/no-such-run/confirm", json={"approve": True}).status_code == 404
    assert _bookings(hitl, title) == 0


def test_a_call_outside_the_callers_scopes_is_denied_never_offered(
    hitl: LiveServer, fake_llm: FakeOpenAI
) -> None:
    title = "hitl denied"
    _booking_script(fake_llm, title)
    fake_llm.script.extend(["I cannot book.", "Not booked."])
    with _client(hitl, ["read:calendar"]) as c:
        tid = c.post("/v1/threads").json()["thread_id"]
        _, frames = stream_run(c, tid, f"Book a meeting called {title}")
    types = [f.data["type"] for f in frames]
    assert "confirmation_required" not in types
    assert one(frames, "tool_error")["code"] == "permission_denied"
    assert frames[-1].data["data"]["status"] == "success"
    assert _bookings(hitl, title) == 0
    audit = hitl.sql(
        "SELECT decision, outcome FROM tool_audit WHERE trace_id = %s", frames[0].data["trace_id"]
    )
    assert audit == [{"decision": "denied", "outcome": "permission_denied"}]


def test_two_confirms_at_once_resume_the_run_once(hitl: LiveServer, fake_llm: FakeOpenAI) -> None:
    title = "hitl race"
    with _client(hitl, WRITE) as c:
        held = _held(hitl, c, fake_llm, title)
    run_id = held[0].data["run_id"]
    fake_llm.script.extend(["Booked.", "Booked once."])
    barrier = threading.Barrier(2)

    def confirm() -> int:
        with _client(hitl, WRITE) as c:
            barrier.wait(timeout=30)
            resp, _ = _confirm(c, run_id, True)
            return resp.status_code

    with ThreadPoolExecutor(2) as pool:
        codes = sorted(pool.map(lambda _: confirm(), range(2)))
    assert codes == [200, 409]
    assert _bookings(hitl, title) == 1
    assert hitl.sql(
        "SELECT count(*) AS n FROM tool_audit WHERE tool = 'calendar.schedule_meeting'"
        " AND decision = 'approved' AND confirmation_id = %s",
        one(held, "confirmation_required")["confirmation_id"],
    ) == [{"n": 1}]


def test_a_resume_that_ended_before_deciding_can_be_confirmed_again(
    hitl: LiveServer, fake_llm: FakeOpenAI
) -> None:
    title = "hitl retry"
    with _client(hitl, WRITE) as c:
        held = _held(hitl, c, fake_llm, title)
        run_id, tid = held[0].data["run_id"], held[0].data["thread_id"]
        # A resuming run cancelled while queued: it never fed the decision to the graph.
        hitl.sql(
            "INSERT INTO runs (run_id, thread_id, trace_id, agent, status, resumes)"
            " VALUES ('cancelled-resume', %s, 't', 'research', 'cancelled', %s)",
            tid,
            run_id,
        )
        hitl.sql("UPDATE runs SET resumed_by = 'cancelled-resume' WHERE run_id = %s", run_id)
        fake_llm.script.extend(["Booked.", "Booked after all."])
        resp, frames = _confirm(c, run_id, True)
        assert resp.status_code == 200, resp.text
        assert frames[-1].data["data"]["status"] == "success"
        assert _confirm(c, run_id, True)[0].status_code == 409
    assert _bookings(hitl, title) == 1


def test_confirmed_code_that_fails_is_fixed_and_held_again_not_run_unasked(
    hitl: LiveServer, fake_llm: FakeOpenAI
) -> None:
    plan = json.dumps({"steps": [{"description": "Compute it", "tool": "python_exec"}]})
    broken = json.dumps({"code": "print(undefined_name)"})
    fixed = json.dumps({"code": "print(6 * 7)"})
    fake_llm.script.extend([plan, broken])
    with _client(hitl, ["exec:code"]) as c:
        _, first = stream_run(c, c.post("/v1/threads").json()["thread_id"], "Compute 6 * 7")
        assert first[-1].data["data"]["status"] == "interrupted"
        fake_llm.script.extend([fixed])
        _, second = _confirm(c, first[0].data["run_id"], True)
        # The approved code ran and failed; its fix waits for a new approval.
        ran = [f.data["data"]["result"] for f in second if f.data["type"] == "tool_result"]
        assert len(ran) == 1 and "NameError" in str(ran[0]["error"])
        held = [f.data["data"] for f in second if f.data["type"] == "confirmation_required"]
        assert [h["args"]["code"] for h in held] == ["print(6 * 7)"]
        assert second[-1].data["data"]["status"] == "interrupted"
        fake_llm.script.extend(["It printed 42.", "6 * 7 = 42."])
        _, third = _confirm(c, second[0].data["run_id"], True)
    ran = [f.data["data"]["result"] for f in third if f.data["type"] == "tool_result"]
    assert [r["stdout"] for r in ran] == ["42\n"]
    assert not [f for f in third if f.data["type"] == "confirmation_required"]
    assert third[-1].data["data"]["status"] == "success"
