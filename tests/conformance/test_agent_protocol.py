"""The LangGraph Agent Protocol, driven only through the real, pinned ``langgraph-sdk`` client.

Keel on a real socket over real Postgres with the scripted model, confirmation on for
bookings: assistants, threads, state and history, runs (background, stream, wait, join,
join_stream after a disconnect, cancel, double-texting), interrupts approved and rejected,
the store, auth failures and another tenant's ids.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest
from langgraph_sdk import get_sync_client
from langgraph_sdk.client import SyncLangGraphClient
from langgraph_sdk.errors import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    UnprocessableEntityError,
)
from langgraph_sdk.schema import Command, StreamPart
from psycopg.rows import dict_row

from core.apikeys import create_key
from tests.conformance.conftest import WRITE
from tests.conftest import LiveServer, tool_invocations
from tests.fakes.openai_server import DEFAULT_ANSWER, FakeOpenAI

ASK = {"messages": [{"role": "user", "content": "What is the answer?"}]}
NODES = ["memory_router", "planner", "researcher", "summarizer", "remember"]
LONG_ANSWER = " ".join(f"word{i}" for i in range(40))
THINK = json.dumps({"steps": [{"description": "Think", "tool": "none"}]})


@pytest.fixture(autouse=True)
def _fresh_script(fake_llm: FakeOpenAI) -> None:
    """Every test starts with an empty script and no delay (conftest resets ``fake_llm``)."""


Connect = Callable[..., SyncLangGraphClient]


@pytest.fixture
def connect(keel: LiveServer) -> Iterator[Connect]:
    """``get_sync_client`` on Keel with these arguments; the clients are closed afterwards."""
    made: list[SyncLangGraphClient] = []

    def make(**kwargs: Any) -> SyncLangGraphClient:
        made.append(get_sync_client(url=keel.url, **kwargs))
        return made[-1]

    yield make
    for client in made:
        client.close()


Sdk = Callable[..., SyncLangGraphClient]


@pytest.fixture
def sdk(keel: LiveServer, connect: Connect) -> Sdk:
    """The SDK client as a user of a tenant (alice of acme by default), with a bearer JWT."""

    def make(user: str = "alice", tenant: str = "acme") -> SyncLangGraphClient:
        token = keel.token(user, tenant, scopes=WRITE)
        return connect(headers={"Authorization": f"Bearer {token}"})

    return make


def problem_of(exc: httpx.HTTPStatusError) -> dict[str, Any]:
    """The problem+json body of a refused call, checked for its trace_id."""
    assert exc.response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = exc.response.json()
    assert body["trace_id"] == exc.response.headers["x-trace-id"]
    return body


def _slow(fake_llm: FakeOpenAI, delay_s: float = 0.05) -> None:
    """The next run writes a 40-word answer, ``delay_s`` per word."""
    fake_llm.delay_s = delay_s
    fake_llm.script.extend([THINK, "A fact.", LONG_ANSWER])


def answer_of(values: dict[str, Any]) -> str:
    last = values["messages"][-1]
    assert last["type"] == "ai"
    text: str = last["content"]
    return text


def test_assistants_one_per_configured_agent(keel: LiveServer, sdk: Sdk) -> None:
    client = sdk()
    found = client.assistants.search()
    assert sorted(a["graph_id"] for a in found) == sorted(keel.settings.agents)
    research = client.assistants.get("research")
    assert client.assistants.get(research["assistant_id"]) == research
    assert [a["graph_id"] for a in client.assistants.search(graph_id="research")] == ["research"]
    graph = client.assistants.get_graph(research["assistant_id"])
    assert {n["id"] for n in graph["nodes"]} >= set(NODES)
    schemas = client.assistants.get_schemas("research")
    assert schemas["graph_id"] == "research"
    assert "messages" in schemas["input_schema"]["properties"]
    assert client.http.get("/info")["flags"]["assistants"] is True  # Agent Chat UI's probe
    with pytest.raises(NotFoundError) as err:
        client.assistants.get("no-such-agent")
    assert problem_of(err.value)["code"] == "not_found"


def test_a_changed_agent_configuration_is_a_new_assistant_version(
    keel: LiveServer, sdk: Sdk
) -> None:
    client = sdk()
    first = client.assistants.get("research")
    assert first["version"] == 1
    agents = dict(keel.settings.agents)
    agents["research"] = agents["research"].model_copy(update={"tools": ["calendar-v1"]})
    with (
        LiveServer(keel.settings.model_copy(update={"agents": agents})) as changed,
        get_sync_client(url=changed.url, api_key=keel.token(scopes=WRITE)) as there,
    ):
        now = there.assistants.get(first["assistant_id"])
        assert now["version"] == 2
        assert now["config"]["configurable"]["tools"] == ["calendar-v1"]
        versions = there.assistants.get_versions(first["assistant_id"])
        assert [v["version"] for v in versions] == [2, 1]
        assert versions[1]["config"] == first["config"]
    assert client.assistants.get("research")["version"] == 1  # a configuration seen before


def test_threads_create_get_update_search_count_delete(sdk: Sdk) -> None:
    client = sdk()
    made = client.threads.create(metadata={"topic": "crud", "n": 1})
    tid = made["thread_id"]
    assert made["metadata"] == {"topic": "crud", "n": 1}
    assert made["status"] == "idle"
    assert client.threads.get(tid)["thread_id"] == tid
    patched = client.threads.update(tid, metadata={"n": 2, "extra": True})
    assert patched["metadata"] == {"topic": "crud", "n": 2, "extra": True}
    other = client.threads.create(metadata={"topic": "other"})
    found = client.threads.search(metadata={"topic": "crud"})
    assert [t["thread_id"] for t in found] == [tid]
    assert client.threads.count(metadata={"topic": "crud"}) == 1
    again = client.threads.create(thread_id=tid, if_exists="do_nothing")
    assert again["metadata"]["n"] == 2
    with pytest.raises(ConflictError):
        client.threads.create(thread_id=tid)
    client.threads.delete(tid)
    with pytest.raises(NotFoundError):
        client.threads.get(tid)
    assert client.threads.get(other["thread_id"])["metadata"] == {"topic": "other"}


def test_wait_answers_the_final_values_and_state_and_history_follow(sdk: Sdk) -> None:
    client = sdk()
    tid = client.threads.create()["thread_id"]
    values = client.runs.wait(tid, "research", input=ASK)
    assert answer_of(values) == DEFAULT_ANSWER
    assert values["messages"][0]["content"] == "What is the answer?"
    state = client.threads.get_state(tid)
    assert state["values"]["messages"] == values["messages"]
    assert state["next"] == []
    assert client.threads.get(tid)["status"] == "idle"
    history = client.threads.get_history(tid, limit=50)
    ids = [h["checkpoint"]["checkpoint_id"] for h in history]
    assert len(ids) == len(set(ids)) >= len(NODES) + 1
    assert history[0]["checkpoint"] == state["checkpoint"]
    (run,) = client.runs.list(tid)
    assert run["status"] == "success"
    # as LangGraph Server tags it: clients list an assistant's threads by these
    assert client.threads.get(tid)["metadata"] == {
        "graph_id": "research",
        "assistant_id": run["assistant_id"],
    }
    assert [t["thread_id"] for t in client.threads.search(metadata={"graph_id": "research"})][
        0
    ] == tid
    assert run["assistant_id"] == client.assistants.get("research")["assistant_id"]
    assert client.runs.get(tid, run["run_id"]) == run


def test_stream_modes_values_updates_tokens_and_custom(sdk: Sdk) -> None:
    client = sdk()
    tid = client.threads.create()["thread_id"]
    parts = list(
        client.runs.stream(
            tid,
            "research",
            input=ASK,
            stream_mode=["values", "updates", "messages-tuple", "custom"],
        )
    )
    assert parts[0].event == "metadata"
    run_id = parts[0].data["run_id"]
    tokens = [p.data for p in parts if p.event == "messages"]
    assert "".join(chunk["content"] for chunk, _ in tokens) == DEFAULT_ANSWER
    assert {meta["langgraph_node"] for _, meta in tokens} == {"summarizer"}
    custom = [p.data for p in parts if p.event == "custom"]
    assert custom[0]["type"] == "run_started"
    assert custom[-1]["type"] == "run_finished"
    assert custom[-1]["data"]["status"] == "success"
    assert [e["seq"] for e in custom] == list(range(1, len(custom) + 1))
    assert [int(p.id) for p in parts if p.event == "custom"] == [e["seq"] for e in custom]
    updates = [p.data for p in parts if p.event == "updates"]
    assert [next(iter(u)) for u in updates] == NODES
    (values,) = [p.data for p in parts if p.event == "values"]
    assert answer_of(values) == DEFAULT_ANSWER
    assert values["messages"][-1]["id"] == tokens[0][0]["id"]  # the streamed message is it
    assert updates[3]["summarizer"]["messages"] == [values["messages"][-1]]
    assert client.runs.get(tid, run_id)["status"] == "success"


def test_threadless_runs_get_a_thread_of_the_callers(sdk: Sdk) -> None:
    client, other = sdk(), sdk("bob", "other")
    assert answer_of(client.runs.wait(None, "research", input=ASK)) == DEFAULT_ANSWER
    parts = list(client.runs.stream(None, "research", input=ASK, stream_mode=["values"]))
    assert answer_of(parts[-1].data) == DEFAULT_ANSWER
    run = client.runs.create(None, "research", input=ASK)
    assert answer_of(client.runs.join(run["thread_id"], run["run_id"])) == DEFAULT_ANSWER
    mine = {t["thread_id"] for t in client.threads.search(limit=100)}
    assert run["thread_id"] in mine
    assert run["thread_id"] not in {t["thread_id"] for t in other.threads.search(limit=100)}


def test_background_run_then_join(sdk: Sdk) -> None:
    client = sdk()
    tid = client.threads.create()["thread_id"]
    run = client.runs.create(tid, "research", input=ASK)
    assert run["status"] in ("pending", "running")
    assert answer_of(client.runs.join(tid, run["run_id"])) == DEFAULT_ANSWER
    assert client.runs.get(tid, run["run_id"])["status"] == "success"


def _ids(parts: list[StreamPart]) -> list[int]:
    return [int(p.id) for p in parts if p.event == "custom" and p.id]


def test_join_stream_after_a_disconnect_resumes_without_gap_or_duplicate(
    sdk: Sdk, fake_llm: FakeOpenAI
) -> None:
    client = sdk()
    tid = client.threads.create()["thread_id"]
    _slow(fake_llm)
    run = client.runs.create(tid, "research", input=ASK)
    first: list[StreamPart] = []
    for part in client.runs.join_stream(tid, run["run_id"], stream_mode=["custom"]):
        first.append(part)
        if part.event == "custom" and part.data["type"] == "text_delta":
            break  # the client goes away mid-answer
    last = first[-1].id
    assert last is not None
    rest = list(
        client.runs.join_stream(tid, run["run_id"], stream_mode=["custom"], last_event_id=last)
    )
    whole = list(client.runs.join_stream(tid, run["run_id"], stream_mode=["custom"]))
    assert _ids(first) and len(_ids(rest)) > len(LONG_ANSWER.split())  # both halves carry ids
    assert _ids(first) + _ids(rest) == _ids(whole)
    assert _ids(whole) == list(range(1, len(_ids(whole)) + 1))
    assert whole[-1].data["type"] == "run_finished"
    texts = [p.data["data"]["text"] for p in whole if p.data.get("type") == "text_delta"]
    assert "".join(texts) == LONG_ANSWER


def test_cancel_with_wait_stops_the_run(sdk: Sdk, fake_llm: FakeOpenAI) -> None:
    client = sdk()
    tid = client.threads.create()["thread_id"]
    _slow(fake_llm, 0.2)
    run = client.runs.create(tid, "research", input=ASK)
    for part in client.runs.join_stream(tid, run["run_id"], stream_mode=["messages-tuple"]):
        if part.event == "messages":
            break  # the answer is being written
    client.runs.cancel(tid, run["run_id"], wait=True)
    assert client.runs.get(tid, run["run_id"])["status"] == "interrupted"
    with pytest.raises(ConflictError):
        client.runs.cancel(tid, run["run_id"])


def test_run_from_an_earlier_checkpoint_forks_the_thread(sdk: Sdk) -> None:
    client = sdk()
    tid = client.threads.create()["thread_id"]
    client.runs.wait(tid, "research", input=ASK)
    client.runs.wait(tid, "research", input={"messages": [{"role": "user", "content": "More?"}]})
    assert len(client.threads.get_state(tid)["values"]["messages"]) == 4
    history = client.threads.get_history(tid, limit=100)
    after_first = next(h for h in history if h["next"] == [] and len(h["values"]["messages"]) == 2)
    forked = client.runs.wait(
        tid,
        "research",
        input={"messages": [{"role": "user", "content": "Instead?"}]},
        checkpoint_id=after_first["checkpoint"]["checkpoint_id"],
    )
    assert [m["content"] for m in forked["messages"]][::2] == ["What is the answer?", "Instead?"]
    with pytest.raises(NotFoundError):
        client.runs.create(tid, "research", input=ASK, checkpoint_id="no-such-checkpoint")


def test_update_state_writes_a_checkpoint(sdk: Sdk) -> None:
    client = sdk()
    tid = client.threads.create()["thread_id"]
    client.runs.wait(tid, "research", input=ASK)
    out = client.threads.update_state(tid, {"summary": "a note"}, as_node="remember")
    state = client.threads.get_state(tid)
    assert state["checkpoint"]["checkpoint_id"] == out["checkpoint"]["checkpoint_id"]
    assert state["values"]["summary"] == "a note"
    at = client.threads.get_state(tid, checkpoint_id=state["parent_checkpoint"]["checkpoint_id"])
    assert at["values"]["summary"] == ""


def test_the_question_keeps_the_id_the_client_gave_it(sdk: Sdk) -> None:
    """As with LangGraph's ``add_messages``: a UI that drew the question under its own id
    finds that message in the state, not a second copy."""
    client = sdk()
    tid = client.threads.create()["thread_id"]
    asked = {"messages": [{"type": "human", "content": "What is the answer?", "id": "q-1"}]}
    values = client.runs.wait(tid, "research", input=asked)
    assert [(m["type"], m["id"]) for m in values["messages"]][0] == ("human", "q-1")
    for bad in (7, "", "x" * 200):
        asked["messages"][0]["id"] = bad
        with pytest.raises(httpx.HTTPStatusError) as err:
            client.runs.wait(tid, "research", input=asked)
        assert problem_of(err.value)["code"] == "invalid_request"


def test_input_must_end_with_a_user_message(sdk: Sdk) -> None:
    client = sdk()
    tid = client.threads.create()["thread_id"]
    bad = {"messages": [{"role": "assistant", "content": "hi"}]}
    with pytest.raises(httpx.HTTPStatusError) as err:  # wait raises httpx's own error
        client.runs.wait(tid, "research", input=bad)
    assert problem_of(err.value)["code"] == "invalid_request"
    with pytest.raises(UnprocessableEntityError) as err:
        client.runs.create(tid, "research", input=ASK, stream_mode=["events"])
    assert "events" in problem_of(err.value)["detail"]


def test_missing_and_bad_credentials_are_401_problem_json(
    keel: LiveServer, connect: Connect
) -> None:
    anonymous = connect(api_key=None)
    with pytest.raises(AuthenticationError) as err:
        anonymous.threads.create()
    assert problem_of(err.value)["code"] == "unauthenticated"
    forged = connect(headers={"Authorization": "Bearer not-a-jwt"})
    with pytest.raises(AuthenticationError):
        forged.assistants.search()
    wrong_key = connect(api_key="keel_0000_nope")
    with pytest.raises(AuthenticationError):
        wrong_key.threads.search()


def test_an_api_key_in_x_api_key_authenticates_as_its_owner(
    keel: LiveServer, sdk: Sdk, connect: Connect
) -> None:
    async def make() -> str:
        url = keel.settings.database.url or ""
        async with await psycopg.AsyncConnection.connect(
            url, autocommit=True, row_factory=dict_row
        ) as conn:
            _, key = await create_key(conn, user="alice", tenant="acme", tier="free", scopes=[])
        return key

    with_key = connect(api_key=asyncio.run(make()))
    tid = sdk().threads.create(metadata={"owner": "alice-key"})["thread_id"]
    assert with_key.threads.get(tid)["metadata"] == {"owner": "alice-key"}


def test_another_tenants_ids_are_404(sdk: Sdk) -> None:
    alice, mallory = sdk(), sdk("mallory", "evil")
    tid = alice.threads.create(metadata={"secret": "alice"})["thread_id"]
    run = alice.runs.create(tid, "research", input=ASK)
    alice.runs.join(tid, run["run_id"])
    for call in (
        lambda: mallory.threads.get(tid),
        lambda: mallory.threads.get_state(tid),
        lambda: mallory.threads.get_history(tid),
        lambda: mallory.threads.update(tid, metadata={"x": 1}),
        lambda: mallory.threads.delete(tid),
        lambda: mallory.runs.get(tid, run["run_id"]),
        lambda: mallory.runs.list(tid),
        lambda: mallory.runs.join(tid, run["run_id"]),
        lambda: list(mallory.runs.join_stream(tid, run["run_id"])),
        lambda: mallory.runs.cancel(tid, run["run_id"]),
        lambda: mallory.runs.wait(tid, "research", input=ASK),
    ):
        with pytest.raises(httpx.HTTPStatusError) as err:  # NotFoundError, or httpx's own
            call()
        assert err.value.response.status_code == 404
        assert "alice" not in err.value.response.text
    assert mallory.threads.search(metadata={"secret": "alice"}) == []
    assert alice.threads.get(tid)["metadata"]["secret"] == "alice"  # mallory's update missed
    assert "x" not in alice.threads.get(tid)["metadata"]


def _book(fake_llm: FakeOpenAI, title: str) -> None:
    fake_llm.script.extend(
        [
            json.dumps(
                {"steps": [{"description": f"Schedule a meeting {title}", "tool": "calendar"}]}
            ),
            json.dumps({"title": title, "starts_at": "2026-12-01T09:00:00+00:00"}),
        ]
    )


def _invoked(live: LiveServer) -> int:
    calls = tool_invocations(live.settings.data_dir, "calendar-v1")
    return sum(r["tool"] == "schedule_meeting" for r in calls)


def _held(client: SyncLangGraphClient, fake_llm: FakeOpenAI, title: str) -> tuple[str, Any]:
    tid = client.threads.create()["thread_id"]
    _book(fake_llm, title)
    ask = {"messages": [{"role": "user", "content": f"Book {title} on Dec 1 at 9"}]}
    parts = list(client.runs.stream(tid, "research", input=ask, stream_mode=["updates"]))
    (held,) = [p.data["__interrupt__"] for p in parts if "__interrupt__" in p.data]
    return tid, held


# As Agent Chat UI answers (LangChain's decisions), as Agent Inbox does, and a plain False.
@pytest.mark.parametrize(
    ("approve", "resume"),
    [
        (True, {"decisions": [{"type": "approve"}]}),
        (True, [{"type": "accept", "args": None}]),
        (False, {"decisions": [{"type": "reject", "message": "not now"}]}),
        (False, False),
    ],
    ids=["approved", "accepted-inbox", "rejected", "rejected-false"],
)
def test_a_held_tool_call_is_an_interrupt_resumed_by_command(
    keel: LiveServer, sdk: Sdk, fake_llm: FakeOpenAI, approve: bool, resume: Any
) -> None:
    client = sdk()
    before = _invoked(keel)
    tid, held = _held(client, fake_llm, f"protocol {approve} {len(json.dumps(resume))}")
    (intr,) = held
    assert intr["value"]["tool_name"] == "calendar.schedule_meeting"
    assert intr["value"]["args"]["title"].startswith(f"protocol {approve}")
    assert intr["value"]["action_request"] == {
        "action": "calendar.schedule_meeting",
        "args": intr["value"]["args"],
    }
    assert intr["value"]["config"]["allow_accept"] and not intr["value"]["config"]["allow_edit"]
    assert intr["value"]["action_requests"][0]["name"] == "calendar.schedule_meeting"
    assert intr["value"]["review_configs"] == [
        {"action_name": "calendar.schedule_meeting", "allowed_decisions": ["approve", "reject"]}
    ]
    thread = client.threads.get(tid)
    assert thread["status"] == "interrupted"
    assert [i["id"] for i in thread["interrupts"][next(iter(thread["interrupts"]))]] == [intr["id"]]
    assert client.threads.get_state(tid)["interrupts"] == held
    fake_llm.script.extend(["Done.", "Your meeting is handled."])
    values = client.runs.wait(tid, "research", command=Command(resume=resume))
    assert answer_of(values) == "Your meeting is handled."
    assert _invoked(keel) == before + (1 if approve else 0)
    assert client.threads.get(tid)["status"] == "idle"
    with pytest.raises(httpx.HTTPStatusError) as err:  # decided once, never twice
        client.runs.wait(tid, "research", command=Command(resume=True))
    assert problem_of(err.value)["code"] == "conflict"


def _busy(client: SyncLangGraphClient, fake_llm: FakeOpenAI, tid: str, ask: Any = ASK) -> str:
    """Start a slow run on ``tid``; returns its id once it writes its answer."""
    _slow(fake_llm)
    run_id: str = client.runs.create(tid, "research", input=ask)["run_id"]
    for part in client.runs.join_stream(tid, run_id, stream_mode=["messages-tuple"]):
        if part.event == "messages":
            break
    return run_id


def test_multitask_reject_refuses_a_second_run(sdk: Sdk, fake_llm: FakeOpenAI) -> None:
    client = sdk()
    tid = client.threads.create()["thread_id"]
    first = _busy(client, fake_llm, tid)
    with pytest.raises(ConflictError):
        client.runs.create(tid, "research", input=ASK, multitask_strategy="reject")
    client.runs.join(tid, first)
    assert [r["status"] for r in client.runs.list(tid)] == ["success"]


def test_multitask_enqueue_runs_both_in_order(sdk: Sdk, fake_llm: FakeOpenAI) -> None:
    client = sdk()
    tid = client.threads.create()["thread_id"]
    _busy(client, fake_llm, tid)
    more = {"messages": [{"role": "user", "content": "And then?"}]}
    second = client.runs.create(tid, "research", input=more, multitask_strategy="enqueue")
    values = client.runs.join(tid, second["run_id"])
    assert [m["content"] for m in values["messages"]][::2] == ["What is the answer?", "And then?"]
    assert answer_of(values) == DEFAULT_ANSWER
    assert [r["status"] for r in client.runs.list(tid)] == ["success", "success"]


@pytest.mark.parametrize("strategy", ["interrupt", "rollback"])
def test_multitask_interrupt_and_rollback_cancel_the_live_run(
    sdk: Sdk, fake_llm: FakeOpenAI, strategy: str
) -> None:
    client = sdk()
    tid = client.threads.create()["thread_id"]
    client.runs.wait(tid, "research", input=ASK)
    first = _busy(client, fake_llm, tid, {"messages": [{"role": "user", "content": "Slow one"}]})
    more = {"messages": [{"role": "user", "content": "Instead"}]}
    second = client.runs.create(tid, "research", input=more, multitask_strategy=strategy)
    values = client.runs.join(tid, second["run_id"])
    assert client.runs.get(tid, first)["status"] == "interrupted"
    asked = [m["content"] for m in values["messages"] if m["type"] == "human"]
    # interrupt keeps what the cancelled run checkpointed; rollback starts from before it
    if strategy == "rollback":
        assert asked == ["What is the answer?", "Instead"]
    else:
        assert asked == ["What is the answer?", "Slow one", "Instead"]


def test_store_items_are_the_callers_long_term_memory(keel: LiveServer, sdk: Sdk) -> None:
    alice, bob = sdk(), sdk("bob", "other")
    alice.store.put_item(["profile"], "city", {"value": "Lisbon"})
    item = alice.store.get_item(["profile"], "city")
    assert (item["namespace"], item["key"], item["value"]) == (
        ["profile"],
        "city",
        {"value": "Lisbon"},
    )
    found = alice.store.search_items(["profile"])
    assert [(i["key"], i["value"]) for i in found["items"]] == [("city", {"value": "Lisbon"})]
    assert alice.store.list_namespaces()["namespaces"] == [["profile"]]
    with pytest.raises(NotFoundError):
        bob.store.get_item(["profile"], "city")
    assert bob.store.search_items(["profile"])["items"] == []
    sealed = keel.sql("SELECT ciphertext FROM memory_long_term WHERE user_id = 'alice'")
    assert b"Lisbon" not in bytes(sealed[0]["ciphertext"])
    alice.store.delete_item(["profile"], "city")
    with pytest.raises(NotFoundError):
        alice.store.get_item(["profile"], "city")
    with pytest.raises(UnprocessableEntityError):
        alice.store.put_item(["elsewhere"], "k", {"value": "v"})
