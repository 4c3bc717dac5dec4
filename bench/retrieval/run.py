"""Documents retrieval: recall@5 of hybrid, full-text and semantic search; ingest and search time.

    .venv/bin/python -m bench.retrieval.run [--db postgresql://…/postgres] [--chunks 10000]

On a fresh database of the given server (embedded Postgres when ``--db`` is not given):

- recall@5 over ``questions.yaml`` (71 questions) and ``corpus/`` (22 documents: Markdown, HTML
  and PDF — the ``.pdf.txt`` files are written as PDFs, one page per form feed, by the same tiny
  writer the tests use). A question counts when one of the first five hits is a chunk of its
  document that contains its answer phrase. Each mode runs the code the documents-v2 server runs.
- upload-to-searchable of a 100-page PDF: read (pypdf) + stored (full-text searchable), then
  embedded (``ready``: searchable by meaning).
- search latency at ``--chunks`` chunks in one tenant (the corpus plus generated filler text),
  each search the whole ``corpus.search`` call (query embedding, SQL, vectors, excerpts) on a
  kept connection; p50 and p95 per mode. The filler there has random vectors (see ``fill``);
  recall@5 with filler around is measured on ``--recall-chunks`` chunks, all really embedded.
  The filler is word salad of the corpus's own words: the worst case for full text.

Writes ``bench/retrieval/results.json`` and ``bench/retrieval/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import yaml

from bench.host import load_average, machine
from core.db import EmbeddedPostgres, migrate
from core.embeddings import MiniLMEmbedder
from core.settings import DocumentSettings
from tests.pdfs import pdf
from tools.servers.documents import corpus
from tools.servers.documents.parse import Parsed, parse

HERE = Path(__file__).parent
MODES: tuple[corpus.Mode, ...] = ("hybrid", "full_text", "semantic")
LIMITS = DocumentSettings()


def documents() -> list[tuple[str, bytes]]:
    """The evaluation corpus as uploaded files: ``(name, bytes)``."""
    out = []
    for f in sorted((HERE / "corpus").iterdir()):
        if f.name.endswith(".pdf.txt"):
            out.append((f.name.removesuffix(".txt"), pdf(f.read_text().split("\f"))))
        else:
            out.append((f.name, f.read_bytes()))
    return out


@dataclass
class Tenant:
    """One tenant's documents on a kept connection, searched as the documents-v2 server does."""

    conn: psycopg.AsyncConnection[Any]
    name: str
    embedder: MiniLMEmbedder
    index: corpus.VectorIndex = field(default_factory=corpus.VectorIndex)

    async def add_file(self, name: str, data: bytes) -> dict[str, Any]:
        """Parse, store and embed one file, as an upload does."""
        parsed = parse(name, data, LIMITS)
        doc, _ = await corpus.add(
            self.conn, tenant=self.name, name=name, data=data, parsed=parsed,
            uploaded_by="bench", chunk_chars=LIMITS.chunk_chars,
        )  # fmt: skip
        await corpus.embed_document(self.conn, self.embedder, doc["id"], LIMITS.embed_batch)
        return doc

    async def search(self, text: str, mode: corpus.Mode) -> list[corpus.Hit]:
        """The top five hits for ``text`` in ``mode``."""
        return await corpus.search(
            self.conn, self.name, text, 5, embedder=self.embedder, index=self.index, mode=mode
        )


async def recall(tenant: Tenant, questions: list[dict[str, str]]) -> dict[str, Any]:
    """recall@5 per mode, with the questions each mode missed."""
    out: dict[str, Any] = {}
    for mode in MODES:
        found, missed = 0, []
        for q in questions:
            hits = await tenant.search(q["q"], mode)
            bodies = await _bodies(tenant.conn, hits)
            pairs = zip(hits, bodies, strict=True)
            if any(h.document == q["doc"] and q["answer"] in b for h, b in pairs):
                found += 1
            else:
                missed.append(q["q"])
        out[mode] = {"recall_at_5": round(found / len(questions), 3), "missed": missed}
    return out


async def _bodies(conn: psycopg.AsyncConnection[Any], hits: list[corpus.Hit]) -> list[str]:
    bodies = []
    for h in hits:
        cur = await conn.execute(
            "SELECT body FROM document_chunks WHERE document_id = %s AND chunk = %s",
            (uuid.UUID(h.document_id), h.chunk),
        )
        row = await cur.fetchone()
        bodies.append(" ".join(str(row[0]).split()) if row else "")
    return bodies


def hundred_pages() -> bytes:
    """A 100-page PDF: the corpus's text, a different passage and a page marker on each page."""
    texts = [t for _, t in _plain_texts()]
    pages = []
    for i in range(100):
        body = texts[i % len(texts)]
        pages.append(f"Long manual, page {i + 1}. Reference code PX-{i + 1:03d}.\n\n{body[:1500]}")
    return pdf(pages, compress=True)


def _plain_texts() -> list[tuple[str, str]]:
    out = []
    for f in sorted((HERE / "corpus").iterdir()):
        text = f.read_text().replace("\f", "\n\n")
        out.append((f.name, text))
    return out


async def upload_to_searchable(
    conn: psycopg.AsyncConnection[Any], embedder: MiniLMEmbedder
) -> dict[str, Any]:
    """Seconds from the bytes of a 100-page PDF to full-text searchable, then to ready."""
    data = hundred_pages()
    t0 = time.perf_counter()
    parsed = await asyncio.to_thread(parse, "manual.pdf", data, LIMITS)
    t_parsed = time.perf_counter()
    doc, _ = await corpus.add(
        conn, tenant="pdf100", name="manual.pdf", data=data, parsed=parsed, uploaded_by="bench",
        chunk_chars=LIMITS.chunk_chars,
    )  # fmt: skip
    t_stored = time.perf_counter()
    await corpus.embed_document(conn, embedder, doc["id"], LIMITS.embed_batch)
    t_ready = time.perf_counter()
    hits = await corpus.search(
        conn, "pdf100", "reference code PX-057", 5, embedder=embedder, index=corpus.VectorIndex()
    )
    return {
        "bytes": len(data),
        "pages": parsed.page_count,
        "chunks": doc["chunks"],
        "parse_s": round(t_parsed - t0, 2),
        "full_text_searchable_s": round(t_stored - t0, 2),
        "ready_s": round(t_ready - t0, 2),
        "page_57_found_at": next((i + 1 for i, h in enumerate(hits) if h.page == 57), None),
    }


def filler(rng: random.Random, words: list[str], n: int) -> list[str]:
    """``n`` chunk-sized texts of corpus words in random order (distractors, not answers)."""
    return [
        " ".join(rng.choice(words) for _ in range(rng.randint(60, 120))).capitalize() + "."
        for _ in range(n)
    ]


async def fill(
    conn: psycopg.AsyncConnection[Any], embedder: MiniLMEmbedder | None, tenant: str, chunks: int
) -> float:
    """Add filler documents (20 chunks each) until ``tenant`` has ``chunks``; embedding seconds.

    Without ``embedder`` the filler gets random unit vectors: a search costs the same (the
    similarity is computed for every chunk whatever its values) without embedding 10,000
    chunks on a shared machine, but then the recall figure at that size would mean nothing.
    """
    import numpy as np

    rng = random.Random(26)
    vectors = np.random.default_rng(26)
    words = sorted({w.strip(".,:;()").lower() for _, t in _plain_texts() for w in t.split()})
    cur = await conn.execute("SELECT count(*) FROM document_chunks WHERE tenant = %s", (tenant,))
    row = await cur.fetchone()
    have, n, spent = int(row[0]) if row else 0, 0, 0.0
    while have < chunks:
        texts = filler(rng, words, min(20, chunks - have))
        text = "\n\n".join(texts)
        doc, _ = await corpus.add(
            conn, tenant=tenant, name=f"filler-{n:05d}.txt", data=text.encode(),
            parsed=Parsed("text", [text], None), uploaded_by="bench", chunk_chars=2000,
        )  # fmt: skip
        t0 = time.perf_counter()
        if embedder is not None:
            await corpus.embed_document(conn, embedder, doc["id"], 64)
        else:
            v = vectors.standard_normal((doc["chunks"], 384)).astype("<f4")
            v /= np.linalg.norm(v, axis=1, keepdims=True)
            async with conn.cursor() as c:
                await c.executemany(
                    "UPDATE document_chunks SET embedding = %s"
                    " WHERE document_id = %s AND chunk = %s",
                    [(v[i].tobytes(), uuid.UUID(doc["id"]), i) for i in range(doc["chunks"])],
                )
            await conn.execute(
                "UPDATE documents SET status = 'ready', ready_at = now() WHERE id = %s",
                (uuid.UUID(doc["id"]),),
            )
        spent += time.perf_counter() - t0
        have += doc["chunks"]
        n += 1
    return spent


async def latency(tenant: Tenant, questions: list[dict[str, str]], rounds: int) -> dict[str, Any]:
    """p50/p95 of one search per mode (a warm vector cache, new questions' embeddings)."""
    await tenant.index.matrix(tenant.conn, tenant.name)  # the server keeps it warm
    out: dict[str, Any] = {}
    for mode in MODES:
        times = []
        for r in range(rounds):
            for q in questions:
                text = q["q"] if r == 0 else f"{q['q']} ({r})"  # no embedding cache hits
                t0 = time.perf_counter()
                await tenant.search(text, mode)
                times.append((time.perf_counter() - t0) * 1000)
        times.sort()
        out[mode] = {
            "n": len(times),
            "p50_ms": round(statistics.median(times), 1),
            "p95_ms": round(times[int(0.95 * (len(times) - 1))], 1),
        }
    return out


async def main_async(url: str, chunks: int, recall_chunks: int, rounds: int) -> dict[str, Any]:
    """Every figure on a fresh database of the server at ``url``."""
    name = f"keel_bench_retrieval_{uuid.uuid4().hex[:8]}"
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as admin:
        await admin.execute(f'CREATE DATABASE "{name}"')
    db = url.rsplit("/", 1)[0] + f"/{name}"
    questions = yaml.safe_load((HERE / "questions.yaml").read_text())
    embedder = MiniLMEmbedder()
    try:
        async with await psycopg.AsyncConnection.connect(db, autocommit=True) as conn:
            await migrate(conn)
            docs = documents()
            evaluated = Tenant(conn, "eval", embedder)
            noisy, scale = Tenant(conn, "noisy", embedder), Tenant(conn, "scale", embedder)
            for doc_name, data in docs:
                await evaluated.add_file(doc_name, data)
            quality = await recall(evaluated, questions)
            ingest = await upload_to_searchable(conn, embedder)
            for tenant in (noisy, scale):
                for doc_name, data in docs:
                    await tenant.add_file(doc_name, data)
            await fill(conn, embedder, "noisy", recall_chunks)
            with_filler = await recall(noisy, questions)
            await fill(conn, None, "scale", chunks)
            speed = await latency(scale, questions, rounds)
    finally:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as admin:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return {
        "machine": machine(),
        "load_average": load_average(),
        "documents": len(docs),
        "questions": len(questions),
        "recall": quality,
        "upload_to_searchable_100_pages": ingest,
        "search_at_chunks": {"chunks": chunks, **speed},
        "recall_with_filler": {"chunks": recall_chunks, **with_filler},
    }


def report(r: dict[str, Any]) -> str:
    """RESULTS.md."""
    q, sc, up = r["recall"], r["search_at_chunks"], r["upload_to_searchable_100_pages"]
    lines = [
        "# Documents retrieval (`python -m bench.retrieval.run`)",
        "",
        f"{r['questions']} questions over {r['documents']} documents (Markdown, HTML, PDF);"
        " recall@5 = a top-5 hit is a chunk of the right document containing the answer.",
        f"Machine: {r['machine']}; load average at the end: {r['load_average']}.",
        "",
        "| mode | recall@5 (22 documents) | recall@5 (with filler to"
        f" {r['recall_with_filler']['chunks']} chunks) | search p50 | search p95"
        f" (at {sc['chunks']} chunks) |",
        "|---|---|---|---|---|",
    ]
    for mode in MODES:
        lines.append(
            f"| {mode} | {q[mode]['recall_at_5']} | {r['recall_with_filler'][mode]['recall_at_5']}"
            f" | {sc[mode]['p50_ms']} ms | {sc[mode]['p95_ms']} ms |"
        )
    lines += [
        "",
        f"Upload to searchable, 100-page PDF ({up['bytes']} bytes, {up['chunks']} chunks):"
        f" read by pypdf {up['parse_s']} s; stored and full-text searchable"
        f" {up['full_text_searchable_s']} s;"
        f" embedded (ready) {up['ready_s']} s. The page-57 query found page 57 at rank"
        f" {up['page_57_found_at']}.",
        "",
        "Missed by hybrid: " + ("; ".join(q["hybrid"]["missed"]) or "none"),
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    """Run, print and write the results."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--db", default="", help="a Postgres server's maintenance database URL")
    ap.add_argument("--chunks", type=int, default=10_000)
    ap.add_argument("--recall-chunks", type=int, default=600, help="filler for recall (embedded)")
    ap.add_argument("--rounds", type=int, default=2, help="passes over the questions per mode")
    a = ap.parse_args()
    with ExitStack() as stack:
        url = a.db
        if not url:
            pg = EmbeddedPostgres(Path(stack.enter_context(tempfile.TemporaryDirectory())) / "pg")
            pg.start()
            stack.callback(pg.stop)
            url = pg.url
        result = asyncio.run(main_async(url, a.chunks, a.recall_chunks, a.rounds))
    (HERE / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    (HERE / "RESULTS.md").write_text(report(result))
    print(report(result))


if __name__ == "__main__":
    main()
