"""Session memory contract: every ``SessionMemory`` keeps tenants and threads apart, writes
idempotently and finds the relevant fact. Runs against Qdrant local mode with the packaged
MiniLM model, and against an in-process Qdrant with an OpenAI-compatible embeddings endpoint."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from qdrant_client import AsyncQdrantClient

from core.embeddings import MiniLMEmbedder, OpenAIEmbedder
from core.settings import SessionMemorySettings
from memory.session import (
    Fact,
    FolderInUse,
    QdrantSessionMemory,
    SessionMemory,
    open_session_memory,
)
from tests.fakes.embeddings_server import EmbeddingsServer

FACTS = [
    ("repos", "Trending Rust repositories this week: tokio (30k stars) and ripgrep."),
    ("meeting", "The design review with Bob is on Tuesday at 15:00 in room 4."),
    ("budget", "The Q3 marketing budget is 1.2 million euros, up 10% from Q2."),
    ("diet", "The user said they are vegetarian and allergic to peanuts."),
    ("deploy", "Production deploys happen on Thursdays after the 10:00 stand-up."),
]
QUERIES = [
    ("Which Rust projects are popular on GitHub?", "repos"),
    ("When do I meet Bob?", "meeting"),
    ("How much money does marketing get in the third quarter?", "budget"),
    ("What food should I avoid ordering for the user?", "diet"),
    ("Which day do we ship to production?", "deploy"),
]


@pytest.fixture(scope="module")
def minilm() -> MiniLMEmbedder:
    return MiniLMEmbedder()


@pytest.fixture(scope="module")
def embeddings_server(minilm: MiniLMEmbedder) -> Iterator[EmbeddingsServer]:
    with EmbeddingsServer(minilm) as server:
        yield server


@pytest_asyncio.fixture(params=["local-minilm", "memory-openai-endpoint"])
async def store(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    minilm: MiniLMEmbedder,
) -> AsyncIterator[SessionMemory]:
    if request.param == "local-minilm":
        s = await open_session_memory(SessionMemorySettings(), tmp_path, embedder=minilm)
    else:
        server: EmbeddingsServer = request.getfixturevalue("embeddings_server")
        embedder = OpenAIEmbedder(server.base_url, "all-MiniLM-L6-v2", "test", 384)
        s = QdrantSessionMemory(
            AsyncQdrantClient(location=":memory:"), embedder, "contract", local=True
        )
        await s.setup()
    yield s
    await s.close()


def _facts(tenant: str, thread: str) -> list[Fact]:
    return [
        Fact(tenant=tenant, thread_id=thread, source=src, kind="finding", text=text)
        for src, text in FACTS
    ]


@pytest.mark.asyncio
async def test_each_query_finds_its_fact_first(store: SessionMemory) -> None:
    await store.remember(_facts("acme", "t1"))
    for query, source in QUERIES:
        hits = await store.recall("acme", "t1", query, limit=3)
        assert hits[0].fact.source == source, (query, [h.fact.source for h in hits])


@pytest.mark.asyncio
async def test_another_tenants_1000_searches_return_none_of_its_facts(
    store: SessionMemory,
) -> None:
    await store.remember(_facts("tenant-a", "shared-thread-id"))
    await store.remember(
        [
            Fact(
                tenant="tenant-b",
                thread_id="shared-thread-id",
                source="own",
                kind="finding",
                text="Tenant B keeps its own notes about gardening.",
            )
        ]
    )
    leaked = 0
    queries = [q for q, _ in QUERIES] + [text for _, text in FACTS]
    for i in range(1000):
        hits = await store.recall("tenant-b", "shared-thread-id", queries[i % len(queries)])
        leaked += sum(h.fact.tenant != "tenant-b" for h in hits)
        assert [h.fact.source for h in hits] == ["own"]
    assert leaked == 0


@pytest.mark.asyncio
async def test_threads_are_apart(store: SessionMemory) -> None:
    await store.remember(_facts("acme", "t1"))
    assert await store.recall("acme", "t2", QUERIES[0][0]) == []


@pytest.mark.asyncio
async def test_writing_the_same_source_twice_keeps_one_fact(store: SessionMemory) -> None:
    await store.remember(_facts("acme", "t1"))
    await store.remember(_facts("acme", "t1"))
    replaced = Fact(
        tenant="acme",
        thread_id="t1",
        source="budget",
        kind="finding",
        text="The Q3 marketing budget was cut to 0.9 million euros.",
    )
    await store.remember([replaced])
    hits = await store.recall("acme", "t1", "marketing budget", limit=10)
    assert sorted(h.fact.source for h in hits) == sorted(src for src, _ in FACTS)
    assert next(h for h in hits if h.fact.source == "budget").fact.text == replaced.text


@pytest.mark.asyncio
async def test_min_score_drops_unrelated_facts_and_forget_clears_a_thread(
    store: SessionMemory,
) -> None:
    await store.remember(_facts("acme", "t1"))
    assert await store.recall("acme", "t1", "quantum chromodynamics lattice", min_score=0.5) == []
    await store.forget_thread("acme", "t1")
    assert await store.recall("acme", "t1", QUERIES[0][0]) == []


@pytest.mark.asyncio
async def test_a_second_local_client_on_the_same_folder_is_refused_cleanly(
    tmp_path: Path, minilm: MiniLMEmbedder
) -> None:
    first = await open_session_memory(SessionMemorySettings(), tmp_path, embedder=minilm)
    with pytest.raises(FolderInUse):
        await open_session_memory(SessionMemorySettings(), tmp_path, embedder=minilm)
    await first.close()
    second = await open_session_memory(SessionMemorySettings(), tmp_path, embedder=minilm)
    await second.close()
