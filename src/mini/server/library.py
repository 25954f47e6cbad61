"""The indexed documents of the global collection: list them page by page, delete one with all its chunks.

    GET    /v1/documents?limit=100&offset=0  -> {documents: [{source, chunks, fingerprint, indexed_at,
                                                 file_type}], total, next_offset}   (sorted by source)
    DELETE /v1/documents/{source}           -> 200 {deleted: [{source, chunks}], documents, chunks}
                                               404 {type: "not_found", message} for an unknown source

`source` is the document's source exactly as listed (a file's absolute path, a URL, `upload:global/a.md`),
percent-encoded where needed (`#` as %23, `?` as %3F); a JSONL file is one document and all of its rows go.
Adding documents is `POST /v1/documents` (`mini.server.documents`).

Listing reads every row's metadata (`mini.documents.list_documents`), so one listing serves a client's walk
through the pages: it is kept while the store's chunk count is unchanged, for at most `_LISTING_TTL_S`
seconds, and dropped by a delete. A file re-ingested meanwhile with the same number of chunks may show its
old fingerprint until then.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel

from mini._tasks import to_the_end
from mini.documents import DocumentInfo, delete_documents, list_documents
from mini.server.deps import get_rag, require_api_key
from mini.server.schemas import ERRORS, ErrorBody

if TYPE_CHECKING:
    from mini.stores.base import VectorStore

router = APIRouter(
    prefix="/v1", dependencies=[Depends(require_api_key)], responses=ERRORS, tags=["documents"]
)

DEFAULT_LIMIT = 100
MAX_LIMIT = 1_000
_LISTING_TTL_S = 10.0


class DocumentOut(BaseModel):
    source: str
    chunks: int
    fingerprint: str | None
    indexed_at: str | None  # ISO 8601; null: not recorded (ingestion does not record it)
    file_type: str | None


class DocumentsPage(BaseModel):
    documents: list[DocumentOut]
    total: int
    next_offset: int | None  # null on the last page


class DeletedOut(BaseModel):
    source: str
    chunks: int


class DeleteOut(BaseModel):
    deleted: list[DeletedOut]
    documents: int
    chunks: int


@dataclass(frozen=True, slots=True)
class _Listing:
    at: float
    store: VectorStore
    chunks: int
    documents: list[DocumentInfo]


async def _listing(request: Request) -> list[DocumentInfo]:
    """The store's documents, from the cached listing when it still holds (see the module docstring)."""
    store = get_rag(request).vector_store
    chunks = await store.count_async()  # one cheap count, not a scan
    cached: _Listing | None = getattr(request.app.state, "library_listing", None)
    now = time.monotonic()
    if (
        cached is not None
        and cached.store is store
        and cached.chunks == chunks
        and now - cached.at < _LISTING_TTL_S
    ):
        return cached.documents
    documents = await list_documents(store)
    request.app.state.library_listing = _Listing(now, store, chunks, documents)
    return documents


@router.get(
    "/documents",
    response_model=DocumentsPage,
    summary="List the indexed documents, sorted by source, a page at a time",
)
async def list_indexed(
    request: Request,
    limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description="Documents per page."),
    offset: int = Query(0, ge=0, description="Documents to skip: the previous page's next_offset."),
) -> dict[str, Any]:
    documents = await _listing(request)
    page = documents[offset : offset + limit]
    end = offset + len(page)
    return {
        "documents": [d.to_dict() for d in page],
        "total": len(documents),
        "next_offset": end if end < len(documents) else None,
    }


@router.delete(
    "/documents/{source:path}",
    response_model=DeleteOut,
    summary="Delete a document and all its chunks (every row of a JSONL file)",
    responses={404: {"model": ErrorBody, "description": "No indexed document has this source"}},
)
async def delete_indexed(source: str, request: Request) -> dict[str, Any]:
    # Paths are taken as listed: the server's working directory means nothing to a client.
    store = get_rag(request).vector_store

    async def delete() -> dict[str, Any]:
        report = await delete_documents(store, [source], resolve_paths=False)
        request.app.state.library_listing = None
        return report.to_dict()

    # A delete is finished even if its client leaves (half a document, a stale listing otherwise).
    return await to_the_end(delete())
