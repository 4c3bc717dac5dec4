"""Documents search through the in-memory index: same matches as Postgres, BM25 order, changes seen.

Real Postgres (migrated, with the generation trigger), the packaged embedding model, and the
retrieval benchmark run at a small size to check what it measures (its speed is not asserted).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
import pytest_asyncio
import yaml

from bench.retrieval import run as bench
from core.db import migrate
from core.embeddings import MiniLMEmbedder
from tools.servers.documents import corpus
from tools.servers.documents.index import SearchIndex
from tools.servers.documents.parse import Parsed

pytestmark = pytest.mark.asyncio
EMBEDDER: MiniLMEmbedder | None = None


def embedder() -> MiniLMEmbedder:
    global EMBEDDER
    if EMBEDDER is None:
        EMBEDDER = MiniLMEmbedder()
    return EMBEDDER


@pytest_asyncio.fixture
async def conn(db_url: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as c:
        await migrate(c)
        yield c


async def add(
    conn: psycopg.AsyncConnection[Any], tenant: str, name: str, pages: list[str], embed: bool
) -> str:
    text = "\n\n".join(pages)
    doc, _ = await corpus.add(
        conn, tenant=tenant, name=name, data=text.encode(), parsed=Parsed("pdf", pages, len(pages)),
        uploaded_by="test", chunk_chars=900,
    )  # fmt: skip
    if embed:
        await corpus.embed_document(conn, embedder(), doc["id"])
    return str(doc["id"])


async def test_full_text_matches_what_postgres_matches_ranked_by_bm25(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    tenant = f"t{uuid.uuid4().hex[:8]}"
    common = [f"The travel policy covers trip {i} and its policy budget." for i in range(12)]
    await add(conn, tenant, "policies.pdf", common, embed=False)
    await add(conn, tenant, "board.pdf", ["The policy on the dividend: 40 cents."], embed=False)
    index = SearchIndex()
    query = "What is the policy on the dividend?"
    state, terms = await index.tenant(conn, tenant, query)
    found = set(state.lexical(terms, 100))
    cur = await conn.execute(
        "SELECT document_id::text, chunk FROM document_chunks WHERE tenant = %s"
        " AND tsv @@ replace(plainto_tsquery('english', %s)::text, ' & ', ' | ')::tsquery",
        (tenant, query),
    )
    assert found == {(r[0], r[1]) for r in await cur.fetchall()}
    assert len(found) == 13
    # The rare word outweighs the word every chunk has (ts_rank had no such weight).
    hits = await corpus.search(conn, tenant, query, 3, embedder=None, index=index, mode="full_text")
    assert (hits[0].document, hits[0].page) == ("board.pdf", 1)
    assert "40 cents" in hits[0].excerpt
    none = await corpus.search(conn, tenant, "zebra", 3, embedder=None, index=index)
    assert none == []


async def test_the_index_follows_uploads_readiness_and_deletes_from_any_connection(
    conn: psycopg.AsyncConnection[Any], db_url: str
) -> None:
    tenant, other = f"t{uuid.uuid4().hex[:8]}", f"o{uuid.uuid4().hex[:8]}"
    intro = await add(conn, tenant, "intro.pdf", ["Welcome to Northwind."], embed=True)
    index = SearchIndex()
    ask = "how much holiday do employees have"
    assert await corpus.search(conn, tenant, ask, 5, embedder=embedder(), index=index)
    loaded = index.tenants[tenant]
    await corpus.search(conn, tenant, "Northwind", 5, embedder=embedder(), index=index)
    assert index.tenants[tenant] is loaded  # nothing changed: nothing reloaded
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as api:
        pages = ["Benefits", "Staff get 28 days of paid vacation."]
        doc = await add(api, tenant, "benefits.pdf", pages, embed=False)
    # Stored, not embedded: found by its words at once, not yet by meaning.
    words = await corpus.search(conn, tenant, "paid vacation", 5, embedder=None, index=index)
    assert [(h.document, h.page) for h in words] == [("benefits.pdf", 2)]
    meaning = await corpus.search(
        conn, tenant, ask, 5, embedder=embedder(), index=index, mode="semantic"
    )
    assert {h.document for h in meaning} == {"intro.pdf"}
    assert index.tenants[tenant].parts[intro] is loaded.parts[intro]  # only the new one loaded
    await corpus.embed_document(conn, embedder(), doc)
    meaning = await corpus.search(
        conn, tenant, ask, 5, embedder=embedder(), index=index, mode="semantic"
    )
    assert (meaning[0].document, meaning[0].page) == ("benefits.pdf", 2)
    hybrid = await corpus.search(conn, tenant, ask, 5, embedder=embedder(), index=index)
    assert (hybrid[0].document, hybrid[0].page) == ("benefits.pdf", 2)
    assert await corpus.search(conn, other, ask, 5, embedder=embedder(), index=index) == []
    assert await corpus.delete(conn, tenant, doc)
    after = await corpus.search(conn, tenant, ask, 5, embedder=embedder(), index=index)
    assert {h.document for h in after} == {"intro.pdf"}
    assert list(index.tenants[tenant].parts) == [intro]


async def test_retrieval_bench_at_small_size_measures_what_it_says(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    questions = yaml.safe_load((bench.HERE / "questions.yaml").read_text())[:4]
    names = {q["doc"] for q in questions}
    for name, data in bench.documents():
        if name in names:
            await bench.add_file(conn, embedder(), "small", name, data)
    await bench.fill(conn, None, "small", 300)
    cur = await conn.execute("SELECT count(*) FROM document_chunks WHERE tenant = 'small'")
    assert (await cur.fetchone()) == (300,)
    speed = await bench.latency(conn, embedder(), "small", questions, rounds=3)
    for mode in bench.MODES:
        assert speed[mode]["n"] == 12
        assert 0 < speed[mode]["p50_ms"] <= speed[mode]["p95_ms"]
    assert speed["first_search_ms"] > 0 and speed["first_search_after_upload_ms"] > 0
    quality = await bench.recall(conn, embedder(), "small", questions)
    assert set(quality) == set(bench.MODES)
    assert quality["hybrid"]["recall_at_5"] >= 0.75
    up = await bench.upload_to_searchable(conn, embedder(), pages=6)
    assert (up["pages"], up["page"], up["full_text_rank"]) == (6, 6, 1)
    assert up["hybrid_rank"] is not None  # in the top 5
    assert up["stored_s"] <= up["full_text_searchable_s"] <= up["ready_s"]
