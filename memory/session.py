"""Session memory (practice 14): facts of one task, embedded and searched in Qdrant.

Facts (tool results, findings, user statements, retrieved passages) live in one collection,
partitioned by payload: every point carries ``tenant`` and ``thread_id`` and every query filters
on both, so a search can never return another tenant's or thread's facts. On a Qdrant server
both fields get keyword payload indexes (``tenant`` with ``is_tenant``, Qdrant's multitenancy
layout); local mode keeps no indexes and filters while it scans.

A point's id is a UUIDv5 of ``(tenant, thread_id, source)``: writing the same source again
overwrites the point, so retries and replays never duplicate a fact.

Embedded default: qdrant-client local mode in ``<data_dir>/qdrant`` — one process owns the
folder, and it commits per point, so writes go in one batched upsert. Production: a Qdrant
server URL. Both are ``QdrantSessionMemory``; ``tests/integration/test_session_memory.py`` is
the contract suite every ``SessionMemory`` passes.
"""

from __future__ import annotations

import fcntl
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field
from qdrant_client import AsyncQdrantClient, models

from core.embeddings import Embedder, embedder_for
from core.settings import SessionMemorySettings

FactKind = Literal["tool_result", "finding", "user_statement", "passage"]
_NAMESPACE = uuid.UUID("6b1f5b0e-6d1e-4c55-9a57-6b65656c6d65")


class Fact(BaseModel):
    """One thing learned in a thread; ``source`` identifies it for idempotent writes."""

    tenant: str
    thread_id: str
    source: str = Field(max_length=300)
    kind: FactKind
    text: str = Field(max_length=8000)
    meta: dict[str, Any] = Field(default_factory=dict)


class Hit(BaseModel):
    """A fact found by a search, with its cosine similarity."""

    fact: Fact
    score: float


class SessionMemory(Protocol):
    """A store of session facts partitioned by tenant and thread."""

    async def remember(self, facts: Sequence[Fact]) -> int:
        """Store ``facts`` (idempotent per tenant, thread and source); returns how many."""
        ...

    async def recall(
        self,
        tenant: str,
        thread_id: str,
        query: str,
        limit: int = 4,
        min_score: float | None = None,
    ) -> list[Hit]:
        """The facts of ``(tenant, thread_id)`` closest to ``query``, best first."""
        ...

    async def forget_thread(self, tenant: str, thread_id: str) -> None:
        """Delete every fact of a thread."""
        ...

    async def close(self) -> None:
        """Release the store."""
        ...


def point_id(tenant: str, thread_id: str, source: str) -> str:
    """The point id of a fact: stable for the same (tenant, thread, source)."""
    return str(uuid.uuid5(_NAMESPACE, f"{tenant}\x00{thread_id}\x00{source}"))


def _scope(tenant: str, thread_id: str) -> models.Filter:
    return models.Filter(
        must=[
            models.FieldCondition(key="tenant", match=models.MatchValue(value=tenant)),
            models.FieldCondition(key="thread_id", match=models.MatchValue(value=thread_id)),
        ]
    )


class QdrantSessionMemory:
    """Session memory in a Qdrant collection (local folder, in-memory, or server)."""

    def __init__(
        self, client: AsyncQdrantClient, embedder: Embedder, collection: str, *, local: bool
    ) -> None:
        """Use ``client`` and ``embedder``; call ``setup`` before use."""
        self.client = client
        self.embedder = embedder
        self.collection = collection
        self.local = local

    async def setup(self) -> None:
        """Create the collection and, on a server, the payload indexes."""
        if not await self.client.collection_exists(self.collection):
            await self.client.create_collection(
                self.collection,
                vectors_config=models.VectorParams(
                    size=self.embedder.dimensions, distance=models.Distance.COSINE
                ),
            )
        if self.local:
            return
        await self.client.create_payload_index(
            self.collection,
            "tenant",
            field_schema=models.KeywordIndexParams(
                type=models.KeywordIndexType.KEYWORD, is_tenant=True
            ),
        )
        await self.client.create_payload_index(
            self.collection, "thread_id", field_schema=models.PayloadSchemaType.KEYWORD
        )

    async def remember(self, facts: Sequence[Fact]) -> int:
        """Embed and upsert ``facts`` in one batch."""
        if not facts:
            return 0
        unique = {point_id(f.tenant, f.thread_id, f.source): f for f in facts}
        vectors = await self.embedder.embed([f.text for f in unique.values()])
        points = [
            models.PointStruct(id=pid, vector=vec, payload=fact.model_dump())
            for (pid, fact), vec in zip(unique.items(), vectors, strict=True)
        ]
        await self.client.upsert(self.collection, points=points, wait=True)
        return len(points)

    async def recall(
        self,
        tenant: str,
        thread_id: str,
        query: str,
        limit: int = 4,
        min_score: float | None = None,
    ) -> list[Hit]:
        """Search only inside ``(tenant, thread_id)``."""
        (vector,) = await self.embedder.embed([query])
        res = await self.client.query_points(
            self.collection,
            query=vector,
            query_filter=_scope(tenant, thread_id),
            limit=limit,
            score_threshold=min_score,
            with_payload=True,
        )
        return [Hit(fact=Fact.model_validate(p.payload), score=p.score) for p in res.points]

    async def forget_thread(self, tenant: str, thread_id: str) -> None:
        """Delete the thread's points."""
        await self.client.delete(
            self.collection,
            points_selector=models.FilterSelector(filter=_scope(tenant, thread_id)),
            wait=True,
        )

    async def close(self) -> None:
        """Close the client (local mode releases its folder lock) and the embedder."""
        await self.client.close()
        await self.embedder.aclose()


class FolderInUse(RuntimeError):
    """Another Qdrant local-mode client (in any process) owns the folder."""


def _check_folder_free(path: Path) -> None:
    """Refuse a local-mode folder another client holds (qdrant-client leaks a file if it tries)."""
    lock = path / ".lock"
    if not lock.exists():
        return
    with lock.open("r+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise FolderInUse(f"{path} is already used by another Qdrant local client") from exc
        fcntl.flock(f, fcntl.LOCK_UN)


async def open_session_memory(
    settings: SessionMemorySettings, data_dir: Path, embedder: Embedder | None = None
) -> QdrantSessionMemory:
    """The configured store: a Qdrant server at ``url``, else local mode in ``data_dir``."""
    if settings.url:
        client = AsyncQdrantClient(url=settings.url, api_key=settings.api_key)
        local = False
    else:
        path = data_dir / "qdrant"
        path.mkdir(parents=True, exist_ok=True)
        _check_folder_free(path)
        client = AsyncQdrantClient(path=str(path))
        local = True
    store = QdrantSessionMemory(
        client, embedder or embedder_for(settings), settings.collection, local=local
    )
    await store.setup()
    return store
