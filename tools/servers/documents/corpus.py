"""The documents corpus: each tenant's files in Postgres, searched by full text, meaning or both.

A file is stored in one transaction with all its chunks (each with its page and a ``tsvector``)
once it has been read (``parse``): status ``indexing``, full-text searchable at once. Its chunks
are then embedded (``embed_document``) and the status becomes ``ready``; a process that stops
half way leaves ``indexing`` and the next one finishes it (``pending``). The same bytes added
again are recognised by their sha256; a file of the same name with other bytes replaces the old.

Search (``search``): full text (BM25 over the chunks holding any of the query's words) and
semantic (cosine similarity with each ready chunk's embedding), each a top-50 computed in numpy
over the tenant's chunks kept in memory (``index.SearchIndex``: lexemes as Postgres made them,
and vectors, reloaded only when the tenant's documents change), and hybrid: both lists fused by
reciprocal rank (``1 / (60 + rank)``). A search costs two queries: the query's lexemes with the
tenant's generation, then the hits' names, pages and bodies. Hits carry the document's name,
page and an excerpt: the whole sentences around the chunk's best match (``passage.py``).
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from psycopg import AsyncConnection
from psycopg.rows import dict_row, tuple_row

from core.embeddings import Embedder
from core.errors import LimitReached
from core.settings import DocumentSettings
from tools.servers.documents.parse import KINDS, DocumentRejected, Parsed, chunks, parse
from tools.servers.documents.passage import passage

if TYPE_CHECKING:
    from tools.servers.documents.index import SearchIndex

Mode = Literal["hybrid", "full_text", "semantic"]
RRF_K = 60
CANDIDATES = 50
COLUMNS = (
    "id, name, kind, size, sha256, pages, chunks, status, error, uploaded_by, uploaded_at, ready_at"
)


@dataclass(frozen=True)
class Quota:
    """What the tenant may keep: documents and bytes in all."""

    documents: int
    bytes: int


@dataclass(frozen=True)
class Hit:
    """One chunk found: its document, page, rank score and excerpt."""

    document_id: str
    document: str
    page: int | None
    chunk: int
    score: float
    excerpt: str

    def as_dict(self) -> dict[str, Any]:
        """The hit as tool output."""
        return asdict(self)


def _row(r: dict[str, Any]) -> dict[str, Any]:
    out = dict(r)
    out["id"] = str(out["id"])
    for k in ("uploaded_at", "ready_at"):
        if isinstance(out.get(k), datetime):
            out[k] = out[k].isoformat()
    return out


async def add(
    conn: AsyncConnection[Any],
    *,
    tenant: str,
    name: str,
    data: bytes,
    parsed: Parsed,
    uploaded_by: str,
    chunk_chars: int,
    quota: Quota | None = None,
) -> tuple[dict[str, Any], bool]:
    """Store a read file and its chunks; ``(document, created)``; the same bytes: not again."""
    digest = hashlib.sha256(data).hexdigest()
    parts = [(i + 1 if parsed.page_count else None, c) for i, c in enumerate(parsed.pages)]
    rows = [(page, body) for page, text in parts for body in chunks(text, chunk_chars)]
    async with conn.transaction():
        cur = conn.cursor(row_factory=dict_row)
        # One writer per tenant at a time, so two uploads cannot both pass the quota.
        await cur.execute("SELECT pg_advisory_xact_lock(7303, hashtext(%s))", (tenant,))
        await cur.execute(
            f"SELECT {COLUMNS} FROM documents WHERE tenant = %s AND sha256 = %s", (tenant, digest)
        )
        if (same := await cur.fetchone()) is not None:
            return _row(same), False
        if quota is not None:
            await _check_quota(conn, tenant, name, len(data), quota)
        await cur.execute("DELETE FROM documents WHERE tenant = %s AND name = %s", (tenant, name))
        doc_id = uuid.uuid4()
        await cur.execute(
            "INSERT INTO documents (id, tenant, name, kind, size, sha256, pages, chunks, status,"
            " uploaded_by, content) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 'indexing', %s, %s)"
            f" RETURNING {COLUMNS}",
            (doc_id, tenant, name, parsed.kind, len(data), digest, parsed.page_count, len(rows),
             uploaded_by, data),
        )  # fmt: skip
        doc = await cur.fetchone()
        async with cur.copy(
            "COPY document_chunks (document_id, tenant, chunk, page, body) FROM STDIN"
        ) as copy:
            for i, (page, body) in enumerate(rows):
                await copy.write_row((doc_id, tenant, i, page, body))
    assert doc is not None
    return _row(doc), True


async def _check_quota(
    conn: AsyncConnection[Any], tenant: str, name: str, size: int, quota: Quota
) -> None:
    count, used = await _one(
        conn,
        "SELECT count(*), coalesce(sum(size), 0) FROM documents WHERE tenant = %s AND name <> %s",
        (tenant, name),
    )
    if count + 1 > quota.documents:
        raise LimitReached(
            f"the tenant keeps at most {quota.documents} documents; delete one first",
            limit="documents",
        )
    if used + size > quota.bytes:
        raise LimitReached(
            f"the tenant's documents may hold {quota.bytes} bytes in all; {used} are used",
            limit="document_bytes",
        )


async def listing(conn: AsyncConnection[Any], tenant: str) -> list[dict[str, Any]]:
    """The tenant's documents, newest first."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        f"SELECT {COLUMNS} FROM documents WHERE tenant = %s ORDER BY uploaded_at DESC, name",
        (tenant,),
    )
    return [_row(r) for r in await cur.fetchall()]


async def usage(conn: AsyncConnection[Any], tenant: str) -> tuple[int, int]:
    """The tenant's documents and their bytes in all."""
    count, used = await _one(
        conn, "SELECT count(*), coalesce(sum(size), 0) FROM documents WHERE tenant = %s", (tenant,)
    )
    return int(count), int(used)


async def _one(conn: AsyncConnection[Any], query: str, params: tuple[Any, ...]) -> tuple[Any, ...]:
    cur = conn.cursor(row_factory=tuple_row)
    await cur.execute(query, params)
    row = await cur.fetchone()
    assert row is not None
    return row


async def get(
    conn: AsyncConnection[Any], tenant: str, doc_id: str, *, content: bool = False
) -> dict[str, Any] | None:
    """One of the tenant's documents (with its bytes if ``content``), or ``None``."""
    try:
        key = uuid.UUID(doc_id)
    except ValueError:
        return None
    cols = f"{COLUMNS}, content" if content else COLUMNS
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(f"SELECT {cols} FROM documents WHERE tenant = %s AND id = %s", (tenant, key))
    row = await cur.fetchone()
    return _row(row) if row else None


async def delete(conn: AsyncConnection[Any], tenant: str, doc_id: str) -> bool:
    """Delete a document with its chunks and vectors; whether there was one."""
    try:
        key = uuid.UUID(doc_id)
    except ValueError:
        return False
    cur = await conn.execute("DELETE FROM documents WHERE tenant = %s AND id = %s", (tenant, key))
    return cur.rowcount > 0


async def pending(conn: AsyncConnection[Any]) -> list[str]:
    """Documents (of any tenant) whose chunks are not all embedded yet, oldest first."""
    cur = conn.cursor(row_factory=tuple_row)
    await cur.execute("SELECT id FROM documents WHERE status = 'indexing' ORDER BY uploaded_at")
    return [str(r[0]) for r in await cur.fetchall()]


async def embed_document(
    conn: AsyncConnection[Any], embedder: Embedder, doc_id: str, batch: int = 32
) -> None:
    """Embed the document's chunks that have no vector yet, then mark it ``ready``."""
    import numpy as np

    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "SELECT chunk, body FROM document_chunks WHERE document_id = %s AND embedding IS NULL"
        " ORDER BY chunk",
        (doc_id,),
    )
    todo = await cur.fetchall()
    for start in range(0, len(todo), batch):
        part = todo[start : start + batch]
        vectors = await embedder.embed([r["body"] for r in part])
        async with conn.transaction():
            await cur.executemany(
                "UPDATE document_chunks SET embedding = %s WHERE document_id = %s AND chunk = %s",
                [
                    (np.asarray(v, dtype="<f4").tobytes(), doc_id, r["chunk"])
                    for v, r in zip(vectors, part, strict=True)
                ],
            )
    await cur.execute(
        "UPDATE documents SET status = 'ready', ready_at = now(), error = NULL"
        " WHERE id = %s AND status = 'indexing'",
        (doc_id,),
    )


async def mark_failed(conn: AsyncConnection[Any], doc_id: str, error: str) -> None:
    """Say that indexing the document failed (its text stays searchable by full text)."""
    await conn.execute(
        "UPDATE documents SET status = 'failed', error = %s WHERE id = %s", (error[:500], doc_id)
    )


def fuse(*ranked: list[tuple[str, int]]) -> list[tuple[tuple[str, int], float]]:
    """Reciprocal-rank fusion of ranked lists: each key scores the sum of ``1/(60 + rank)``."""
    scores: dict[tuple[str, int], float] = {}
    for ranking in ranked:
        for rank, key in enumerate(ranking, start=1):
            scores[key] = scores.get(key, 0.0) + 1.0 / (RRF_K + rank)
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))


async def search(
    conn: AsyncConnection[Any],
    tenant: str,
    query: str,
    limit: int,
    *,
    embedder: Embedder | None,
    index: SearchIndex,
    mode: Mode = "hybrid",
) -> list[Hit]:
    """The best chunks for ``query``: hybrid (RRF of full text and semantic) or either alone."""
    semantic = mode in ("hybrid", "semantic") and embedder is not None
    # The query is embedded (off the event loop) while Postgres analyses the query's words.
    embedding = asyncio.ensure_future(embedder.embed([query])) if semantic and embedder else None
    try:
        state, terms = await index.tenant(conn, tenant, query)
    except BaseException:
        if embedding is not None:
            embedding.cancel()
        raise
    lists: list[list[tuple[str, int]]] = []
    if mode in ("hybrid", "full_text"):
        lists.append(state.lexical(terms, CANDIDATES))
    if embedding is not None:
        (vector,) = await embedding
        lists.append(state.semantic(vector, CANDIDATES))
    ranked = fuse(*lists)[:limit]
    return await _hits(conn, query, ranked)


async def _hits(
    conn: AsyncConnection[Any], query: str, ranked: list[tuple[tuple[str, int], float]]
) -> list[Hit]:
    if not ranked:
        return []
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "SELECT c.document_id, c.chunk, c.page, d.name, c.body"
        " FROM document_chunks c JOIN documents d ON d.id = c.document_id"
        " WHERE (c.document_id, c.chunk) IN (SELECT * FROM unnest(%(ids)s::uuid[], %(ns)s::int[]))",
        {
            "ids": [uuid.UUID(k[0]) for k, _ in ranked],
            "ns": [k[1] for k, _ in ranked],
        },
    )
    found = {(str(r["document_id"]), r["chunk"]): r for r in await cur.fetchall()}
    return [
        Hit(
            k[0],
            found[k]["name"],
            found[k]["page"],
            k[1],
            round(s, 5),
            passage(found[k]["body"], query),
        )
        for k, s in ranked
        if k in found
    ]


def files(paths: list[Path]) -> list[Path]:
    """The files under ``paths`` of a kind Keel reads (directories are walked)."""
    found: list[Path] = []
    for p in paths:
        if p.is_dir():
            found += sorted(f for f in p.rglob("*") if f.suffix.lower() in KINDS and f.is_file())
        elif p.suffix.lower() in KINDS:
            found.append(p)
    return found


async def ingest(
    conn: AsyncConnection[Any],
    embedder: Embedder,
    tenant: str,
    paths: list[Path],
    limits: DocumentSettings,
) -> dict[str, Any]:
    """Add each file under ``paths`` to ``tenant``'s documents and index it now (``keel ingest``).

    A file Keel cannot read is skipped with the reason, the others are still added.
    """
    stats: dict[str, Any] = {"files": 0, "chunks": 0, "unchanged": 0, "refused": {}}
    for f in files(paths):
        data = f.read_bytes()
        try:
            parsed = parse(f.name, data, limits)
        except DocumentRejected as exc:
            stats["refused"][str(f)] = exc.detail
            continue
        doc, created = await add(
            conn,
            tenant=tenant,
            name=f.name,
            data=data,
            parsed=parsed,
            uploaded_by="keel ingest",
            chunk_chars=limits.chunk_chars,
        )
        if not created and doc["status"] == "ready":
            stats["unchanged"] += 1
            continue
        await embed_document(conn, embedder, doc["id"], limits.embed_batch)
        stats["files"] += 1
        stats["chunks"] += doc["chunks"]
    return stats
