"""A run end to end over HTTP: real Postgres, real langchain-openai wire path, scripted model."""

from __future__ import annotations

import json

import pytest

from tests.conftest import LiveServer, stream_run
from tests.fakes.openai_server import FakeOpenAI


def _new_thread(live: LiveServer, user: str = "alice", tenant: str = "acme") -> str:
    with live.client(user, tenant) as c:
        r = c.post("/v1/threads")
    assert r.status_code == 201, r.text
    thread_id: str = r.json()["thread_id"]
    return thread_id


def test_run_streams_envelopes_ending_in_run_finished(
    live: LiveServer, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script.extend(
        [
            json.dumps(
                {
                    "steps": [
                        {"description": "Find A", "tool": "none"},
                        {"description": "Find B", "tool": "none"},
                    ]
                }
            ),
            "A is one.",
            "B is two.",
            "So A plus B is three.",
        ]
    )
    thread_id = _new_thread(live)
    with live.client() as c:
        resp, frames = stream_run(c, thread_id, "What is A plus B?")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    trace_id = resp.headers["x-trace-id"]

    kinds = [(f.data["type"], f.data["node"], f.data["data"].get("status")) for f in frames]
    assert kinds == [
        ("run_started", None, None),
        ("agent_status", "planner", "planning"),
        ("plan", "planner", None),
        ("agent_status", "researcher", "thinking"),
        ("step_result", "researcher", None),
        ("agent_status", "researcher", "thinking"),
        ("step_result", "researcher", None),
        ("agent_status", "summarizer", "summarizing"),
        *[("text_delta", "summarizer", None)] * 6,
        ("agent_status", None, "done"),
        ("run_finished", None, "success"),
    ]
    assert [f.data["seq"] for f in frames] == list(range(1, len(frames) + 1))
    assert [f.id for f in frames] == [str(f.data["seq"]) for f in frames]
    assert all(f.event == f.data["type"] for f in frames)
    assert {f.data["trace_id"] for f in frames} == {trace_id}
    assert {f.data["thread_id"] for f in frames} == {thread_id}
    assert len({f.data["run_id"] for f in frames}) == 1
    answer = "".join(f.data["data"]["text"] for f in frames if f.data["type"] == "text_delta")
    assert answer == "So A plus B is three."
    finished = frames[-1].data["data"]
    assert finished["status"] == "success"
    assert finished["usage"]["total_tokens"] > 0

    # The researcher saw the plan's steps; the summarizer saw the findings.
    assert "Sub-question: Find B" in fake_llm.requests[2]["messages"][-1]["content"]
    assert "B is two." in fake_llm.requests[3]["messages"][-1]["content"]
    assert fake_llm.requests[0]["response_format"]["type"] == "json_schema"

    rows = live.sql("SELECT seq, body FROM events WHERE thread_id = %s ORDER BY seq", thread_id)
    assert [r["body"] for r in rows] == [f.data for f in frames]
    run = live.sql("SELECT status, trace_id FROM runs WHERE thread_id = %s", thread_id)
    assert run == [{"status": "success", "trace_id": trace_id}]


def test_history_lists_checkpoints_of_each_step(live: LiveServer) -> None:
    thread_id = _new_thread(live)
    with live.client() as c:
        stream_run(c, thread_id, "hello")
        r = c.get(f"/v1/threads/{thread_id}/history")
    assert r.status_code == 200
    history = r.json()
    assert [h["node"] for h in history] == [
        "remember",
        "summarizer",
        "researcher",
        "planner",
        "memory_router",
        "__start__",
        "input",
    ][: len(history)]
    assert [h["step"] for h in history] == [5, 4, 3, 2, 1, 0, -1]
    assert history[0]["next"] == []
    assert history[1]["parent_checkpoint_id"] == history[2]["checkpoint_id"]


def test_second_run_continues_seq_and_conversation(live: LiveServer, fake_llm: FakeOpenAI) -> None:
    thread_id = _new_thread(live)
    with live.client() as c:
        _, first = stream_run(c, thread_id, "first question")
        _, second = stream_run(c, thread_id, "second question")
    assert second[0].data["seq"] == first[-1].data["seq"] + 1
    assert first[-1].data["data"]["status"] == second[-1].data["data"]["status"] == "success"
    # The second turn planned anew and saw the first turn's answer in its conversation.
    assert [f.data["type"] for f in second].count("plan") == 1
    assert second[0].data["run_id"] != first[0].data["run_id"]
    seqs = [
        r["seq"]
        for r in live.sql("SELECT seq FROM events WHERE thread_id = %s ORDER BY seq", thread_id)
    ]
    assert seqs == list(range(1, len(first) + len(second) + 1))


def test_traceparent_sets_the_trace_id(live: LiveServer) -> None:
    thread_id = _new_thread(live)
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    with live.client() as c:
        c.headers["traceparent"] = f"00-{trace}-00f067aa0ba902b7-01"
        resp, frames = stream_run(c, thread_id, "hi")
    assert resp.headers["x-trace-id"] == trace
    assert {f.data["trace_id"] for f in frames} == {trace}


def test_model_outage_ends_with_error_and_run_finished(
    live: LiveServer, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script.extend(["!status 500"] * 2)  # the first call and its one retry
    thread_id = _new_thread(live)
    with live.client() as c:
        _, frames = stream_run(c, thread_id, "hi")
    tail = [(f.data["type"], f.data["data"].get("status")) for f in frames[-3:]]
    assert tail == [("agent_status", "error"), ("error", None), ("run_finished", "error")]
    assert frames[-2].data["data"] == {
        "code": "model_error",
        "message": "The language model is not answering right now (HTTP 500). Please try"
        " again in a moment, or rephrase your question.",
    }
    assert "Traceback" not in frames[-2].data["data"]["message"]
    assert live.sql("SELECT status FROM runs WHERE thread_id = %s", thread_id) == [
        {"status": "error"}
    ]
    with live.client() as c:  # the thread stays usable
        _, again = stream_run(c, thread_id, "hi again")
    assert again[-1].data["data"]["status"] == "success"


def test_invalid_plan_degrades_to_one_step_with_a_warning(
    live: LiveServer, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script.append("this is not a plan")
    thread_id = _new_thread(live)
    with live.client() as c:
        _, frames = stream_run(c, thread_id, "hi")
    types = [f.data["type"] for f in frames]
    assert types[-1] == "run_finished"
    # An invalid plan degrades to one model-only step, told as a warning.
    warning = next(f.data["data"] for f in frames if f.data["type"] == "warning")
    assert warning["code"] == "plan_invalid"
    assert frames[-1].data["data"]["status"] == "success"


def test_threads_are_private_to_their_owner(live: LiveServer) -> None:
    thread_id = _new_thread(live, "alice", "acme")
    with live.client("mallory", "evil") as other:
        assert other.get(f"/v1/threads/{thread_id}/history").status_code == 404
        r = other.post(f"/v1/threads/{thread_id}/runs", json={"input": {"message": "x"}})
        assert r.status_code == 404
        assert r.headers["content-type"] == "application/problem+json"
        assert thread_id not in r.text or r.json()["code"] == "not_found"
        assert all(t["thread_id"] != thread_id for t in other.get("/v1/threads").json())
    with live.client("bob", "acme") as same_tenant:
        assert same_tenant.get(f"/v1/replay/{thread_id}").status_code == 404
    with live.client("alice", "acme") as owner:
        assert thread_id in [t["thread_id"] for t in owner.get("/v1/threads").json()]


def test_stream_and_replay_resume_after_last_event_id(live: LiveServer) -> None:
    thread_id = _new_thread(live)
    with live.client() as c:
        _, frames = stream_run(c, thread_id, "hi")
        with c.stream(
            "GET", f"/v1/threads/{thread_id}/stream", headers={"Last-Event-ID": "5"}
        ) as r:
            from tests.sse import parse

            resumed = parse(r.iter_lines())
        with c.stream("GET", f"/v1/replay/{thread_id}", params={"after": 0}) as r:
            replayed = parse(r.iter_lines())
    assert [f.data for f in resumed] == [f.data for f in frames[5:]]
    assert [f.data for f in replayed] == [f.data for f in frames]


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_health_endpoints(live: LiveServer, path: str) -> None:
    with live.client() as c:
        r = c.get(path)
    assert r.status_code == 200
    assert r.json()["status"] == "ok"


def test_event_schema_lists_every_type(live: LiveServer) -> None:
    with live.client() as c:
        schema = c.get("/v1/schema/events").json()
    mapping = schema["discriminator"]["mapping"]
    assert {
        "run_started",
        "agent_status",
        "text_delta",
        "run_finished",
        "error",
        "tool_error",
        "repair",
        "warning",
        "code_block",
        "image_generated",
        "table",
        "memory",
    } <= set(mapping)
