"""Side effects once: a side-effecting call under a key is an intent first, its result after."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from core.db import migrate, open_pool
from core.identity import Identity
from core.settings import Settings
from tools.gateway import Requester, ToolGateway
from tools.intents import OutcomeUnknown

CODER = Identity("alice", "acme", frozenset({"exec:code", "write:calendar"}))
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def gw(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ToolGateway]:
    pool = await open_pool(db_url)
    async with pool.connection() as conn:
        await migrate(conn)
    settings = Settings(
        env="test", data_dir=tmp_path_factory.mktemp("intents"), database={"url": db_url}
    )
    gateway = ToolGateway(settings, pool=pool)
    await gateway.start()
    yield gateway
    await gateway.aclose()
    await pool.close()


def _runs_of_code(gw: ToolGateway) -> list[dict[str, Any]]:
    path = gw.log_file("python-v1")
    lines = path.read_text().splitlines() if path.exists() else []
    return [r for r in map(json.loads, lines) if r["event"] == "invoke"]


async def _intent(gw: ToolGateway, key: str) -> dict[str, Any] | None:
    assert gw.intents is not None
    async with gw.intents.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT outcome, tool, result IS NOT NULL AS kept FROM tool_intents"
            " WHERE tenant = 'acme' AND key = %s",
            (key,),
        )
        row: dict[str, Any] | None = await cur.fetchone()
    return row


async def test_code_under_the_same_key_runs_once_and_its_result_is_answered_again(
    gw: ToolGateway,
) -> None:
    spec = gw.resolve("research", "python_exec")
    key = uuid.uuid4().hex
    before = len(_runs_of_code(gw))
    first = await gw.call(spec, {"code": "print(6 * 7)"}, caller=Requester(CODER), key=key)
    assert await _intent(gw, key) == {"outcome": "ok", "tool": spec.qualified, "kept": True}
    again = await gw.call(spec, {"code": "print(6 * 7)"}, caller=Requester(CODER), key=key)
    assert "42" in first.result["stdout"]
    assert again.result == first.result
    assert len(_runs_of_code(gw)) == before + 1  # the repeat did not reach the server


async def test_code_started_before_with_an_unknown_outcome_is_not_run_again(
    gw: ToolGateway,
) -> None:
    spec = gw.resolve("research", "python_exec")
    key = uuid.uuid4().hex
    assert gw.intents is not None
    # A call whose process died during it: the intent is there, its outcome is not.
    await gw.intents.begin(
        tenant="acme", key=key, trace_id="t", tool=spec.qualified, version=spec.version
    )
    before = len(_runs_of_code(gw))
    with pytest.raises(OutcomeUnknown):
        await gw.call(spec, {"code": "print(1)"}, caller=Requester(CODER), key=key)
    assert len(_runs_of_code(gw)) == before
    assert await _intent(gw, key) == {"outcome": None, "tool": spec.qualified, "kept": False}


async def test_a_booking_started_before_is_asked_again_by_its_idempotency_key(
    gw: ToolGateway,
) -> None:
    spec = gw.resolve("research", "calendar", "schedule_meeting")
    key, booking = uuid.uuid4().hex, uuid.uuid4().hex
    args = {"title": "sync", "starts_at": "2031-01-02T15:00:00+00:00", "idempotency_key": booking}
    assert gw.intents is not None
    await gw.intents.begin(
        tenant="acme", key=key, trace_id="t", tool=spec.qualified, version=spec.version
    )
    first = await gw.call(spec, args, caller=Requester(CODER))  # the call that died after booking
    again = await gw.call(spec, args, caller=Requester(CODER), key=key)
    assert (first.result["created"], again.result["created"]) == (True, False)
    assert again.result["event"]["id"] == first.result["event"]["id"]
    assert (await _intent(gw, key) or {}).get("outcome") == "ok"


async def test_only_tools_that_change_something_are_recorded(gw: ToolGateway) -> None:
    effects = {t.qualified: (t.side_effects, t.idempotent) for t in gw.tools()}
    assert effects == {
        "github_trending.trending_repos": (False, False),
        "documents.search_documents": (False, False),
        "python_exec.run_python": (True, False),
        "calendar.list_events": (False, False),
        "calendar.schedule_meeting": (True, True),
    }
    spec = gw.resolve("research", "calendar", "list_events")
    key = uuid.uuid4().hex
    window = {"start": "2031-01-01T00:00:00+00:00", "days": 1}
    reader = Identity("a", "acme", frozenset({"read:calendar"}))
    await gw.call(spec, window, caller=Requester(reader), key=key)
    assert await _intent(gw, key) is None
