"""calendar 1.0.0 (practice 9): per-tenant events in Postgres; booking is idempotent.

``list_events`` needs ``read:calendar`` and ``schedule_meeting`` needs ``write:calendar``;
the gateway checks both against the run's scopes. The tenant comes from the request's
``_meta`` set by the gateway, never from the model's arguments. A retried booking with the
same ``idempotency_key`` returns the first booking instead of creating a second.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Annotated, Any

import psycopg
from mcp.server.fastmcp import Context
from psycopg.rows import dict_row
from pydantic import Field

from tools.servers.common import invoked, make_server

server = make_server("calendar", "1.0.0", "The tenant's calendar: list and schedule meetings.")

SCHEMA = """
CREATE TABLE IF NOT EXISTS tool_calendar_events (
    id bigserial PRIMARY KEY,
    tenant text NOT NULL,
    title text NOT NULL,
    starts_at timestamptz NOT NULL,
    ends_at timestamptz NOT NULL,
    attendees text[] NOT NULL DEFAULT '{}',
    idempotency_key text,
    created_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant, idempotency_key)
);
CREATE INDEX IF NOT EXISTS tool_calendar_events_tenant_start
    ON tool_calendar_events (tenant, starts_at);
"""
_ready = False


async def _conn() -> psycopg.AsyncConnection[dict[str, Any]]:
    global _ready
    url = os.environ.get("KEEL_TOOLS_DATABASE_URL")
    if not url:
        raise RuntimeError("calendar: no database configured")
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row)
    if not _ready:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(7301)")
            await conn.execute(SCHEMA)
        _ready = True
    return conn


def _row(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": r["id"],
        "title": r["title"],
        "starts_at": r["starts_at"].isoformat(),
        "ends_at": r["ends_at"].isoformat(),
        "attendees": list(r["attendees"]),
    }


@server.tool(meta={"keel/permissions": ["read:calendar"]})
async def list_events(
    ctx: Context[Any, Any, Any],
    start: datetime | None = None,
    days: Annotated[int, Field(ge=1, le=31)] = 7,
) -> dict[str, Any]:
    """The tenant's events from ``start`` (default: now) for ``days`` days."""
    who = invoked(ctx, "list_events", {"start": start, "days": days})
    begin = start or datetime.now().astimezone()
    async with await _conn() as conn:
        cur = await conn.execute(
            "SELECT * FROM tool_calendar_events WHERE tenant = %s AND starts_at >= %s"
            " AND starts_at < %s ORDER BY starts_at LIMIT 100",
            (who["tenant"], begin, begin + timedelta(days=days)),
        )
        rows = await cur.fetchall()
    return {"events": [_row(r) for r in rows]}


@server.tool(meta={"keel/permissions": ["write:calendar"]})
async def schedule_meeting(
    title: Annotated[str, Field(min_length=1, max_length=200)],
    starts_at: datetime,
    ctx: Context[Any, Any, Any],
    duration_min: Annotated[int, Field(ge=5, le=480)] = 30,
    attendees: list[str] | None = None,
    idempotency_key: Annotated[str, Field(min_length=8, max_length=128)] | None = None,
) -> dict[str, Any]:
    """Book a meeting; the same ``idempotency_key`` books once and returns that booking."""
    who = invoked(
        ctx, "schedule_meeting", {"title": title, "starts_at": starts_at, "key": idempotency_key}
    )
    async with await _conn() as conn:
        cur = await conn.execute(
            "INSERT INTO tool_calendar_events"
            " (tenant, title, starts_at, ends_at, attendees, idempotency_key, created_by)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (tenant, idempotency_key) DO NOTHING RETURNING *",
            (
                who["tenant"],
                title,
                starts_at,
                starts_at + timedelta(minutes=duration_min),
                attendees or [],
                idempotency_key,
                who["user"],
            ),
        )
        row = await cur.fetchone()
        created = row is not None
        if row is None:
            cur = await conn.execute(
                "SELECT * FROM tool_calendar_events WHERE tenant = %s AND idempotency_key = %s",
                (who["tenant"], idempotency_key),
            )
            row = await cur.fetchone()
    assert row is not None
    return {"created": created, "event": _row(row)}
