"""Memory in runs: a second question is answered from session memory without the tool call,
and the profile reaches a prompt only with the scope and only the field the question selects."""

from __future__ import annotations

import json
from typing import Any

import httpx

from memory.long_term import SCOPE
from tests.conftest import LiveServer, stream_run
from tests.fakes.openai_server import FakeOpenAI
from tests.sse import Frame

FINDING = "The snapshot lists tokio (30k stars) and ripgrep as the trending Rust repositories."


def _plan(tool: str, description: str) -> str:
    return json.dumps({"steps": [{"description": description, "tool": tool}]})


def _client(live: LiveServer, scopes: list[str], user: str = "alice") -> httpx.Client:
    token = live.token(user, "acme", scopes=scopes)
    return httpx.Client(
        base_url=live.url, timeout=120, headers={"Authorization": f"Bearer {token}"}
    )


def _thread(c: httpx.Client) -> str:
    thread_id: str = c.post("/v1/threads").json()["thread_id"]
    return thread_id


def _of(frames: list[Frame], type_: str) -> list[dict[str, Any]]:
    return [{"node": f.data["node"], **f.data["data"]} for f in frames if f.data["type"] == type_]


def _prompts(fake_llm: FakeOpenAI) -> str:
    return json.dumps([r["messages"] for r in fake_llm.requests])


def test_second_question_is_answered_from_session_memory_without_the_tool(
    live: LiveServer, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script.extend(
        [
            _plan("github_trending", "List trending Rust repositories this week"),
            FINDING,
            "Trending Rust: tokio and ripgrep.",
            _plan("github_trending", "List trending Rust repositories this week"),
            "From memory: tokio and ripgrep.",
            "Still tokio and ripgrep.",
        ]
    )
    with _client(live, []) as c:
        thread = _thread(c)
        _, first = stream_run(c, thread, "What are the trending Rust repositories this week?")
        _, second = stream_run(c, thread, "Which Rust repositories were trending this week?")
    assert len(_of(first, "tool_call")) == 1
    assert _of(first, "memory") == [
        {"node": "remember", "store": "session", "op": "write", "hits": 1}
    ]
    assert _of(second, "tool_call") == []
    assert _of(second, "memory") == [
        {"node": "memory_router", "store": "session", "op": "read", "hits": 1}
    ]
    (plan,) = _of(second, "plan")
    assert plan["steps"] == [
        {
            "description": "List trending Rust repositories this week (from session memory)",
            "tool": "none",
        }
    ]
    summarizer_prompt = fake_llm.requests[-1]["messages"][-1]["content"]
    assert FINDING in summarizer_prompt
    assert "Known from this thread" in summarizer_prompt


def test_profile_reaches_prompts_only_with_the_scope_and_when_selected(
    live: LiveServer, fake_llm: FakeOpenAI
) -> None:
    with _client(live, [SCOPE], user="carol") as c:
        c.put(
            "/v1/memory/long-term",
            json={"fields": {"diet": "vegetarian, allergic to peanuts", "home_city": "Lisbon"}},
        ).raise_for_status()
    question = "What is my diet, so I can order lunch?"
    with _client(live, [], user="carol") as c:
        _, frames = stream_run(c, _thread(c), question)
    assert _of(frames, "memory") == []
    assert "peanuts" not in _prompts(fake_llm) and "Lisbon" not in _prompts(fake_llm)

    fake_llm.reset()
    with _client(live, [SCOPE], user="carol") as c:
        _, frames = stream_run(c, _thread(c), question)
        _, unrelated = stream_run(c, _thread(c), "Why is the sky blue?")
    assert _of(frames, "memory") == [
        {"node": "memory_router", "store": "long_term", "op": "read", "hits": 1}
    ]
    assert _of(unrelated, "memory") == []
    prompts = _prompts(fake_llm)
    assert "diet: vegetarian, allergic to peanuts" in prompts
    assert "Lisbon" not in prompts


def _answer(frames: list[Frame]) -> str:
    return "".join(str(d["text"]) for d in _of(frames, "text_delta"))


def test_remember_recall_in_another_thread_and_forget(
    live: LiveServer, fake_llm: FakeOpenAI
) -> None:
    """ "Remember …" writes the caller's long-term memory (no plan, no tool, no model: the answer
    says what was saved), another thread recalls it into the researcher's and the summarizer's
    prompts, "forget …" deletes it."""
    with _client(live, [SCOPE], user="dora") as c:
        _, saved = stream_run(c, _thread(c), "Remember that my favourite colour is green.")
        assert c.get("/v1/memory/long-term").json()["fields"] == {"favourite_colour": "green"}
        assert _of(saved, "plan") == [{"node": "planner", "steps": []}]
        assert _of(saved, "memory")[0] == {
            "node": "memory_router",
            "store": "long_term",
            "op": "write",
            "hits": 1,
        }
        assert fake_llm.requests == []  # no plan, no step, and the answer is the note
        assert _answer(saved) == "Saved to your long-term memory: favourite colour = green."
        assert saved[-1].data["data"]["status"] == "success"

        fake_llm.reset()
        fake_llm.script.extend([_plan("none", "Recall the colour"), "It is green.", "Green."])
        _, recalled = stream_run(c, _thread(c), "What is my favourite colour?")
        researcher, summarizer = fake_llm.requests[1], fake_llm.requests[2]
        for request in (researcher, summarizer):
            assert "favourite_colour: green" in json.dumps(request["messages"])
        assert recalled[-1].data["data"]["status"] == "success"

        fake_llm.reset()
        _, forgot = stream_run(c, _thread(c), "Forget my favourite colour.")
        assert c.get("/v1/memory/long-term").json()["fields"] == {}
        assert [(m["store"], m["op"]) for m in _of(forgot, "memory")] == [("long_term", "delete")]
        assert _answer(forgot) == "Deleted from your long-term memory: favourite colour."
        assert fake_llm.requests == []


def test_remember_without_the_scope_says_it_was_not_saved(
    live: LiveServer, fake_llm: FakeOpenAI
) -> None:
    with _client(live, [], user="ed") as c:
        _, frames = stream_run(c, _thread(c), "Remember that my favourite colour is blue.")
    assert _of(frames, "plan") == [{"node": "planner", "steps": []}]
    assert "python_exec" not in json.dumps([f.data for f in frames])
    assert frames[-1].data["data"]["status"] == "success"
    assert "lacks the `memory:long_term` scope" in _answer(frames)
    assert fake_llm.requests == []
