"""The tool gateway with real MCP server processes: pins, permissions, lock drift, crashes."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import pytest_asyncio

from core.identity import Identity
from core.settings import Settings
from tools.errors import (
    PermissionDenied,
    ToolDrift,
    ToolTimeout,
    ToolUnavailable,
    UnknownTool,
    UnpinnedVersion,
)
from tools.gateway import Requester, ToolGateway, write_lock_file

ALICE = Identity("alice", "acme", frozenset())
FAKE = [sys.executable, "-m", "tests.fakes.mcp_server"]


def _settings(tmp: Path, db_url: str | None = None, **over: Any) -> Settings:
    return Settings(
        env="test",
        data_dir=tmp,
        database={"url": db_url},
        **over,  # type: ignore[arg-type]
    )


def log_lines(gw: ToolGateway, pin: str) -> list[dict[str, Any]]:
    path = gw.log_file(pin)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def gw(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ToolGateway]:
    gateway = ToolGateway(_settings(tmp_path_factory.mktemp("gw"), db_url))
    await gateway.start()
    yield gateway
    await gateway.aclose()


pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_every_pinned_server_starts_and_matches_the_committed_lock(
    gw: ToolGateway,
) -> None:
    assert gw.refused == {}
    assert {(t.pin, t.name) for t in gw.tools()} == {
        ("github-v2", "trending_repos"),
        ("github-v1", "trending_repos"),
        ("documents-v2", "search_documents"),
        ("documents-v1", "search_documents"),
        ("python-v1", "run_python"),
        ("calendar-v1", "list_events"),
        ("calendar-v1", "schedule_meeting"),
    }
    perms = {t.qualified: t.permissions for t in gw.tools()}
    assert perms["python_exec.run_python"] == ("exec:code",)
    assert perms["calendar.schedule_meeting"] == ("write:calendar",)


async def test_each_agent_reaches_only_the_version_it_pins(gw: ToolGateway) -> None:
    v2 = gw.resolve("research", "github_trending")
    v1 = gw.resolve("research_legacy", "github_trending")
    assert (v2.version, v1.version) == ("2.0.0", "1.0.0")
    out2 = await gw.call(v2, {"language": "python", "limit": 3}, caller=Requester(ALICE))
    assert out2.result["source"] == "snapshot"
    assert [r["full_name"] for r in out2.result["repos"]][0] == "huggingface/transformers"
    assert len(out2.result["repos"]) == 3
    out1 = await gw.call(v1, {"lang": "python"}, caller=Requester(ALICE))
    assert out1.result.startswith("source: snapshot\nhuggingface/transformers (")
    assert out1.duration_ms > 0


async def test_unknown_tool_and_unpinned_version_are_refused(gw: ToolGateway) -> None:
    with pytest.raises(UnknownTool):
        gw.resolve("research", "weather")
    with pytest.raises(UnpinnedVersion):
        gw.resolve("research_legacy", "python_exec")
    with pytest.raises(UnpinnedVersion):
        gw.resolve("research", "github_trending@1.0.0")
    assert gw.resolve("research", "github_trending@2.0.0").version == "2.0.0"


async def test_denied_call_never_reaches_the_server(gw: ToolGateway) -> None:
    spec = gw.resolve("research", "python_exec")
    before = [r for r in log_lines(gw, "python-v1") if r["event"] == "invoke"]
    with pytest.raises(PermissionDenied) as err:
        await gw.call(spec, {"code": "print(1)"}, caller=Requester(ALICE))
    assert err.value.code == "permission_denied"
    assert "exec:code" in err.value.detail
    after = [r for r in log_lines(gw, "python-v1") if r["event"] == "invoke"]
    assert after == before == []

    bob = Identity("bob", "acme", frozenset({"exec:code"}))
    out = await gw.call(spec, {"code": "print(6 * 7)"}, caller=Requester(bob, "t-1"))
    assert out.result["stdout"] == "42\n"
    invokes = [r for r in log_lines(gw, "python-v1") if r["event"] == "invoke"]
    assert [(r["user"], r["tenant"], r["trace_id"]) for r in invokes] == [("bob", "acme", "t-1")]


async def test_calendar_books_once_per_idempotency_key_and_per_tenant(gw: ToolGateway) -> None:
    book = gw.resolve("research", "calendar", "schedule_meeting")
    listing = gw.resolve("research", "calendar", "list_events")
    writer = Identity("alice", "acme", frozenset({"read:calendar", "write:calendar"}))
    args = {
        "title": "Design review",
        "starts_at": "2030-01-02T15:00:00+00:00",
        "idempotency_key": "booking-0001",
    }
    first = await gw.call(book, args, caller=Requester(writer))
    again = await gw.call(book, args, caller=Requester(writer))
    assert (first.result["created"], again.result["created"]) == (True, False)
    assert first.result["event"]["id"] == again.result["event"]["id"]
    window = {"start": "2030-01-01T00:00:00+00:00", "days": 7}
    seen = await gw.call(listing, window, caller=Requester(writer))
    assert [e["title"] for e in seen.result["events"]] == ["Design review"]
    other = Identity("eve", "globex", frozenset({"read:calendar"}))
    assert (await gw.call(listing, window, caller=Requester(other))).result["events"] == []
    with pytest.raises(PermissionDenied):
        await gw.call(book, args, caller=Requester(other))


async def test_documents_search_finds_ingested_text_with_document_page_and_excerpt(
    gw: ToolGateway, db_url: str, tmp_path: Path
) -> None:
    from core.db import migrate
    from core.embeddings import MiniLMEmbedder
    from core.settings import DocumentSettings
    from tools.servers.documents import corpus

    (tmp_path / "budget.md").write_text(
        "# Q3 budget\n\nThe Q3 budget for infrastructure is 42000 euros.\n\nUnrelated."
    )
    (tmp_path / "notes.txt").write_text("Lunch with the team on Friday.")
    limits, embedder = DocumentSettings(), MiniLMEmbedder()
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        await migrate(conn)
        stats = await corpus.ingest(conn, embedder, "acme", [tmp_path], limits)
        assert stats == {"files": 2, "chunks": 2, "unchanged": 0, "refused": {}}
        again = await corpus.ingest(conn, embedder, "acme", [tmp_path], limits)
        assert again["unchanged"] == 2
    spec = gw.resolve("research", "documents")
    out = await gw.call(spec, {"query": "infrastructure budget"}, caller=Requester(ALICE))
    hits = out.result["hits"]
    assert hits[0]["document"] == "budget.md"
    assert hits[0]["page"] is None
    assert "infrastructure" in hits[0]["excerpt"]
    stranger = Identity("eve", "globex", frozenset())
    assert (await gw.call(spec, {"query": "budget"}, caller=Requester(stranger))).result[
        "hits"
    ] == []
    legacy = gw.resolve("research_legacy", "documents")
    assert legacy.version == "1.0.0"
    old = (
        await gw.call(legacy, {"query": "infrastructure budget"}, caller=Requester(ALICE))
    ).result
    assert (old["mode"], [h["source"] for h in old["hits"]]) == ("full_text", ["budget.md"])


def _fake_settings(tmp: Path, lock: Path) -> Settings:
    return _settings(
        tmp,
        mcp_servers={"fake-v1": {"server": "fake", "version": "1.0.0", "command": FAKE}},
        agents={"research": {"tools": ["fake-v1"]}},
        tools={"lock_file": str(lock), "call_timeout_s": 5.0},
    )


async def test_changed_schema_without_relock_refuses_the_server(tmp_path: Path) -> None:
    settings = _fake_settings(tmp_path, tmp_path / "tools.lock")
    await write_lock_file(settings)
    async with ToolGateway(settings) as gw:
        assert gw.refused == {}
    drifted = _fake_settings(tmp_path, tmp_path / "tools.lock").model_copy(
        update={
            "mcp_servers": {
                "fake-v1": settings.mcp_servers["fake-v1"].model_copy(
                    update={"command": ["env", "FAKE_MCP_VARIANT=b", *FAKE]}
                )
            }
        }
    )
    async with ToolGateway(drifted) as gw:
        assert list(gw.refused) == ["fake-v1"]
        assert "tool 'echo' schema changed" in gw.refused["fake-v1"]
        assert "keel tools lock" in gw.refused["fake-v1"]
        with pytest.raises(ToolDrift):
            gw.resolve("research", "fake")
    await write_lock_file(drifted)
    async with ToolGateway(drifted) as gw:
        assert gw.refused == {}
        out = await gw.call(gw.resolve("research", "fake"), {"text": "x"}, caller=Requester(ALICE))
        assert out.result == "x"


async def test_crash_mid_call_is_a_tool_error_then_the_server_restarts_and_nothing_leaks(
    tmp_path: Path,
) -> None:
    settings = _fake_settings(tmp_path, tmp_path / "tools.lock")
    await write_lock_file(settings)
    gw = ToolGateway(settings)
    gw.log_file("fake-v1").unlink()
    await gw.start()
    try:
        crash = gw.resolve("research", "fake", "crash")
        echo = gw.resolve("research", "fake", "echo")
        with pytest.raises(ToolUnavailable, match="crashed"):
            await gw.call(crash, {}, caller=Requester(ALICE))
        assert (await gw.call(echo, {"text": "back"}, caller=Requester(ALICE))).result == "back"
        with pytest.raises(ToolTimeout):
            await gw.call(
                gw.resolve("research", "fake", "slow"),
                {"seconds": 5},
                caller=Requester(ALICE),
                timeout_s=0.5,
            )
    finally:
        await gw.aclose()
    # The crash is retried once (tools.retry: unavailable), on a restarted server: the first
    # server, the retry's, and the one the echo call found after the second crash.
    pids = [r["pid"] for r in log_lines(gw, "fake-v1") if r["event"] == "start"]
    assert len(pids) == 3
    assert [p for p in pids if alive(p)] == []


async def test_gateway_close_leaves_no_server_process(db_url: str, tmp_path: Path) -> None:
    gw = ToolGateway(_settings(tmp_path, db_url))
    await gw.start()
    await gw.aclose()
    pids = [r["pid"] for pin in gw.pinned() for r in log_lines(gw, pin) if r["event"] == "start"]
    assert len(pids) == 6
    assert [p for p in pids if alive(p)] == []


async def test_keel_ingest_cli_adds_files_the_documents_server_finds(
    gw: ToolGateway,
    db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from api.cli import main
    from core.settings import get_settings

    (tmp_path / "runbook.md").write_text("# Failover\n\nPromote the standby with pg_promote.")
    monkeypatch.setenv("DATABASE_URL", db_url)
    get_settings.cache_clear()
    try:
        # The command runs its own event loop: off this test's loop, as from a shell.
        assert await asyncio.to_thread(main, ["ingest", str(tmp_path), "--tenant", "initech"]) == 0
    finally:
        get_settings.cache_clear()
    assert "ingested 1 files (1 chunks), 0 unchanged, for tenant initech" in capsys.readouterr().out
    spec = gw.resolve("research", "documents")
    who = Identity("peter", "initech", frozenset())
    hits = (await gw.call(spec, {"query": "promote standby"}, caller=Requester(who))).result["hits"]
    assert [h["document"] for h in hits] == ["runbook.md"]


async def test_a_sandbox_server_is_refused_where_the_sandbox_cannot_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tools.gateway

    monkeypatch.setattr(tools.gateway, "sandbox_available", lambda: (False, "no user namespaces"))
    settings = _settings(
        tmp_path,
        mcp_servers={
            "fake-v1": {"server": "fake", "version": "1.0.0", "command": FAKE, "sandbox": True}
        },
        agents={"research": {"tools": ["fake-v1"]}},
        tools={"lock_file": str(tmp_path / "tools.lock")},
    )
    async with ToolGateway(settings) as gw:
        assert gw.refused["fake-v1"] == (
            "fake-v1: marked sandbox but no sandbox here: no user namespaces"
        )
    assert not gw.log_file("fake-v1").exists()  # never started
