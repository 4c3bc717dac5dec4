"""database.checkpoint_commit: checkpoints may commit without the WAL flush; events never do."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.app import checkpoint_pool
from core.db import open_pool
from tests.conftest import make_settings


async def _setting(pool: object) -> str:
    async with pool.connection() as conn:  # type: ignore[attr-defined]
        cur = await conn.execute("SHOW synchronous_commit")
        row = await cur.fetchone()
    return str(row["synchronous_commit"])


@pytest.mark.asyncio
async def test_async_checkpoint_commit_uses_its_own_pool_and_leaves_events_durable(
    db_url: str, tmp_path: Path
) -> None:
    settings = make_settings(db_url, "http://unused/v1", tmp_path)
    assert settings.database.checkpoint_commit == "async"  # the shipped choice (docs/benchmarks.md)
    pool = await open_pool(db_url, 1, 2)
    ckpt = await checkpoint_pool(settings, pool)
    try:
        assert ckpt is not pool
        assert await _setting(ckpt) == "off"
        assert await _setting(pool) == "on"  # the event log, runs, everything else
    finally:
        await ckpt.close()
        await pool.close()


@pytest.mark.asyncio
async def test_sync_checkpoint_commit_shares_the_main_pool(db_url: str, tmp_path: Path) -> None:
    settings = make_settings(db_url, "http://unused/v1", tmp_path)
    settings = settings.model_copy(
        update={"database": settings.database.model_copy(update={"checkpoint_commit": "sync"})}
    )
    pool = await open_pool(db_url, 1, 2)
    try:
        ckpt = await checkpoint_pool(settings, pool)
        assert ckpt is pool
        assert await _setting(ckpt) == "on"
    finally:
        await pool.close()
