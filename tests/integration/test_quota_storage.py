"""One contract suite for the quota storages: in-process memory and Redis."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from core.errors import QuotaExceeded
from core.identity import Identity
from core.quotas import Quotas, check_tool_call, forget, quotas_for
from core.settings import QuotaSettings, Settings
from runs.scheduler import FairScheduler, Ticket
from tests.quota_helpers import quota_settings

pytestmark = [pytest.mark.asyncio, pytest.mark.parametrize("kind", ["memory", "redis"])]
ALICE = Identity("alice", "acme", tier="free")
BOB = Identity("bob", "acme", tier="free")


def _quotas(kind: str, **tier: Any) -> Quotas:
    return Quotas(QuotaSettings.model_validate(quota_settings(kind, **tier)))


async def test_runs_per_minute_refuses_the_next_run_naming_the_limit(kind: str) -> None:
    q = _quotas(kind, runs_per_minute=3)
    try:
        for _ in range(3):
            await q.start_run(ALICE)
            await q.finish_run(ALICE, 0)
        with pytest.raises(QuotaExceeded) as err:
            await q.start_run(ALICE)
        assert err.value.limit == "runs_per_minute"
        assert err.value.code == "quota_exceeded" and err.value.status == 429
        assert 1 <= err.value.retry_after <= 60
        await q.start_run(BOB)  # another user's bucket is untouched
    finally:
        await q.close()


async def test_concurrent_runs_are_released_at_the_end(kind: str) -> None:
    q = _quotas(kind, concurrent_runs=2)
    try:
        await q.start_run(ALICE)
        await q.start_run(ALICE)
        refusal = await q.try_start_run(ALICE)
        assert refusal is not None and refusal.limit == "concurrent_runs"
        assert (await q.usage(ALICE)).concurrent_runs == 2
        await q.finish_run(ALICE, 0)
        assert await q.try_start_run(ALICE) is None
        # A refusal by the rate gives the slot it took back.
        assert (await q.usage(ALICE)).concurrent_runs == 2
    finally:
        await q.close()


async def test_a_refused_rate_does_not_keep_a_concurrency_slot(kind: str) -> None:
    q = _quotas(kind, runs_per_minute=1, concurrent_runs=5)
    try:
        await q.start_run(ALICE)
        refusal = await q.try_start_run(ALICE)
        assert refusal is not None and refusal.limit == "runs_per_minute"
        assert (await q.usage(ALICE)).concurrent_runs == 1
    finally:
        await q.close()


async def test_tokens_per_day_count_the_overshoot_then_refuse(kind: str) -> None:
    q = _quotas(kind, llm_tokens_per_day=100)
    try:
        await q.start_run(ALICE)
        await q.finish_run(ALICE, 150)
        assert (await q.usage(ALICE)).llm_tokens_today == 150
        refusal = await q.try_start_run(ALICE)
        assert refusal is not None and refusal.limit == "llm_tokens_per_day"
        assert refusal.retry_after > 3600
        assert (await q.usage(ALICE)).concurrent_runs == 0
    finally:
        await q.close()


async def test_tool_calls_per_minute(kind: str) -> None:
    q = _quotas(kind, tool_calls_per_minute=2)
    try:
        await q.check_tool_call(ALICE)
        await q.check_tool_call(ALICE)
        with pytest.raises(QuotaExceeded) as err:
            await q.check_tool_call(ALICE)
        assert err.value.limit == "tool_calls_per_minute"
        usage = await q.usage(ALICE)
        assert usage.tool_calls_last_minute == 2 and usage.runs_last_minute == 0
    finally:
        await q.close()


async def test_api_key_has_its_own_bucket(kind: str) -> None:
    q = _quotas(kind, runs_per_minute=1)
    key = Identity("alice", "acme", tier="free", api_key_id="k1")
    try:
        await q.start_run(ALICE)
        await q.start_run(key)
        assert (await q.usage(key)).subject == "key:k1"
    finally:
        await q.close()


async def test_gateway_hook_uses_the_settings_storage(kind: str) -> None:
    settings = Settings(quotas=quota_settings(kind, tool_calls_per_minute=1))
    await check_tool_call(ALICE, settings)
    with pytest.raises(QuotaExceeded, match="tool calls per minute") as err:
        await check_tool_call(ALICE, settings)
    assert err.value.code == "quota_exceeded"
    q = quotas_for(settings.quotas)
    forget(q)
    await q.close()


async def test_two_instances_share_one_limit_only_on_redis(kind: str) -> None:
    cfg = QuotaSettings.model_validate(quota_settings(kind, runs_per_minute=4))
    a, b = Quotas(cfg), Quotas(cfg)
    try:
        results = await asyncio.gather(*(q.try_start_run(ALICE) for q in [a, b] * 4))
        admitted = sum(r is None for r in results)
        assert admitted == (4 if kind == "redis" else 8)
    finally:
        await a.close()
        await b.close()


async def test_concurrent_capacity_refusals_cost_no_run_of_the_quota(kind: str) -> None:
    # Six free users ask at once for the tier's 2 slots. On Redis every quota check awaits a
    # round trip, so a slot must be held before it, or all six are charged a run and four of
    # them are then refused for capacity with their minute's only run gone.
    cfg = quota_settings(kind, runs_per_minute=1, concurrent_runs=1, max_queued=0)
    cfg["free"] = {**cfg["free"], "policy": "reject", "max_active_share": 0.5}
    s = FairScheduler(Quotas(QuotaSettings.model_validate(cfg)), 4)
    users = [Identity(f"u{i}", "acme", tier="free") for i in range(6)]

    async def submit(who: Identity) -> Ticket | QuotaExceeded:
        try:
            return await s.submit(who)
        except QuotaExceeded as e:
            return e

    try:
        first = await asyncio.gather(*(submit(u) for u in users))
        held = [t for t in first if isinstance(t, Ticket)]
        refused = [e.limit for e in first if isinstance(e, QuotaExceeded)]
        assert len(held) == 2 and refused == ["capacity"] * 4
        for t in held:
            await t.finish()
        waited = [u for u, t in zip(users, first, strict=True) if not isinstance(t, Ticket)]
        # Each refused user still has the minute's run: served as slots free up.
        for who in waited:
            ticket = await s.submit(who)
            assert ticket.granted
            await ticket.finish()
    finally:
        await s.close()
        await s.quotas.close()
