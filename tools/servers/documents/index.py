"""Each tenant's chunks kept in memory for search: BM25 postings of their lexemes and their vectors.

Why in memory: Postgres can match words through the GIN index on ``document_chunks.tsv``, but
it cannot give the best few chunks of an ORed query without ranking every chunk that matches,
and a question's ORed words match most chunks of a large corpus (at 10,000 chunks ``ts_rank``
over them was seconds under load). ``ts_rank`` has no inverse document frequency either, so a
question's common words weighed as much as its rare ones. The vectors have no index in Postgres
(no pgvector on the embedded Postgres Keel runs on), so cosine similarity was always computed
here over a matrix; the lexemes now live beside it.

What is kept, per document (loaded once: a document's chunks never change, a new upload of the
same name is a new document): its chunk numbers, each chunk's lexemes with their counts exactly
as Postgres's ``english`` configuration made them for the stored ``tsv`` column (the query is
analysed by Postgres too, ``to_tsvector('english', query)``, so stemming and stop words agree),
and the chunk vectors once the document is ``ready``. Per tenant: those concatenated, a float32
matrix (rows without a vector masked) and postings sorted by lexeme id, rebuilt from the
per-document parts when the tenant's set of documents changes (a full re-sort of the postings:
0.3 s of CPU at 10,000 chunks). Both levels are kept, about ``8·dims + 32·lexemes`` bytes
per chunk: some 80 MB at 10,000 chunks of 384 dimensions and 150 distinct lexemes each.

When it changes: ``document_generations`` (migration 0012) holds a number per tenant that a
trigger bumps on every insert, delete or status change of ``documents``, whichever process wrote
it. Each search reads that number and the query's lexemes in one round trip; only when the
number moved does it list the tenant's documents and load those it lacks or that became ready.

Scoring: full text is BM25 (``k1`` 1.2, ``b`` 0.75, the length being the chunk's lexeme count)
over the chunks holding any of the query's lexemes, computed with numpy on those lexemes'
postings only; semantic is the dot product with every ready chunk's (unit) vector. Each gives
its top ``limit``; ties go to the lower ``(document_id, chunk)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from psycopg import AsyncConnection
from psycopg.rows import tuple_row

K1 = 1.2
B = 0.75
Key = tuple[str, int]
_POSTING = np.dtype([("term", ">i8"), ("chunk", ">i4"), ("count", ">i4")])
_EMPTY_T = np.zeros(0, dtype=np.int64)
_EMPTY_I = np.zeros(0, dtype=np.int32)
_EMPTY_F = np.zeros(0, dtype=np.float32)


@dataclass(frozen=True)
class DocumentPart:
    """One document's chunks: numbers, lexeme postings (row within the document) and vectors."""

    ready: bool
    chunks: np.ndarray
    terms: np.ndarray
    rows: np.ndarray
    counts: np.ndarray
    vectors: np.ndarray | None
    has_vector: np.ndarray


@dataclass
class TenantIndex:
    """A tenant's chunks as arrays: keys, BM25 postings sorted by lexeme, vector matrix."""

    generation: int
    parts: dict[str, DocumentPart]
    keys: list[Key] = field(default_factory=list)
    terms: np.ndarray = field(default_factory=lambda: _EMPTY_T)
    rows: np.ndarray = field(default_factory=lambda: _EMPTY_I)
    weights: np.ndarray = field(default_factory=lambda: _EMPTY_F)
    matrix: np.ndarray | None = None
    has_vector: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))

    @classmethod
    def assemble(cls, generation: int, parts: dict[str, DocumentPart]) -> TenantIndex:
        """Concatenate the documents' parts (in document id order) into the tenant's arrays."""
        ids = sorted(parts)
        out = cls(generation, parts)
        out.keys = [(d, int(c)) for d in ids for c in parts[d].chunks]
        if not out.keys:
            return out
        offsets = np.cumsum([0] + [len(parts[d].chunks) for d in ids[:-1]])
        terms = np.concatenate([parts[d].terms for d in ids])
        rows = np.concatenate([parts[d].rows + o for d, o in zip(ids, offsets, strict=True)])
        counts = np.concatenate([parts[d].counts for d in ids])
        order = np.argsort(terms)  # a chunk's place within a lexeme's postings does not matter
        out.terms, out.rows, counts = terms[order], rows[order], counts[order]
        lengths = np.bincount(out.rows, weights=counts, minlength=len(out.keys))
        norm = K1 * (1 - B + B * lengths / max(float(lengths.mean()), 1.0))
        # Each posting's BM25 weight but the lexeme's idf, which a search multiplies in.
        out.weights = (counts * (K1 + 1) / (counts + norm[out.rows])).astype(np.float32)
        out.matrix, out.has_vector = _matrix([parts[d] for d in ids], len(out.keys))
        return out

    def lexical(self, terms: np.ndarray, limit: int) -> list[Key]:
        """The ``limit`` best chunks by BM25 for the query's lexeme hashes."""
        n = len(self.keys)
        if not n or not len(terms):
            return []
        scores = np.zeros(n, dtype=np.float32)
        lows = np.searchsorted(self.terms, terms, side="left")
        highs = np.searchsorted(self.terms, terms, side="right")
        for lo, hi in zip(lows.tolist(), highs.tolist(), strict=True):
            if hi > lo:
                idf = math.log(1 + (n - (hi - lo) + 0.5) / ((hi - lo) + 0.5))
                scores[self.rows[lo:hi]] += np.float32(idf) * self.weights[lo:hi]
        return self._top(scores, limit)

    def semantic(self, vector: list[float], limit: int) -> list[Key]:
        """The ``limit`` chunks closest to ``vector`` (cosine: the vectors are unit length)."""
        if self.matrix is None or len(vector) != self.matrix.shape[1]:
            return []
        # einsum's own loop, not BLAS: a threaded sgemv waited for a busy core (14 ms, not 1).
        scores = np.einsum("ij,j->i", self.matrix, np.asarray(vector, dtype=np.float32))
        return self._top(np.where(self.has_vector, scores + 2, 0), limit)

    def _top(self, scores: np.ndarray, limit: int) -> list[Key]:
        """The keys of the ``limit`` highest positive scores, ties to the lower key."""
        found = np.flatnonzero(scores > 0)
        if len(found) > limit:
            # Everything scoring at least the limit-th best, then an exact order of those.
            cut = np.partition(scores[found], len(found) - limit)[len(found) - limit]
            found = found[scores[found] >= cut]
        best = found[np.lexsort((found, -scores[found]))][:limit]
        return [self.keys[i] for i in best.tolist()]


def _matrix(parts: list[DocumentPart], n: int) -> tuple[np.ndarray | None, np.ndarray]:
    """The chunks' vectors as one matrix (zeros where none) and which rows have one."""
    dims = next((p.vectors.shape[1] for p in parts if p.vectors is not None), None)
    if dims is None:
        return None, np.zeros(n, dtype=bool)
    blocks: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    for p in parts:
        if p.vectors is not None and p.vectors.shape[1] == dims:
            blocks.append(p.vectors)
            masks.append(p.has_vector)
        else:  # not ready, or embedded by another model: no vectors
            blocks.append(np.zeros((len(p.chunks), dims), dtype=np.float32))
            masks.append(np.zeros(len(p.chunks), dtype=bool))
    return np.concatenate(blocks), np.concatenate(masks)


class SearchIndex:
    """Every tenant's ``TenantIndex`` in this process, reloaded when its generation moves."""

    def __init__(self) -> None:
        """Empty: a tenant is loaded on its first search."""
        self.tenants: dict[str, TenantIndex] = {}

    async def tenant(
        self, conn: AsyncConnection[Any], tenant: str, query: str
    ) -> tuple[TenantIndex, np.ndarray]:
        """The tenant's current index and the query's lexeme hashes (one query if unchanged)."""
        cur = conn.cursor(row_factory=tuple_row)
        await cur.execute(
            "SELECT (SELECT generation FROM document_generations WHERE tenant = %s),"
            " array(SELECT hashtextextended(w, 0)"
            " FROM unnest(tsvector_to_array(to_tsvector('english', %s))) w)",
            (tenant, query),
        )
        row = await cur.fetchone()
        assert row is not None
        generation = int(row[0] or 0)
        index = self.tenants.get(tenant)
        if index is None or index.generation != generation:
            index = await self._reload(conn, tenant, generation, index)
            self.tenants[tenant] = index
        return index, np.array(row[1], dtype=np.int64)

    async def _reload(
        self, conn: AsyncConnection[Any], tenant: str, generation: int, old: TenantIndex | None
    ) -> TenantIndex:
        # The generation was read first: a change while loading moves it again, and the next
        # search reloads, so nothing newer than the generation is ever taken for it.
        cur = conn.cursor(row_factory=tuple_row)
        await cur.execute("SELECT id, status = 'ready' FROM documents WHERE tenant = %s", (tenant,))
        listed = {str(r[0]): bool(r[1]) for r in await cur.fetchall()}
        parts = {d: p for d, p in (old.parts.items() if old else ()) if listed.get(d) == p.ready}
        todo = [d for d in listed if d not in parts]
        if todo:
            parts.update(await self._load(conn, todo, {d for d in todo if listed[d]}))
        return TenantIndex.assemble(generation, parts)

    async def _load(
        self, conn: AsyncConnection[Any], ids: list[str], ready: set[str]
    ) -> dict[str, DocumentPart]:
        """The parts of documents ``ids`` (vectors only for those in ``ready``)."""
        cur = conn.cursor(row_factory=tuple_row)
        # Postings come as one bytea per document (16-byte records: lexeme hash, chunk, count),
        # so 10,000 chunks' million postings are read without a Python object each.
        await cur.execute(
            "SELECT c.document_id::text, string_agg(int8send(hashtextextended(u.lexeme, 0))"
            " || int4send(c.chunk) || int4send(coalesce(array_length(u.positions, 1), 1)),"
            " ''::bytea) FROM document_chunks c, unnest(c.tsv) u"
            " WHERE c.document_id = ANY(%s::uuid[]) GROUP BY c.document_id",
            (ids,),
        )
        postings = {r[0]: np.frombuffer(r[1], dtype=_POSTING) for r in await cur.fetchall()}
        await cur.execute(
            "SELECT document_id::text, chunk,"
            " CASE WHEN document_id = ANY(%(ready)s::uuid[]) THEN embedding END"
            " FROM document_chunks WHERE document_id = ANY(%(ids)s::uuid[])"
            " ORDER BY document_id, chunk",
            {"ids": ids, "ready": sorted(ready)},
        )
        chunks: dict[str, list[tuple[Any, ...]]] = {d: [] for d in ids}
        for r in await cur.fetchall():
            chunks[r[0]].append(r)
        empty = np.zeros(0, dtype=_POSTING)
        return {d: _part(d in ready, rows, postings.get(d, empty)) for d, rows in chunks.items()}


def _part(ready: bool, rows: list[tuple[Any, ...]], postings: np.ndarray) -> DocumentPart:
    """A document's part from its chunk rows ``(id, chunk, embedding)`` and postings."""
    numbers = np.array([r[1] for r in rows], dtype=np.int32)
    blobs = [bytes(r[2]) if r[2] is not None else b"" for r in rows]
    dims = next((len(b) // 4 for b in blobs if b), 0)
    has = np.array([bool(b) and len(b) == dims * 4 for b in blobs], dtype=bool)
    vectors = None
    if ready and dims:
        vectors = np.zeros((len(rows), dims), dtype=np.float32)
        for i in np.flatnonzero(has).tolist():
            vectors[i] = np.frombuffer(blobs[i], dtype="<f4")
    chunk = postings["chunk"].astype(np.int32)
    local = np.minimum(np.searchsorted(numbers, chunk), max(len(numbers) - 1, 0))
    keep = numbers[local] == chunk if len(numbers) else np.zeros(len(chunk), dtype=bool)
    return DocumentPart(
        ready=ready,
        chunks=numbers,
        terms=postings["term"][keep].astype(np.int64),
        rows=local[keep].astype(np.int32),
        counts=postings["count"][keep].astype(np.float32),
        vectors=vectors,
        has_vector=has if vectors is not None else np.zeros(len(rows), dtype=bool),
    )
