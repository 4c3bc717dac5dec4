"""Property tests of the rate buckets on a simulated clock (the limits memory storage's clock)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from types import SimpleNamespace

import limits.aio.storage.memory as memory_storage
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import core.quotas as quotas_module
from core.errors import QuotaExceeded
from core.identity import Identity
from core.quotas import Quotas
from core.settings import QuotaSettings

WINDOW = 60.0
ALICE = Identity("alice", "acme")
# The clock only moves forward and every example measures from its own start and builds a
# fresh storage, so sharing the patched clock across examples is safe.
_SHARED_CLOCK = [HealthCheck.function_scoped_fixture]
# database=None: no .hypothesis/ folder left in the checkout (CI fails on leftovers).


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    c = Clock()
    fake = SimpleNamespace(time=c.time)
    monkeypatch.setattr(memory_storage, "time", fake)
    monkeypatch.setattr(quotas_module, "time", fake)
    yield c


def _quotas(capacity: int) -> Quotas:
    return Quotas(QuotaSettings(free={"tool_calls_per_minute": capacity}))


async def _admit(q: Quotas, n: int) -> int:
    admitted = 0
    for _ in range(n):
        try:
            await q.check_tool_call(ALICE)
            admitted += 1
        except QuotaExceeded:
            pass
    return admitted


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=_SHARED_CLOCK)
@given(
    capacity=st.integers(1, 20),
    steps=st.lists(
        st.tuples(st.floats(0, 90, allow_nan=False), st.integers(0, 30)), min_size=1, max_size=25
    ),
)
# The boundary burst a fixed window lets through: 1 + 1 just before its end, 2 just after.
@example(capacity=2, steps=[(0.0, 1), (59.0, 1), (1.5, 2)])
def test_admitted_never_exceed_capacity_plus_rate_times_time(
    clock: Clock, capacity: int, steps: list[tuple[float, int]]
) -> None:
    start = clock.now

    async def scenario() -> list[tuple[float, int]]:
        q = _quotas(capacity)
        out: list[tuple[float, int]] = []
        for dt, n in steps:
            clock.now += dt
            out.append((clock.now, await _admit(q, n)))
        return out

    history = asyncio.run(scenario())
    rate = capacity / WINDOW
    total = 0
    for t, admitted in history:
        total += admitted
        assert total <= capacity + rate * (t - start) + 1e-9
    # The moving window's stronger form: at most ``capacity`` in any span shorter than WINDOW.
    for i, (t0, _) in enumerate(history):
        in_span = sum(a for t, a in history[i:] if t - t0 < WINDOW)
        assert in_span <= capacity


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=_SHARED_CLOCK)
@given(capacity=st.integers(1, 20), idle=st.floats(WINDOW, 50 * WINDOW), extra=st.integers(1, 20))
def test_bucket_refills_to_its_cap_and_no_further(
    clock: Clock, capacity: int, idle: float, extra: int
) -> None:
    async def scenario() -> tuple[int, int, int]:
        q = _quotas(capacity)
        first = await _admit(q, capacity + extra)
        clock.now += WINDOW / 2
        half = await _admit(q, capacity + extra)
        clock.now += idle
        refilled = await _admit(q, capacity + extra)
        return first, half, refilled

    first, half, refilled = asyncio.run(scenario())
    assert first == capacity  # a fresh bucket is full, not more
    assert half == 0  # nothing frees before the window has moved past the burst
    assert refilled == capacity  # however long the idle time, the cap holds


@settings(database=None)
@given(
    a=st.tuples(st.text(max_size=6), st.text(max_size=6)),
    b=st.tuples(st.text(max_size=6), st.text(max_size=6)),
)
@example(a=("acme", "x:y"), b=("acme:x", "y"))  # the probe's collision
@example(a=("a%3A", "b"), b=("a:", "b"))
def test_quota_subjects_of_different_callers_never_collide(
    a: tuple[str, str], b: tuple[str, str]
) -> None:
    first = quotas_module.subject(Identity(a[1], a[0]))
    second = quotas_module.subject(Identity(b[1], b[0]))
    assert (first == second) == (a == b)
