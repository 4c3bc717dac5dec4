"""The fair scheduler without HTTP: positions, leaving the queue, round-robin, refusals."""

from __future__ import annotations

import asyncio

import pytest

from core.errors import QuotaExceeded
from core.identity import Identity
from core.quotas import Quotas
from core.settings import QuotaSettings
from runs.scheduler import FairScheduler, Ticket

pytestmark = pytest.mark.asyncio


def _who(user: str) -> Identity:
    return Identity(user, "acme", tier="pro")


def _scheduler(capacity: int = 1, **pro: object) -> FairScheduler:
    limits = {"policy": "queue", "max_queued": 5, "concurrent_runs": 50, **pro}
    return FairScheduler(Quotas(QuotaSettings(pro=limits)), capacity)


def _drain(t: Ticket) -> list[int | None]:
    out: list[int | None] = []
    while not t.updates.empty():
        out.append(t.updates.get_nowait())
    return out


async def _granted(t: Ticket) -> None:
    async with asyncio.timeout(5):
        while not t.granted:
            await asyncio.sleep(0.005)


async def test_a_queued_run_that_leaves_moves_the_ones_behind_it_up() -> None:
    s = _scheduler()
    try:
        first = await s.submit(_who("ann"))
        second, third = await s.submit(_who("ann")), await s.submit(_who("ann"))
        assert (_drain(first), _drain(second), _drain(third)) == ([None], [1], [2])
        await second.finish()  # e.g. its run was cancelled while it waited
        assert _drain(third) == [1] and s.queued("user:acme:ann") == 1
        await first.finish(7)
        await _granted(third)
        assert _drain(third) == [None] and s.active == 1
        assert (await s.quotas.usage(_who("ann"))).llm_tokens_today == 7
    finally:
        await s.close()


async def test_users_are_served_in_turn() -> None:
    s = _scheduler()
    try:
        blocker = await s.submit(_who("ann"))
        waiting = [await s.submit(_who(u)) for u in ["ann", "ann", "ann", "ben", "cat"]]
        order: list[str] = []
        await blocker.finish()
        for _ in waiting:
            async with asyncio.timeout(5):
                while not (running := [t for t in waiting if t.granted and not t.done]):
                    await asyncio.sleep(0.005)
            assert len(running) == 1  # one slot
            order.append(running[0].identity.user_id)
            await running[0].finish()
        assert order == ["ann", "ben", "cat", "ann", "ann"]
    finally:
        await s.close()


async def test_a_full_queue_refuses_and_gives_nothing_away() -> None:
    s = _scheduler(max_queued=1)
    try:
        await s.submit(_who("ann"))
        await s.submit(_who("ann"))
        with pytest.raises(QuotaExceeded) as err:
            await s.submit(_who("ann"))
        assert err.value.limit == "max_queued" and s.queued("user:acme:ann") == 1
    finally:
        await s.close()


async def test_a_tier_holds_at_most_its_share_of_the_slots() -> None:
    quotas = Quotas(
        QuotaSettings(
            free={
                "policy": "reject",
                "max_queued": 0,
                "concurrent_runs": 5,
                "runs_per_minute": 100,
                "max_active_share": 0.5,
            },
            pro={"policy": "queue", "max_queued": 5, "concurrent_runs": 5, "max_active_share": 1},
        )
    )
    s = FairScheduler(quotas, 4)
    try:
        free = [await s.submit(Identity(u, "acme", tier="free")) for u in ("ann", "ben")]
        assert all(t.granted for t in free) and s.tier_active["free"] == 2
        # Within her quota, but the free tier's half of the 4 slots is taken.
        with pytest.raises(QuotaExceeded) as refused:
            await s.submit(Identity("cat", "acme", tier="free"))
        assert (refused.value.limit, refused.value.retry_after) == ("capacity", 1.0)
        # The paying tier still finds the other half.
        pro = [await s.submit(Identity(u, "acme", tier="pro")) for u in ("dan", "eve")]
        assert all(t.granted for t in pro) and s.active == 4
        await free[0].finish()
        again = await s.submit(Identity("cat", "acme", tier="free"))
        assert again.granted and s.tier_active == {"free": 2, "pro": 2}
    finally:
        await s.close()


async def test_a_queued_run_waits_for_its_tiers_share_not_just_a_free_slot() -> None:
    s = _scheduler(capacity=4, max_active_share=0.25)
    try:
        first = await s.submit(_who("ann"))
        second = await s.submit(_who("ben"))
        assert first.granted and not second.granted and s.active == 1
        await first.finish()
        await _granted(second)
        assert s.tier_active["pro"] == 1
    finally:
        await s.close()


async def test_a_capacity_refusal_costs_no_run_of_the_users_quota() -> None:
    free = {"policy": "reject", "max_queued": 0, "concurrent_runs": 5, "runs_per_minute": 1}
    s = FairScheduler(Quotas(QuotaSettings(free={**free, "max_active_share": 0.5})), 2)
    try:
        held = await s.submit(Identity("ann", "acme", tier="free"))
        for _ in range(3):
            with pytest.raises(QuotaExceeded) as refused:
                await s.submit(Identity("ben", "acme", tier="free"))
            assert refused.value.limit == "capacity"
        await held.finish()
        # Ben's one run per minute is still his.
        assert (await s.submit(Identity("ben", "acme", tier="free"))).granted
        with pytest.raises(QuotaExceeded) as over:
            await s.submit(Identity("ann", "acme", tier="free"))
        assert over.value.limit == "runs_per_minute"
    finally:
        await s.close()
