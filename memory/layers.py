"""The memory layers a run may consult, built once per process and handed to the graph."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from psycopg_pool import AsyncConnectionPool

from core.settings import MemorySettings, Settings
from memory.long_term import Keyring, LongTermMemory
from memory.session import FolderInUse, SessionMemory, open_session_memory

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MemoryLayers:
    """Long-term (Postgres, encrypted) and session (vectors) memory, plus their settings.

    Short-term memory is the conversation in graph state and needs no store.
    """

    settings: MemorySettings
    long_term: LongTermMemory | None = None
    session: SessionMemory | None = None


@asynccontextmanager
async def open_memory(
    settings: Settings, pool: AsyncConnectionPool[Any]
) -> AsyncIterator[MemoryLayers]:
    """Open the configured layers for the app's lifetime (session memory: Qdrant + embedder).

    Qdrant local mode lets one process own its folder: a second process on the same data_dir
    runs without session memory (logged) instead of failing to start; use a Qdrant server
    (``memory.session.url``) for several replicas.
    """
    mem = settings.memory
    keyring = Keyring(mem.master_key, mem.previous_master_keys)
    session: SessionMemory | None = None
    if mem.session.enabled:
        try:
            session = await open_session_memory(mem.session, settings.data_dir)
        except FolderInUse as exc:
            log.warning("session memory disabled in this process: %s", exc)
    try:
        yield MemoryLayers(mem, LongTermMemory(pool, keyring), session)
    finally:
        if session is not None:
            await session.close()
