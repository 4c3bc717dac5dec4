"""Runs that call tools over HTTP: pinned versions per agent, permissions, charts, GET /v1/tools."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer, make_settings, stream_run, tool_invocations
from tests.fakes.openai_server import FakeOpenAI
from tests.sse import Frame, iter_frames, kinds, one

CHART_CODE = (
    "import matplotlib.pyplot as plt\n"
    "xs = list(range(1, 6))\n"
    "plt.plot(xs, [x * x for x in xs])\n"
    "open('squares.csv', 'w').write('n,square\\n' + ''.join(f'{x},{x*x}\\n' for x in xs))\n"
    "print('plotted')\n"
)


def _plan(tool: str, description: str) -> str:
    return json.dumps({"steps": [{"description": description, "tool": tool}]})


def _client(
    live: LiveServer, scopes: list[str], user: str = "alice", tenant: str = "acme"
) -> httpx.Client:
    token = live.token(user, tenant, scopes=scopes)
    return httpx.Client(
        base_url=live.url, timeout=120, headers={"Authorization": f"Bearer {token}"}
    )


def _thread(c: httpx.Client) -> str:
    r = c.post("/v1/threads")
    assert r.status_code == 201, r.text
    thread_id: str = r.json()["thread_id"]
    return thread_id


def test_trending_python_run_calls_github_v2(live: LiveServer, fake_llm: FakeOpenAI) -> None:
    fake_llm.script.extend(
        [
            _plan("github_trending", "List trending Python repositories this week"),
            "Transformers leads the snapshot.",
            "Trending Python: transformers, langgraph.",
        ]
    )
    with _client(live, []) as c:
        resp, frames = stream_run(c, _thread(c), "What are the trending Python repos?")
    assert resp.status_code == 200
    assert kinds(frames) == [
        ("run_started", None),
        ("agent_status", "planning"),
        ("plan", None),
        ("agent_status", "calling_tool"),
        ("tool_call", None),
        ("tool_result", None),
        ("agent_status", "thinking"),
        ("step_result", None),
        ("agent_status", "summarizing"),
        *[("text_delta", None)] * 4,
        ("memory", None),  # the tool finding is kept in session memory
        ("agent_status", "done"),
        ("run_finished", "success"),
    ]
    assert frames[3].data["data"]["tool_name"] == "github_trending.trending_repos"
    call, result = one(frames, "tool_call"), one(frames, "tool_result")
    assert call == {
        "call_id": call["call_id"],
        "tool_name": "github_trending.trending_repos",
        "server": "github_trending",
        "version": "2.0.0",
        "args": {"language": "python", "since": "weekly", "limit": 5},
    }
    assert (result["call_id"], result["server"], result["version"]) == (
        call["call_id"],
        "github_trending",
        "2.0.0",
    )
    assert result["duration_ms"] > 0
    assert result["result"]["source"] == "snapshot"
    assert result["result"]["repos"][0]["full_name"] == "huggingface/transformers"
    # The researcher's model saw the tool's result.
    assert "huggingface/transformers" in fake_llm.requests[1]["messages"][-1]["content"]


def test_research_legacy_agent_calls_github_v1(live: LiveServer, fake_llm: FakeOpenAI) -> None:
    fake_llm.script.extend(
        [_plan("github_trending", "Trending Rust repositories"), "Ruff and tokio.", "Ruff."]
    )
    with _client(live, []) as c:
        _, frames = stream_run(c, _thread(c), "Trending Rust repos?", agent="research_legacy")
    call, result = one(frames, "tool_call"), one(frames, "tool_result")
    assert (call["version"], call["args"]) == ("1.0.0", {"lang": "rust"})
    assert result["result"].startswith("source: snapshot\nastral-sh/ruff (")
    assert frames[-1].data["data"]["status"] == "success"


def test_python_exec_without_exec_code_never_runs(
    live: LiveServer, fake_llm: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    fake_llm.script.extend(
        [
            _plan("python_exec", "Plot squares of 1..5"),
            json.dumps({"code": "print('should not run')"}),
            "I could not run code.",
            "No chart.",
        ]
    )
    before = len(tool_invocations(live.settings.data_dir, "python-v1"))
    with _client(live, ["read:calendar"]) as c:
        _, frames = stream_run(c, _thread(c), "Plot the squares of 1 to 5")
    error = one(frames, "tool_error")
    assert error == {
        "call_id": error["call_id"],
        "tool_name": "python_exec.run_python",
        "code": "permission_denied",
        "error": "python_exec.run_python@1.0.0 needs scope exec:code",
        "expected": None,
        "hint": "ask for a token with scope exec:code",
        "server": "python_exec",
        "version": "1.0.0",
    }
    assert not [f for f in frames if f.data["type"] in {"tool_result", "image_generated"}]
    assert frames[-1].data["data"]["status"] == "success"
    assert len(tool_invocations(live.settings.data_dir, "python-v1")) == before == 0
    logged = [getattr(r, "keel", {}) for r in caplog.records if r.name == "tools.pipeline"]
    assert [(k["code"], k["trace_id"]) for k in logged] == [
        ("permission_denied", frames[0].data["trace_id"])
    ]


def test_chart_request_streams_an_image_whose_url_serves_the_png(
    live: LiveServer, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script.extend(
        [
            _plan("python_exec", "Plot squares of 1..5"),
            json.dumps({"code": CHART_CODE}),
            "The chart shows squares.",
            "Here is the chart.",
        ]
    )
    with _client(live, ["exec:code"]) as c:
        _, frames = stream_run(c, _thread(c), "Plot the squares of 1 to 5")
        types = [f.data["type"] for f in frames]
        at = types.index("tool_call")
        assert types[at : at + 5] == [
            "tool_call",
            "code_block",
            "image_generated",
            "table",
            "tool_result",
        ]
        assert one(frames, "code_block") == {"language": "python", "code": CHART_CODE}
        assert one(frames, "table") == {
            "columns": ["n", "square"],
            "rows": [[str(x), str(x * x)] for x in range(1, 6)],
            "title": "squares.csv",
        }
        result = one(frames, "tool_result")["result"]
        assert (result["stdout"], result["images"], result["killed"]) == ("plotted\n", 1, None)
        image = one(frames, "image_generated")
        png = c.get(image["url"])
        assert png.status_code == 200
        assert png.headers["content-type"] == "image/png"
        assert png.content.startswith(b"\x89PNG\r\n\x1a\n")
    with _client(live, ["exec:code"], user="eve", tenant="globex") as other:
        assert other.get(image["url"]).status_code == 404
    with _client(live, ["exec:code"], user="bob") as colleague:  # same tenant, other user
        assert colleague.get(image["url"]).status_code == 404
    assert [r["user"] for r in tool_invocations(live.settings.data_dir, "python-v1")][-1] == "alice"


def test_get_tools_lists_servers_versions_permissions_and_schemas(live: LiveServer) -> None:
    with _client(live, []) as c:
        body = c.get("/v1/tools").json()
    assert body["refused"] == {}
    tools = {(t["pin"], t["name"]): t for t in body["tools"]}
    assert set(tools) == {
        ("github-v2", "trending_repos"),
        ("github-v1", "trending_repos"),
        ("documents-v2", "search_documents"),
        ("documents-v1", "search_documents"),
        ("python-v1", "run_python"),
        ("calendar-v1", "list_events"),
        ("calendar-v1", "schedule_meeting"),
    }
    py = tools[("python-v1", "run_python")]
    assert (py["server"], py["version"], py["permissions"], py["sandbox"]) == (
        "python_exec",
        "1.0.0",
        ["exec:code"],
        True,
    )
    assert tools[("github-v1", "trending_repos")]["agents"] == ["research_legacy"]
    assert tools[("documents-v2", "search_documents")]["agents"] == ["research"]
    assert tools[("documents-v1", "search_documents")]["agents"] == ["research_legacy"]
    assert tools[("github-v2", "trending_repos")]["input_schema"]["required"] == ["language"]


def test_unknown_agent_is_404(live: LiveServer) -> None:
    with _client(live, []) as c:
        r = c.post(
            f"/v1/threads/{_thread(c)}/runs",
            json={"input": {"message": "hi"}, "agent": "nobody"},
        )
    assert r.status_code == 404


def test_memory_blow_up_is_a_sandbox_limit_tool_error_and_the_run_goes_on(
    live: LiveServer, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script.extend(
        [
            _plan("python_exec", "Allocate a huge buffer"),
            json.dumps({"code": "x = bytearray(2 * 1024**3)"}),
            "The computation ran out of memory.",
            "It did not fit in memory.",
        ]
    )
    with _client(live, ["exec:code"]) as c:
        _, frames = stream_run(c, _thread(c), "Allocate 2 GB")
    error = one(frames, "tool_error")
    assert (error["code"], error["error"]) == (
        "sandbox_limit",
        "python_exec.run_python: stopped by the sandbox: memory limit",
    )
    assert "MemoryError" in one(frames, "tool_result")["result"]["error"]
    assert frames[-1].data["data"]["status"] == "success"


def test_unknown_tool_step_is_a_tool_error(live: LiveServer, fake_llm: FakeOpenAI) -> None:
    fake_llm.script.extend(
        [_plan("calendar", "List my meetings"), "No calendar for you.", "No calendar."]
    )
    with _client(live, []) as c:
        _, frames = stream_run(c, _thread(c), "What's on my calendar?", agent="research_legacy")
    error = one(frames, "tool_error")
    assert (error["code"], error["tool_name"]) == ("unpinned_version", "calendar")
    assert "agent 'research_legacy' pins no version of calendar" in error["error"]
    assert frames[-1].data["data"]["status"] == "success"


def test_stopping_the_api_stops_every_tool_server(
    db_url: str, fake_llm: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> None:
    settings = make_settings(db_url, fake_llm.base_url, tmp_path_factory.mktemp("stop"))
    with LiveServer(settings):
        pass
    logs = sorted((settings.data_dir / "tools").glob("*.log"))
    assert [p.name for p in logs if not p.name.endswith(".stderr.log")] == [
        "calendar-v1.log",
        "documents-v1.log",
        "documents-v2.log",
        "github-v1.log",
        "github-v2.log",
        "python-v1.log",
    ]
    pids = [
        json.loads(line)["pid"]
        for p in logs
        if not p.name.endswith(".stderr.log")
        for line in p.read_text().splitlines()
    ]
    assert len(pids) == 6
    assert [pid for pid in pids if Path(f"/proc/{pid}").exists()] == []


def test_cancel_mid_tool_call(live: LiveServer, fake_llm: FakeOpenAI) -> None:
    fake_llm.script.extend(
        [
            _plan("python_exec", "Wait a long time"),
            json.dumps({"code": "import time\ntime.sleep(12)\nprint('done')"}),
        ]
    )
    with _client(live, ["exec:code"]) as c:
        tid = _thread(c)
        frames: list[Frame] = []
        with c.stream("POST", f"/v1/threads/{tid}/runs", json={"input": {"message": "wait"}}) as r:
            for frame in iter_frames(r.iter_lines()):
                frames.append(frame)
                if frames[-1].data["type"] == "tool_call":
                    assert c.post(f"/v1/runs/{frames[-1].data['run_id']}/cancel").status_code == 202
        assert kinds(frames)[-2:] == [("agent_status", "cancelled"), ("run_finished", "cancelled")]
        assert "tool_result" not in [f.data["type"] for f in frames]
        # The 12 s sleep was abandoned: the run ended well before the tool would have answered.
        duration = frames[-1].data["data"]["duration_ms"]
        assert duration < 10_000, duration
        fake_llm.script.extend([_plan("none", "answer"), "fine", "All good."])
        _, again = stream_run(c, tid, "still there?")
    assert again[-1].data["data"]["status"] == "success"


def test_tool_calls_over_quota_are_tool_errors(
    db_url: str, fake_llm: FakeOpenAI, tmp_path: Path
) -> None:
    from tests.quota_helpers import quota_settings

    settings = make_settings(
        db_url,
        fake_llm.base_url,
        tmp_path,
        quotas=quota_settings("memory", tool_calls_per_minute=1),
    )
    plan = json.dumps(
        {
            "steps": [
                {"description": "Trending Rust repos", "tool": "github_trending"},
                {"description": "Trending Go repos", "tool": "github_trending"},
            ]
        }
    )
    fake_llm.script.extend([plan, "rust finding", "go finding", "Both listed."])
    with LiveServer(settings) as live, _client(live, []) as c:
        _, frames = stream_run(c, _thread(c), "Trending Rust and Go repositories?")
        usage = c.get("/v1/usage").json()
    results = [f.data["data"] for f in frames if f.data["type"] == "tool_result"]
    errors = [f.data["data"] for f in frames if f.data["type"] == "tool_error"]
    assert len(results) == 1
    assert [e["code"] for e in errors] == ["quota_exceeded"]
    assert "tool calls per minute" in errors[0]["error"]
    assert frames[-1].data["data"]["status"] == "success"
    assert usage["usage"]["tool_calls_last_minute"] == 1


def test_tool_calls_are_limited_by_the_callers_own_tier_and_api_key(
    db_url: str, fake_llm: FakeOpenAI, tmp_path: Path
) -> None:
    """Regression: runs rebuilt the caller's identity without tier and key (issue 20 item 2)."""
    import asyncio

    from psycopg import AsyncConnection

    from core.apikeys import create_key
    from tests.quota_helpers import quota_settings

    quotas = quota_settings("memory", tool_calls_per_minute=1)
    quotas["pro"] = {**quotas["pro"], "tool_calls_per_minute": 3}
    settings = make_settings(db_url, fake_llm.base_url, tmp_path, quotas=quotas)
    two_calls = json.dumps(
        {
            "steps": [
                {"description": "Trending Rust repos", "tool": "github_trending"},
                {"description": "Trending Go repos", "tool": "github_trending"},
            ]
        }
    )

    async def new_key() -> str:
        async with await AsyncConnection.connect(db_url, autocommit=True) as conn:
            _, key = await create_key(conn, user="bob", tenant="acme", tier="pro", scopes=[])
        return key

    with LiveServer(settings) as live:
        key = asyncio.run(new_key())
        pro = httpx.Client(
            base_url=live.url,
            timeout=120,
            headers={"Authorization": f"Bearer {live.token('carol', 'acme', tier='pro')}"},
        )
        by_key = httpx.Client(base_url=live.url, timeout=120, headers={"X-API-Key": key})
        with pro, by_key, live.client("bob") as bob:
            for c in (pro, by_key):
                fake_llm.script.extend([two_calls, "rust finding", "go finding", "Both listed."])
                _, frames = stream_run(c, _thread(c), "Trending Rust and Go repositories?")
                types = [f.data["type"] for f in frames]
                assert types.count("tool_result") == 2 and "tool_error" not in types, types
                usage = c.get("/v1/usage").json()
                assert usage["tier"] == "pro"
                assert usage["usage"]["tool_calls_last_minute"] == 2, usage
            # The key's calls were charged to the key, not to the user it acts for.
            assert bob.get("/v1/usage").json()["usage"]["tool_calls_last_minute"] == 0


def test_code_gets_the_earlier_steps_results_as_data(
    live: LiveServer, fake_llm: FakeOpenAI
) -> None:
    """Data flows to code: the code step runs over the listed repositories, not retyped ones."""
    plan = json.dumps(
        {
            "steps": [
                {"description": "List trending Python repositories", "tool": "github_trending"},
                {"description": "Plot their stars as a bar chart", "tool": "python_exec"},
            ]
        }
    )
    code = (
        "import matplotlib.pyplot as plt\n"
        "plt.bar([r['full_name'] for r in rows], [r['stars'] for r in rows])\n"
        "print(len(rows), rows[0]['full_name'], rows[0]['stars'])\n"
    )
    fake_llm.script.extend([plan, "listed", json.dumps({"code": code}), "plotted", "Done."])
    with _client(live, ["exec:code"]) as c:
        _, frames = stream_run(c, _thread(c), "Plot the stars of the top trending Python repos")
    listed, ran = [f.data["data"]["result"] for f in frames if f.data["type"] == "tool_result"]
    top = listed["repos"][0]
    assert ran["stdout"].split() == [str(len(listed["repos"])), top["full_name"], str(top["stars"])]
    assert ran["images"] == 1 and not ran.get("error")
    code_prompt = json.dumps(fake_llm.requests[2]["messages"])
    assert top["full_name"] in code_prompt and "rows" in code_prompt
    assert frames[-1].data["data"]["status"] == "success"


def test_a_tool_steps_finding_is_the_tools_data_as_given(
    db_url: str, fake_llm: FakeOpenAI, tmp_path: Path
) -> None:
    """``llm.step_findings: tool`` (the shipped default): no model restates the tool's result,
    so the summary's notes carry the repositories' names and stars exactly."""
    settings = make_settings(db_url, fake_llm.base_url, tmp_path)
    llm = settings.llm.model_copy(update={"step_findings": "tool"})
    settings = settings.model_copy(update={"llm": llm})
    fake_llm.script.extend([_plan("github_trending", "Trending Rust repositories"), "Listed."])
    with LiveServer(settings) as live, _client(live, []) as c:
        _, frames = stream_run(c, _thread(c), "Trending Rust repositories?")
    repos = one(frames, "tool_result")["result"]["repos"]
    finding = one(frames, "step_result")["text"]
    assert f"1. {repos[0]['full_name']}: {repos[0]['stars']} stars" in finding
    assert len(fake_llm.requests) == 2  # the plan and the answer: no step restatement
    assert repos[0]["full_name"] in json.dumps(fake_llm.requests[1]["messages"])
    assert frames[-1].data["data"]["status"] == "success"


def test_follow_up_code_sees_the_earlier_answer_and_a_printed_table_is_a_table(
    live: LiveServer, fake_llm: FakeOpenAI
) -> None:
    """ "Divide that by 6" in a second turn: the code-writing prompt carries the earlier turns
    (fenced as data); a table asked for but printed, not saved, still becomes a ``table``."""
    first = json.dumps({"code": "print(37 * 48)"})
    table = json.dumps({"code": "for n in range(3):\n    print(n, 1776 * n / 6)"})
    fake_llm.script.extend([_plan("python_exec", "Compute 37 times 48"), first, "ran"])
    with _client(live, ["exec:code"]) as c:
        thread = _thread(c)
        stream_run(c, thread, "Use Python to compute 37 times 48.")
        fake_llm.reset()
        fake_llm.script.extend([_plan("python_exec", "Tabulate that / 6"), table, "ran", "Here."])
        _, frames = stream_run(c, thread, "Make a table of n times that result divided by 6.")
    code_prompt = json.dumps(fake_llm.requests[1]["messages"])
    assert '<data kind=\\"conversation\\">' in code_prompt
    assert "The result is 1776 (computed with Python)." in code_prompt  # the printed value
    assert "show_table(header, rows)" in code_prompt
    assert one(frames, "table")["rows"] == [["0", "0.0"], ["1", "296.0"], ["2", "592.0"]]
    assert frames[-1].data["data"]["status"] == "success"


def test_a_model_step_after_a_tool_step_sees_its_result(
    live: LiveServer, fake_llm: FakeOpenAI
) -> None:
    """A plan that lists, then picks ("the one with the fewest stars"): the picking step's
    prompt carries the listing step's result, fenced as data."""
    plan = json.dumps(
        {
            "steps": [
                {"description": "List trending Go repositories", "tool": "github_trending"},
                {"description": "Find the one with the fewest stars", "tool": "none"},
            ]
        }
    )
    fake_llm.script.extend([plan, "Listed: a/one 900, b/two 300.", "b/two", "b/two."])
    with _client(live, []) as c:
        _, frames = stream_run(c, _thread(c), "Which trending Go repository has the fewest stars?")
    picking = json.dumps(fake_llm.requests[2]["messages"])
    assert "Earlier steps' results" in picking
    assert "List trending Go repositories: Listed: a/one 900, b/two 300." in picking
    assert '<data kind=\\"research_notes\\">' in picking
    assert "Earlier steps' results" not in json.dumps(fake_llm.requests[1]["messages"])
    assert frames[-1].data["data"]["status"] == "success"
