"""Graceful degradation (practice 15): the cache of good results a failing pin may answer from.

This module holds only ``ResultCache``. The breaker, the retries and fault injection live in the
gateway (``tools/gateway.py``; servers read an injected fault in ``tools/servers/common.py``),
whose call path for one pinned server is: circuit breaker (``purgatory``, one circuit per pin:
open after ``tools.breaker.threshold`` failures in a row, refusing calls without reaching the
server, half-open for one trial call after ``cooldown_s``) → retries with jittered exponential
backoff (``tenacity``) for the failure kinds in ``tools.retry.on`` → the call with its timeout.
When it still fails with a kind the pin's ``fallbacks`` rule lists, the tool pipeline degrades
as the rule says (``tools/pipeline.py``): ``cache`` answers from ``ResultCache`` (the last good
result of the same tenant, tool, version and normalised arguments, no older than ``max_age``),
``tool`` calls another pin, ``skip`` goes on without the tool; each is told as a ``warning``
event with a stable code.

``ResultCache`` keeps a pin's successful results in Postgres only when its rule uses the cache,
so side-effecting tools are never replayed from it. The breaker's state is per process
(purgatory's in-memory store): each replica learns a tool is failing on its own.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

# Arguments Keel sets itself, never part of what a result depends on.
_NOT_KEYED = frozenset({"idempotency_key"})


def args_key(args: dict[str, Any]) -> str:
    """A stable key for arguments: SHA-256 of their canonical JSON (sorted, no Keel fields)."""
    canon = json.dumps(
        {k: v for k, v in args.items() if k not in _NOT_KEYED},
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(canon.encode()).hexdigest()


@dataclass(frozen=True)
class CachedResult:
    """A result served from the cache, and when it was stored."""

    result: Any
    text: str
    stored_at: datetime


class ResultCache:
    """Successful tool results in Postgres (``tool_cache``), by tenant, tool, version, args.

    The one implementation (embedded and production mode both run Postgres): no protocol.
    """

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        """Use ``pool`` (the app's; rows as dicts)."""
        self.pool = pool

    async def put(
        self, tenant: str, tool: str, version: str, args: dict[str, Any], result: Any, text: str
    ) -> None:
        """Keep (or replace) the latest result of this call."""
        async with self.pool.connection() as conn:
            await conn.execute(
                "INSERT INTO tool_cache (tenant, tool, version, args_key, args, result, text)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (tenant, tool, version, args_key) DO UPDATE"
                " SET result = EXCLUDED.result, text = EXCLUDED.text, args = EXCLUDED.args,"
                " stored_at = now()",
                (
                    tenant,
                    tool,
                    version,
                    args_key(args),
                    Jsonb(args),
                    Jsonb(result),
                    text,
                ),
            )

    async def get(
        self, tenant: str, tool: str, version: str, args: dict[str, Any], max_age_s: float
    ) -> CachedResult | None:
        """The stored result of this call if it is at most ``max_age_s`` old."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT result, text, stored_at FROM tool_cache"
                " WHERE tenant = %s AND tool = %s AND version = %s AND args_key = %s"
                " AND stored_at >= now() - make_interval(secs => %s)",
                (tenant, tool, version, args_key(args), max_age_s),
            )
            row: Any = await cur.fetchone()
        if row is None:
            return None
        return CachedResult(row["result"], row["text"], row["stored_at"])
