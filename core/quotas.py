"""Resource quotas per user, API key and tier (practice 18), on the ``limits`` library.

Rates (runs and tool calls per minute) use ``limits``' moving window: it admits at most N hits
in *any* 60 s span, so it never lets the 2N burst through at a window boundary that a fixed
window allows, and it refills continuously, never past N. LLM tokens per day use a fixed
window whose counter accepts the overshoot of the run that crossed it (a run's usage is only
known at its end), so the next run is refused. Concurrent runs are a counter with a lease TTL.

Storage is ``memory://`` (one process, the embedded default) or ``redis://`` (shared by every
API replica and the tool gateway); the same tests run against both.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

from limits import RateLimitItem, RateLimitItemPerDay, RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter, RateLimiter

from core.errors import QuotaExceeded
from core.identity import Identity
from core.settings import QuotaSettings, Settings, TierLimits

RUNS = "runs_per_minute"
TOOL_CALLS = "tool_calls_per_minute"
CONCURRENT = "concurrent_runs"
TOKENS = "llm_tokens_per_day"
STREAMS = "concurrent_streams"
THREADS = "max_threads"
# A stream slot leaked by a crashed replica (Redis) is freed after this long.
STREAM_LEASE_S = 3600.0


def subject(identity: Identity) -> str:
    """Whose quota a request draws on: the API key if one was used, else the user.

    Tenant and user are percent-encoded, so no pair of them can name another's bucket
    (tenant ``acme`` with user ``x:y`` is not tenant ``acme:x`` with user ``y``).
    """
    if identity.api_key_id:
        return f"key:{quote(identity.api_key_id, safe='')}"
    return f"user:{quote(identity.tenant, safe='')}:{quote(identity.user_id, safe='')}"


class ConcurrencyStore(Protocol):
    """Counts a subject's runs in progress."""

    async def acquire(self, key: str, limit: int, lease_s: float) -> bool:
        """Take a slot if fewer than ``limit`` are taken; the count expires after ``lease_s``."""
        ...

    async def release(self, key: str) -> None:
        """Give a slot back."""
        ...

    async def count(self, key: str) -> int:
        """Slots taken now."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class MemoryConcurrency:
    """In-process slot counts (one API process)."""

    def __init__(self) -> None:
        """Start with no slot taken."""
        self._counts: dict[str, int] = {}

    async def acquire(self, key: str, limit: int, lease_s: float) -> bool:
        """Take a slot if fewer than ``limit`` are taken."""
        n = self._counts.get(key, 0)
        if n >= limit:
            return False
        self._counts[key] = n + 1
        return True

    async def release(self, key: str) -> None:
        """Give a slot back."""
        n = self._counts.get(key, 0) - 1
        if n > 0:
            self._counts[key] = n
        else:
            self._counts.pop(key, None)

    async def count(self, key: str) -> int:
        """Slots taken now."""
        return self._counts.get(key, 0)

    async def close(self) -> None:
        """Nothing to release."""


# INCR and the limit check in one step, so two replicas cannot both take the last slot. The
# TTL (refreshed on each acquire) bounds a slot leaked by a crashed replica to one lease.
_ACQUIRE = """
local n = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if n > tonumber(ARGV[1]) then
  redis.call('DECR', KEYS[1])
  return 0
end
return 1
"""
_RELEASE = """
local n = redis.call('DECR', KEYS[1])
if n <= 0 then redis.call('DEL', KEYS[1]) end
return n
"""


class RedisConcurrency:
    """Slot counts in Redis, shared by every replica."""

    def __init__(self, url: str) -> None:
        """Connect lazily to ``url``."""
        import redis.asyncio as aioredis

        self._redis: Any = aioredis.Redis.from_url(url)
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._release = self._redis.register_script(_RELEASE)

    async def acquire(self, key: str, limit: int, lease_s: float) -> bool:
        """Take a slot atomically if fewer than ``limit`` are taken."""
        return bool(await self._acquire(keys=[key], args=[limit, int(lease_s * 1000)]))

    async def release(self, key: str) -> None:
        """Give a slot back."""
        await self._release(keys=[key])

    async def count(self, key: str) -> int:
        """Slots taken now."""
        raw = await self._redis.get(key)
        return int(raw or 0)

    async def close(self) -> None:
        """Close the connection pool."""
        await self._redis.aclose()


@dataclass(frozen=True)
class Usage:
    """A subject's current usage against its tier's limits."""

    subject: str
    tier: str
    limits: TierLimits
    runs_last_minute: int
    tool_calls_last_minute: int
    concurrent_runs: int
    llm_tokens_today: int


class Quotas:
    """Checks and counts the quotas of ``QuotaSettings`` on one storage."""

    def __init__(self, settings: QuotaSettings) -> None:
        """Open the storage named by ``settings.storage_url``."""
        self.settings = settings
        url = settings.storage_url
        self.storage: Storage
        self.concurrency: ConcurrencyStore
        if url.startswith("memory://"):
            self.storage = MemoryStorage()
            self.concurrency = MemoryConcurrency()
        elif url.startswith(("redis://", "rediss://")):
            self.storage = RedisStorage(
                f"async+{url}", implementation="redispy", key_prefix=settings.key_prefix
            )
            self.concurrency = RedisConcurrency(url)
        else:
            raise ValueError(f"quotas.storage_url must be memory:// or redis://, not {url!r}")
        self._moving = MovingWindowRateLimiter(self.storage)
        self._fixed = FixedWindowRateLimiter(self.storage)

    def limits_for(self, identity: Identity) -> TierLimits:
        """The limits of the caller's tier."""
        tier: TierLimits = getattr(self.settings, identity.tier)
        return tier

    def _ids(self, identity: Identity, name: str) -> tuple[str, str, str]:
        return (self.settings.key_prefix, subject(identity), name)

    def _conc_key(self, identity: Identity) -> str:
        return f"{self.settings.key_prefix}:conc:{subject(identity)}"

    @staticmethod
    def _items(limits: TierLimits) -> tuple[RateLimitItem, RateLimitItem, RateLimitItem]:
        return (
            RateLimitItemPerMinute(limits.runs_per_minute),
            RateLimitItemPerMinute(limits.tool_calls_per_minute),
            RateLimitItemPerDay(limits.llm_tokens_per_day),
        )

    async def _retry_after(
        self, limiter: RateLimiter, item: RateLimitItem, ids: tuple[str, ...]
    ) -> float:
        stats = await limiter.get_window_stats(item, *ids)
        return max(1.0, math.ceil(stats.reset_time - time.time()))

    async def _over(
        self,
        identity: Identity,
        name: str,
        limiter: RateLimiter,
        item: RateLimitItem,
        message: str,
        *,
        take: bool,
    ) -> QuotaExceeded | None:
        """The refusal if the rate ``name`` is used up (``take``: count one if it is not)."""
        ids = self._ids(identity, name)
        if await (limiter.hit(item, *ids) if take else limiter.test(item, *ids)):
            return None
        retry_after = await self._retry_after(limiter, item, ids)
        return QuotaExceeded(message, limit=name, retry_after=retry_after)

    async def _slot(
        self, key: str, n: int, lease_s: float, name: str, message: str, retry_after: float
    ) -> QuotaExceeded | None:
        """Take one of ``n`` slots under ``key``; the refusal naming ``name`` when all are taken."""
        if await self.concurrency.acquire(key, n, lease_s):
            return None
        return QuotaExceeded(message, limit=name, retry_after=retry_after)

    @staticmethod
    def _runs_rate(identity: Identity, limits: TierLimits) -> str:
        return f"the {identity.tier} tier allows {limits.runs_per_minute} runs per minute"

    async def try_start_run(self, identity: Identity) -> QuotaExceeded | None:
        """Take a run slot and a run from the rate; the refusal, if any, is returned, not raised.

        On success the caller must call ``finish_run`` when the run ends.
        """
        limits = self.limits_for(identity)
        if (refusal := await self.tokens_left(identity)) is not None:
            return refusal
        runs = self._items(limits)[0]
        lease = limits.max_run_duration_s * 2 + 60
        n = limits.concurrent_runs
        message = f"the {identity.tier} tier allows {n} concurrent runs"
        slot = self._conc_key(identity)
        if (refusal := await self._slot(slot, n, lease, CONCURRENT, message, 1.0)) is not None:
            return refusal
        message = self._runs_rate(identity, limits)
        refusal = await self._over(identity, RUNS, self._moving, runs, message, take=True)
        if refusal is not None:
            await self.concurrency.release(self._conc_key(identity))
        return refusal

    async def refusal(self, identity: Identity) -> QuotaExceeded | None:
        """What ``try_start_run`` would refuse on tokens or runs per minute, taking nothing."""
        limits = self.limits_for(identity)
        if (refusal := await self.tokens_left(identity)) is not None:
            return refusal
        runs = self._items(limits)[0]
        message = self._runs_rate(identity, limits)
        return await self._over(identity, RUNS, self._moving, runs, message, take=False)

    async def start_run(self, identity: Identity) -> None:
        """Like ``try_start_run`` but raises ``QuotaExceeded``."""
        if (refusal := await self.try_start_run(identity)) is not None:
            raise refusal

    async def finish_run(self, identity: Identity, tokens: int) -> None:
        """Give the run slot back and count the run's LLM tokens against the day."""
        await self.concurrency.release(self._conc_key(identity))
        await self.record_tokens(identity, tokens)

    async def record_tokens(self, identity: Identity, tokens: int) -> None:
        """Count ``tokens`` against the day, even past the limit (the next run is refused)."""
        if tokens > 0:
            _, _, item = self._items(self.limits_for(identity))
            await self._fixed.hit(item, *self._ids(identity, TOKENS), cost=tokens)

    async def tokens_left(self, identity: Identity) -> QuotaExceeded | None:
        """The refusal if the day's LLM tokens are used up, else None."""
        limits = self.limits_for(identity)
        _, _, tokens = self._items(limits)
        message = (
            f"the {identity.tier} tier's {limits.llm_tokens_per_day} LLM tokens per day are used up"
        )
        return await self._over(identity, TOKENS, self._fixed, tokens, message, take=False)

    async def check_tool_call(self, identity: Identity) -> None:
        """Count one tool call; raises ``QuotaExceeded`` (code ``quota_exceeded``) over the rate."""
        limits = self.limits_for(identity)
        _, item, _ = self._items(limits)
        message = (
            f"the {identity.tier} tier allows {limits.tool_calls_per_minute} tool calls per minute"
        )
        refusal = await self._over(identity, TOOL_CALLS, self._moving, item, message, take=True)
        if refusal is not None:
            raise refusal

    async def open_stream(self, identity: Identity) -> None:
        """Take one of the tier's concurrent stream slots; ``close_stream`` gives it back.

        Raises:
            QuotaExceeded: with limit ``concurrent_streams`` when all are taken.
        """
        n = self.limits_for(identity).concurrent_streams
        message = f"the {identity.tier} tier allows {n} open streams"
        slot = self._stream_key(identity)
        refusal = await self._slot(slot, n, STREAM_LEASE_S, STREAMS, message, 5.0)
        if refusal is not None:
            raise refusal

    async def close_stream(self, identity: Identity) -> None:
        """Give a stream slot back."""
        await self.concurrency.release(self._stream_key(identity))

    def _stream_key(self, identity: Identity) -> str:
        return f"{self.settings.key_prefix}:streams:{subject(identity)}"

    async def usage(self, identity: Identity) -> Usage:
        """The caller's usage now, against its limits."""
        limits = self.limits_for(identity)
        runs, tools, tokens = self._items(limits)
        run_stats = await self._moving.get_window_stats(runs, *self._ids(identity, RUNS))
        tool_stats = await self._moving.get_window_stats(tools, *self._ids(identity, TOOL_CALLS))
        used_tokens = await self.storage.get(tokens.key_for(*self._ids(identity, TOKENS)))
        return Usage(
            subject=subject(identity),
            tier=identity.tier,
            limits=limits,
            runs_last_minute=limits.runs_per_minute - run_stats.remaining,
            tool_calls_last_minute=limits.tool_calls_per_minute - tool_stats.remaining,
            concurrent_runs=await self.concurrency.count(self._conc_key(identity)),
            llm_tokens_today=int(used_tokens),
        )

    async def close(self) -> None:
        """Release the storage's connections."""
        await self.concurrency.close()
        if isinstance(self.storage, RedisStorage):
            bridge: Any = self.storage.bridge
            await bridge.get_connection().aclose()


_shared: dict[tuple[str, str, int], Quotas] = {}


def quotas_for(settings: QuotaSettings) -> Quotas:
    """The process's ``Quotas`` for ``settings`` in the running event loop (one per storage)."""
    loop = id(asyncio.get_running_loop())
    key = (settings.storage_url, settings.key_prefix, loop)
    if key not in _shared:
        _shared[key] = Quotas(settings)
    return _shared[key]


def forget(quotas: Quotas) -> None:
    """Drop ``quotas`` from the process registry (its owner is closing it)."""
    for k, v in list(_shared.items()):
        if v is quotas:
            del _shared[k]


async def check_tool_call(who: Identity, settings: Settings) -> None:
    """The tool gateway's hook: count one tool call of ``who``.

    Raises:
        QuotaExceeded: with code ``quota_exceeded`` when the tier's tool calls per minute are
            used up; the gateway turns it into a ``tool_error``.
    """
    await quotas_for(settings.quotas).check_tool_call(who)
