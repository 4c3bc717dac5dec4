"""The documents corpus (practice 16): files chunked into Postgres, searched by full text.

``keel ingest PATH...`` stores Markdown and text files per tenant, one row per paragraph-sized
chunk with a ``tsvector``; search ranks chunks with ``websearch_to_tsquery`` and returns each
hit's source and an excerpt. Search is full text only: there is no semantic search over the corpus.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

SUFFIXES = {".md", ".markdown", ".txt", ".rst"}
CHUNK_CHARS = 1200
SCHEMA = """
CREATE TABLE IF NOT EXISTS tool_documents (
    tenant text NOT NULL,
    source text NOT NULL,
    chunk int NOT NULL,
    sha256 text NOT NULL,
    body text NOT NULL,
    tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', body)) STORED,
    PRIMARY KEY (tenant, source, chunk)
);
CREATE INDEX IF NOT EXISTS tool_documents_tsv ON tool_documents USING gin (tsv);
"""


def ensure_schema(conn: psycopg.Connection[Any]) -> None:
    """Create the corpus table once (under an advisory lock)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(7302)")
        conn.execute(SCHEMA)


def chunks(text: str) -> list[str]:
    """Paragraph-aligned chunks of at most about ``CHUNK_CHARS`` characters."""
    out: list[str] = []
    cur = ""
    for para in (p.strip() for p in text.split("\n\n")):
        if not para:
            continue
        if cur and len(cur) + len(para) > CHUNK_CHARS:
            out.append(cur)
            cur = ""
        cur = f"{cur}\n\n{para}" if cur else para
        while len(cur) > CHUNK_CHARS:
            out.append(cur[:CHUNK_CHARS])
            cur = cur[CHUNK_CHARS:]
    if cur:
        out.append(cur)
    return out


def files(paths: Iterable[Path]) -> list[Path]:
    """The ingestible files under ``paths`` (directories are walked)."""
    found: list[Path] = []
    for p in paths:
        if p.is_dir():
            found += sorted(f for f in p.rglob("*") if f.suffix.lower() in SUFFIXES)
        elif p.suffix.lower() in SUFFIXES:
            found.append(p)
    return found


def ingest(url: str, tenant: str, paths: Iterable[Path]) -> dict[str, int]:
    """Store (or replace) each file's chunks for ``tenant``; unchanged files are skipped."""
    stats = {"files": 0, "chunks": 0, "unchanged": 0}
    with psycopg.connect(url, autocommit=True) as conn:
        ensure_schema(conn)
        for f in files(paths):
            text = f.read_text(encoding="utf-8", errors="replace")
            digest = hashlib.sha256(text.encode()).hexdigest()
            source = str(f.resolve())
            row = conn.execute(
                "SELECT sha256 FROM tool_documents WHERE tenant = %s AND source = %s LIMIT 1",
                (tenant, source),
            ).fetchone()
            if row and row[0] == digest:
                stats["unchanged"] += 1
                continue
            parts = chunks(text)
            with conn.transaction():
                conn.execute(
                    "DELETE FROM tool_documents WHERE tenant = %s AND source = %s",
                    (tenant, source),
                )
                for i, body in enumerate(parts):
                    conn.execute(
                        "INSERT INTO tool_documents (tenant, source, chunk, sha256, body)"
                        " VALUES (%s, %s, %s, %s, %s)",
                        (tenant, source, i, digest, body),
                    )
            stats["files"] += 1
            stats["chunks"] += len(parts)
    return stats


async def search(url: str, tenant: str, query: str, limit: int) -> list[dict[str, Any]]:
    """The best chunks for ``query`` in ``tenant``'s corpus: document name, excerpt, score."""
    async with await psycopg.AsyncConnection.connect(
        url, autocommit=True, row_factory=dict_row
    ) as conn:
        cur = await conn.execute("SELECT to_regclass('tool_documents') IS NOT NULL AS present")
        present = await cur.fetchone()
        if not present or not present["present"]:
            return []
        cur = await conn.execute(
            # Any of the query's words (ranked by how many and how close), not all of them: a
            # question's filler words ("how many … per year") would otherwise match nothing.
            "WITH q AS (SELECT coalesce(nullif(replace(plainto_tsquery('english', %s)::text,"
            " ' & ', ' | '), '')::tsquery, plainto_tsquery('english', '')) AS q)"
            " SELECT source, chunk, ts_rank(tsv, q.q) AS rank,"
            # Up to three passages around the matches, without highlight markup.
            " ts_headline('english', body, q.q, 'MaxFragments=3, MaxWords=30, MinWords=12,"
            ' StartSel="", StopSel=""\') AS excerpt'
            " FROM tool_documents, q WHERE tenant = %s AND tsv @@ q.q"
            " ORDER BY rank DESC, source, chunk LIMIT %s",
            (query, tenant, limit),
        )
        rows = await cur.fetchall()
    return [
        {
            "source": Path(r["source"]).name,  # the document's name, never a host path
            "chunk": r["chunk"],
            "score": round(float(r["rank"]), 4),
            "excerpt": r["excerpt"],
        }
        for r in rows
    ]
