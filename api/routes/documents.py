"""The tenant's documents over HTTP: upload, list, read, delete (``/v1/documents``).

Documents belong to the tenant: every user of it with ``read:documents`` sees them, and
``write:documents`` uploads and deletes. An upload is read whole (within
``documents.max_file_bytes``) and parsed before anything is stored, so a refused file leaves
nothing behind; the stored one answers 202 with status ``indexing`` while its chunks are
embedded in the background (``ready`` then; poll ``GET /v1/documents/{id}``). The same bytes
again answer 200 with the document already stored (``duplicate: true``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, File, Request, Response, UploadFile
from pydantic import BaseModel

from api.deps import CurrentIdentity, Svc
from core.embeddings import Embedder, embedder_for
from core.errors import Forbidden, NotFound
from core.identity import Identity
from tools.servers.documents import corpus
from tools.servers.documents.indexer import Indexer
from tools.servers.documents.parse import MEDIA_TYPES, TooLarge, check_filename, parse

READ, WRITE = "read:documents", "write:documents"


@asynccontextmanager
async def _indexing(app: FastAPI) -> AsyncIterator[None]:
    svc = app.state.services
    session = svc.memory.session if svc.memory is not None else None

    def embedder() -> Embedder:
        if session is not None:
            shared: Embedder = session.embedder
            return shared
        return embedder_for(svc.settings.memory.session)

    indexer = Indexer(svc.pool, embedder, svc.settings.documents.embed_batch)
    await indexer.start()
    app.state.documents_indexer = indexer
    try:
        yield
    finally:
        await indexer.aclose()


router = APIRouter(prefix="/v1/documents", tags=["documents"], lifespan=_indexing)


class DocumentOut(BaseModel):
    """One document: what it is, who added it when, and how far indexing is."""

    id: str
    name: str
    kind: str
    size: int
    sha256: str
    pages: int | None
    chunks: int
    status: str
    error: str | None
    uploaded_by: str
    uploaded_at: str
    ready_at: str | None
    duplicate: bool = False


class DocumentsOut(BaseModel):
    """The tenant's documents and how much of its quota they use."""

    documents: list[DocumentOut]
    usage: dict[str, int]


def _need(identity: Identity, scope: str) -> None:
    if not identity.has_scope(scope):
        raise Forbidden(f"documents need the scope {scope}")


@router.post("", status_code=202, response_model=DocumentOut)
async def upload(
    svc: Svc,
    identity: CurrentIdentity,
    request: Request,
    response: Response,
    file: Annotated[UploadFile, File(description="Markdown, text, HTML or PDF")],
) -> DocumentOut:
    """Add a file to the tenant's documents; 202 while it is indexed, 200 if already there."""
    _need(identity, WRITE)
    limits = svc.settings.documents
    name = check_filename(file.filename or "")
    data = await file.read(limits.max_file_bytes + 1)
    if len(data) > limits.max_file_bytes:
        raise TooLarge(f"the file is over the limit of {limits.max_file_bytes} bytes")
    parsed = await asyncio.to_thread(parse, name, data, limits)
    tier = getattr(svc.settings.quotas, identity.tier, svc.settings.quotas.free)
    async with svc.pool.connection() as conn:
        doc, created = await corpus.add(
            conn,
            tenant=identity.tenant,
            name=name,
            data=data,
            parsed=parsed,
            uploaded_by=identity.user_id,
            chunk_chars=limits.chunk_chars,
            quota=corpus.Quota(tier.max_documents, tier.max_document_bytes),
        )
    if created:
        request.app.state.documents_indexer.submit(doc["id"])
    else:
        response.status_code = 200
    response.headers["Location"] = f"/v1/documents/{doc['id']}"
    return DocumentOut(**doc, duplicate=not created)


@router.get("", response_model=DocumentsOut)
async def list_documents(svc: Svc, identity: CurrentIdentity) -> DocumentsOut:
    """The tenant's documents, newest first, with the quota in use."""
    _need(identity, READ)
    tier = getattr(svc.settings.quotas, identity.tier, svc.settings.quotas.free)
    async with svc.pool.connection() as conn:
        docs = await corpus.listing(conn, identity.tenant)
        count, used = await corpus.usage(conn, identity.tenant)
    return DocumentsOut(
        documents=[DocumentOut(**d) for d in docs],
        usage={
            "documents": count,
            "bytes": used,
            "max_documents": tier.max_documents,
            "max_bytes": tier.max_document_bytes,
        },
    )


async def _document(svc: Svc, identity: Identity, doc_id: str, **kw: Any) -> dict[str, Any]:
    _need(identity, READ)
    async with svc.pool.connection() as conn:
        doc = await corpus.get(conn, identity.tenant, doc_id, **kw)
    if doc is None:
        raise NotFound("no such document")
    return doc


@router.get("/{doc_id}", response_model=DocumentOut)
async def get_document(svc: Svc, identity: CurrentIdentity, doc_id: str) -> DocumentOut:
    """One of the tenant's documents (404 for another tenant's)."""
    return DocumentOut(**await _document(svc, identity, doc_id))


@router.get("/{doc_id}/content")
async def document_content(svc: Svc, identity: CurrentIdentity, doc_id: str) -> Response:
    """The file as uploaded (a PDF opens at a page with ``#page=N``)."""
    doc = await _document(svc, identity, doc_id, content=True)
    return Response(
        bytes(doc["content"]),
        media_type=MEDIA_TYPES[doc["kind"]],
        headers={
            "Content-Disposition": f"inline; filename*=UTF-8''{_quote(doc['name'])}",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "sandbox",
        },
    )


def _quote(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")


@router.delete("/{doc_id}", status_code=204)
async def delete_document(svc: Svc, identity: CurrentIdentity, doc_id: str) -> Response:
    """Delete the document, its chunks and their vectors (404 if the tenant has no such one)."""
    _need(identity, WRITE)
    async with svc.pool.connection() as conn:
        if not await corpus.delete(conn, identity.tenant, doc_id):
            raise NotFound("no such document")
    return Response(status_code=204)
