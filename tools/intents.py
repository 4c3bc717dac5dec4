"""Side effects once across crashes (practice 3): a tool call's intent first, its result after.

Before the gateway calls a tool that changes something (it declares a ``write:`` or ``exec:``
permission) it records an intent under the call's key, committed before the call; after the
call it records the outcome and, on success, the result. The key is stable across a resumed
run (the pipeline derives it from the run, the plan step and the attempt, or uses the
confirmation id of a confirmed call), so the resumed run's repeat of the call finds it:

* a tool that takes an ``idempotency_key`` (the calendar) is called again with the same key
  and answers with what it did the first time: the meeting is booked once;
* a tool that cannot tell (``python_exec``) is not called again: with a recorded result that
  result is returned; without one (the process died during the call) the outcome is unknown
  and the call is refused with ``outcome_unknown`` (the pipeline holds it for the caller's
  confirmation again when the tool is under ``tools.confirm``).

Intents are written on the app's pool, with synchronous commit: one that a Postgres crash
could lose would let a code call run twice. Retention deletes them with their age
(``keel prune``).
"""

from __future__ import annotations

from typing import Any

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from tools.errors import ToolError


class OutcomeUnknown(ToolError):
    """The call was started before (its process died during it) and cannot be asked by key."""

    code = "outcome_unknown"
    title = "Tool call outcome unknown"


class ToolIntents:
    """The ``tool_intents`` table on the app's pool."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        """Use ``pool``."""
        self.pool = pool

    async def begin(
        self, *, tenant: str, key: str, trace_id: str, tool: str, version: str
    ) -> dict[str, Any] | None:
        """Record the intent to call; returns the earlier intent under ``key``, if any.

        The earlier one: outcome (``None`` while unknown, ``ok`` or an error code), result
        and text.
        """
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "INSERT INTO tool_intents (tenant, key, trace_id, tool, version)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (tenant, key) DO NOTHING RETURNING key",
                (tenant, key, trace_id, tool, version),
            )
            if await cur.fetchone() is not None:
                return None
            cur = await conn.execute(
                "SELECT outcome, result, text FROM tool_intents WHERE tenant = %s AND key = %s",
                (tenant, key),
            )
            row: dict[str, Any] | None = await cur.fetchone()
        return row

    async def finish(
        self, *, tenant: str, key: str, outcome: str, result: Any = None, text: str | None = None
    ) -> None:
        """Record how the call under ``key`` ended (``ok`` with its result, or an error code)."""
        async with self.pool.connection() as conn:
            await conn.execute(
                "UPDATE tool_intents SET finished_at = now(), outcome = %s, result = %s,"
                " text = %s WHERE tenant = %s AND key = %s",
                (outcome, Jsonb(result) if outcome == "ok" else None, text, tenant, key),
            )
