"""The `VectorStoreBackend` protocol (async-only) and the `VectorStore` facade with sync twins."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

from mini import _portal, _registry
from mini._checks import at_least
from mini._deprecation import InitSignature, legacy_keywords, warn_renamed
from mini._tasks import to_the_end
from mini.errors import (
    ConfigurationError,
    DimensionMismatchError,
    InvalidInputError,
    UnsupportedOperationError,
)
from mini.stores.filters import Filter, parse_filter
from mini.types import RetrievalResult


@dataclass(frozen=True, slots=True)
class Record:
    """One row as backends store it. `metadata["source"]` (if any) is also kept as a plain column."""

    id: str
    vector: Any  # 1-D float sequence or numpy array
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def source(self) -> str:
        return str(self.metadata.get("source", ""))


@runtime_checkable
class VectorStoreBackend(Protocol):
    """What a store backend implements. `__init__(uri, *, collection_name, dimension, token)` does no I/O.

    Scores: higher is better; for dense search the cosine similarity. Filters arrive parsed (`mini.stores.filters`).
    A collection is created on first write with the dimension of its vectors; a mismatch raises
    `DimensionMismatchError`. `supports_hybrid`: `keyword_search` is implemented (the hybrid retriever's
    keyword leg); backends without it raise `UnsupportedOperationError` from it.

    Optional, used when present: `optimize()` (compaction after ingestion), `exclusive()` (a writer-lock
    section, see `mini.stores._common.WriterLock`; ingestion commits in one) and `delete_duplicates(ids)`
    (see `delete_duplicates` below). Concurrent upserts of the same ids must store each id once (contract:
    `check_concurrent_writes_of_the_same_ids_store_each_once`).
    """

    supports_hybrid: ClassVar[bool]

    @property
    def dimension(self) -> int | None: ...

    async def insert(self, records: Sequence[Record]) -> None: ...

    async def upsert(self, records: Sequence[Record]) -> None: ...

    async def search(
        self, vector: Sequence[float], *, top_k: int, filter: Filter | None = None
    ) -> list[RetrievalResult]: ...

    async def search_many(
        self, vectors: Sequence[Sequence[float]], *, top_k: int, filter: Filter | None = None
    ) -> list[list[RetrievalResult]]: ...

    async def keyword_search(
        self, text: str, *, top_k: int, filter: Filter | None = None
    ) -> list[RetrievalResult]:
        """Rows ranked by the engine's full-text relevance (BM25) of their `text` to `text`, best first; rows
        matching no query term are not returned. Scores are the engine's and not comparable with cosine
        scores (the hybrid retriever fuses by rank). Backends tokenise, stem and drop stop words as their
        full-text index does."""
        ...

    async def delete(self, *, ids: Sequence[str] | None = None, filter: Filter | None = None) -> int: ...

    async def replace(self, records: Sequence[Record], *, scope: Filter) -> int:
        """Make the rows matching `scope` be exactly `records` (which should match it): upsert them and delete
        the other rows in scope, in one atomic commit where the backend can. Returns the rows deleted."""
        ...

    async def get(
        self,
        *,
        ids: Sequence[str] | None = None,
        filter: Filter | None = None,
        include_vectors: bool = False,
        limit: int | None = None,
    ) -> list[Record]:
        """Rows by ids and/or filter (both: rows matching both), in no particular order; vectors only if asked
        (then as float32 arrays, else None). Neither given: every row, up to `limit`."""
        ...

    async def count(self, filter: Filter | None = None) -> int: ...

    async def existing_ids(self, ids: Sequence[str]) -> set[str]: ...

    async def drop(self) -> None: ...

    async def aclose(self) -> None: ...


def exclusive(backend: VectorStoreBackend) -> AbstractAsyncContextManager[object]:
    """The backend's writer-lock section, if it has one (`BackendSkeleton.exclusive`): reads and writes
    inside it see no other writer commit in between. A no-op for backends without one (plug-ins)."""
    section = getattr(backend, "exclusive", None)
    return section() if callable(section) else nullcontext()


async def delete_duplicates(backend: VectorStoreBackend, ids: Sequence[str]) -> int:
    """Delete all but one stored copy of each of `ids`; returns the rows deleted.

    Older versions could store an id twice (two ingestions at once). A backend may do this itself
    (`delete_duplicates`: LanceDB, in one commit); otherwise, in one writer-lock section, every copy is
    deleted and one written back (two writes: a reader in between misses those rows for a moment)."""
    own = getattr(backend, "delete_duplicates", None)
    if callable(own):
        return int(await own(ids))
    # Run to its end even if our caller is cancelled: stopping between the delete and the write-back would
    # lose those rows.
    return await to_the_end(_rewrite_one_copy(backend, ids))


async def _rewrite_one_copy(backend: VectorStoreBackend, ids: Sequence[str]) -> int:
    async with exclusive(backend):
        rows = await backend.get(ids=list(dict.fromkeys(ids)), include_vectors=True)
        kept: dict[str, Record] = {}
        copies: dict[str, int] = {}
        for row in rows:
            kept.setdefault(row.id, row)
            copies[row.id] = copies.get(row.id, 0) + 1
        # Only ids whose copy is in hand are deleted: nothing goes that is not written back.
        repeated = [i for i, n in copies.items() if n > 1 and kept[i].vector is not None]
        if not repeated:
            return 0
        deleted = await backend.delete(ids=repeated)
        await backend.upsert([kept[i] for i in repeated])
        return deleted - len(repeated)


def content_id(text: str, source: str = "") -> str:
    """A stable id for a piece of text from a source: same input, same id (idempotent upserts)."""
    digest = hashlib.sha256(f"{source}\x00{text}".encode()).hexdigest()
    return digest[:32]


def create_backend(
    uri: str, *, collection_name: str, dimension: int | None, token: str | None
) -> VectorStoreBackend:
    entry = _registry.store_entry(uri)
    cls = _registry.load(entry)
    backend = cls(uri, collection_name=collection_name, dimension=dimension, token=token)
    if not isinstance(backend, VectorStoreBackend):  # a plug-in (see mini._registry) missing part of it
        raise ConfigurationError(f"{entry.label or entry.target} does not implement VectorStoreBackend")
    return backend


async def _search_013(store: VectorStore, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
    """`search(..., filter_expr=..., output_fields=...)`, mini-rag 0.1.3's spelling: its dicts back."""
    from mini.store import search_dicts

    warn_renamed(
        "VectorStore.search(filter_expr=...)", "VectorStore.search(query_embedding, top_k, filter={...})"
    )
    return await search_dicts(store, *args, **kwargs)


# Constructor keywords only mini-rag 0.1.3's store had: `VectorStore(...)` given any of them is `mini.store`'s.
_STORE_013_KEYWORDS = frozenset({"metric_type", "index_type", "nlist", "config", "enable_hybrid_search"})


class VectorStore:
    """Stores chunk vectors with their text and metadata, and searches them.

    `uri` picks the backend (DESIGN.md section 6): a directory (default `./mini_data`) is an embedded LanceDB.
    Construction does no I/O; the collection opens on first use.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> VectorStore:
        if cls is VectorStore and (len(args) > 1 or not _STORE_013_KEYWORDS.isdisjoint(kwargs)):
            from mini.store import VectorStore as Store013  # 0.1.3's signature (it warns, naming ours)

            return super().__new__(Store013)
        return super().__new__(cls)

    __signature__ = InitSignature()  # help() and IDEs show __init__'s parameters, not __new__'s

    def __init__(
        self,
        uri: str | None = None,
        *,
        collection_name: str | None = None,
        dimension: int | None = None,
        token: str | None = None,
        backend: VectorStoreBackend | None = None,
    ) -> None:
        if backend is None:
            if uri is None or collection_name is None:
                from mini.config import load_settings

                settings = load_settings()
                uri = uri or settings.uri
                collection_name = collection_name or settings.collection
            if token is None and _registry.store_kind(uri) != "lancedb":
                from mini.config import load_settings

                secret = load_settings().store_token  # MINI_STORE_TOKEN, for Milvus/Zilliz/Qdrant
                token = secret.get_secret_value() if secret is not None else None
            backend = create_backend(uri, collection_name=collection_name, dimension=dimension, token=token)
        self.uri = uri
        self.collection_name = collection_name
        self.backend = backend

    def __repr__(self) -> str:
        return f"VectorStore(uri={self.uri!r}, collection_name={self.collection_name!r})"

    @property
    def dimension(self) -> int | None:
        return self.backend.dimension

    @property
    def supports_hybrid(self) -> bool:
        return bool(self.backend.supports_hybrid)

    def _records(
        self,
        embeddings: Any,
        texts: Sequence[str],
        metadata: Sequence[Mapping[str, Any]] | None,
        ids: Sequence[str] | None,
    ) -> list[Record]:
        if isinstance(texts, str):
            raise InvalidInputError("texts must be a list of strings, not a single string")
        n = len(texts)
        if len(embeddings) != n:
            raise InvalidInputError(f"got {len(embeddings)} embeddings for {n} texts")
        if metadata is not None and len(metadata) != n:
            raise InvalidInputError(f"got {len(metadata)} metadata entries for {n} texts")
        if ids is not None and len(ids) != n:
            raise InvalidInputError(f"got {len(ids)} ids for {n} texts")
        metas = [dict(m) for m in metadata] if metadata is not None else [{} for _ in range(n)]
        if ids is None:
            ids = [
                content_id(text, str(meta.get("source", ""))) for text, meta in zip(texts, metas, strict=True)
            ]
        if len(set(ids)) != n:
            raise InvalidInputError("ids within one call must be unique")
        # Rows must agree with each other; whether they fit the collection is the backend's call (it knows
        # the stored table's dimension, which may differ from a configured one).
        expected: int | None = None
        records = []
        for i, (id_, vector, text, meta) in enumerate(zip(ids, embeddings, texts, metas, strict=True)):
            if not isinstance(id_, str) or not id_:
                raise InvalidInputError(f"id {i} must be a non-empty string")
            expected = expected or len(vector)
            if len(vector) != expected:
                raise DimensionMismatchError(expected, len(vector), f"row {i}")
            records.append(Record(id_, vector, text, meta))
        return records

    async def insert_async(
        self,
        embeddings: Any,
        texts: Sequence[str],
        metadata: Sequence[Mapping[str, Any]] | None = None,
        ids: Sequence[str] | None = None,
    ) -> list[str]:
        """Add new rows; returns their ids. Raises `DuplicateIdError` if an id exists (use `upsert`)."""
        records = self._records(embeddings, texts, metadata, ids)
        if records:
            await self.backend.insert(records)
        return [r.id for r in records]

    async def upsert_async(
        self,
        embeddings: Any,
        texts: Sequence[str],
        metadata: Sequence[Mapping[str, Any]] | None = None,
        ids: Sequence[str] | None = None,
    ) -> list[str]:
        """Insert or replace rows by id; without ids, ids derive from (source, text) so re-runs are idempotent."""
        records = self._records(embeddings, texts, metadata, ids)
        if records:
            await self.backend.upsert(records)
        return [r.id for r in records]

    @legacy_keywords(frozenset({"filter_expr", "output_fields"}), _search_013)
    async def search_async(
        self, query_embedding: Sequence[float], top_k: int = 5, filter: Mapping[str, Any] | None = None
    ) -> list[RetrievalResult]:
        """The `top_k` nearest rows, best first, optionally restricted by a metadata filter."""
        at_least(1, top_k=top_k)
        return await self.backend.search(query_embedding, top_k=top_k, filter=parse_filter(filter))

    async def search_many_async(
        self,
        query_embeddings: Sequence[Sequence[float]],
        top_k: int = 5,
        filter: Mapping[str, Any] | None = None,
    ) -> list[list[RetrievalResult]]:
        """One ranking per query vector, in one backend call (the embedded store shares one scan among them)."""
        at_least(1, top_k=top_k)
        return await self.backend.search_many(query_embeddings, top_k=top_k, filter=parse_filter(filter))

    async def keyword_search_async(
        self, text: str, top_k: int = 5, filter: Mapping[str, Any] | None = None
    ) -> list[RetrievalResult]:
        """The `top_k` rows whose text best matches `text` by full-text relevance (BM25), best first.

        Raises `UnsupportedOperationError` on a backend without keyword search (see `supports_hybrid`)."""
        at_least(1, top_k=top_k)
        if not isinstance(text, str):
            raise InvalidInputError(f"the query text must be a string, not {type(text).__name__}")
        if not text.strip():
            return []
        if not self.backend.supports_hybrid:
            raise UnsupportedOperationError(f"{type(self.backend).__name__} has no keyword search")
        return await self.backend.keyword_search(text, top_k=top_k, filter=parse_filter(filter))

    async def delete_async(
        self, ids: Sequence[str] | None = None, filter: Mapping[str, Any] | None = None
    ) -> int:
        """Delete rows by ids and/or filter (both given: rows matching either); returns how many were deleted."""
        parsed = parse_filter(filter)
        if ids is None and parsed is None:
            raise InvalidInputError("delete needs ids or a filter (use drop() to remove everything)")
        if isinstance(ids, str):
            raise InvalidInputError("ids must be a list of strings, not a single string")
        return await self.backend.delete(ids=list(ids) if ids is not None else None, filter=parsed)

    async def count_async(self, filter: Mapping[str, Any] | None = None) -> int:
        return await self.backend.count(parse_filter(filter))

    async def get_async(
        self,
        ids: Sequence[str] | None = None,
        filter: Mapping[str, Any] | None = None,
        *,
        include_vectors: bool = False,
        limit: int | None = None,
    ) -> list[Record]:
        """Rows by ids and/or a metadata filter (both: rows matching both), without search; no order."""
        if isinstance(ids, str):
            raise InvalidInputError("ids must be a list of strings, not a single string")
        at_least(1, limit=limit)
        return await self.backend.get(
            ids=list(ids) if ids is not None else None,
            filter=parse_filter(filter),
            include_vectors=include_vectors,
            limit=limit,
        )

    async def replace_async(
        self,
        scope: Mapping[str, Any],
        embeddings: Any,
        texts: Sequence[str],
        metadata: Sequence[Mapping[str, Any]] | None = None,
        ids: Sequence[str] | None = None,
    ) -> int:
        """Make the rows matching `scope` (e.g. ``{"source": "a.md"}``) exactly these: upsert them, delete the
        rest of the scope. On the embedded store this is one atomic commit, so searches never see a document
        half old and half new. Returns the number of rows deleted."""
        parsed = parse_filter(scope)
        if parsed is None:
            raise InvalidInputError("replace needs a non-empty scope filter (use drop() to start over)")
        records = self._records(embeddings, texts, metadata, ids)
        if not records:
            return await self.backend.delete(filter=parsed)
        return await self.backend.replace(records, scope=parsed)

    async def drop_async(self) -> None:
        """Delete the whole collection."""
        await self.backend.drop()

    async def aclose(self) -> None:
        await self.backend.aclose()

    # Sync twins: same signatures, run on the portal loop.
    insert = _portal.sync_twin(insert_async)
    upsert = _portal.sync_twin(upsert_async)
    search = _portal.sync_twin(search_async)
    search_many = _portal.sync_twin(search_many_async)
    keyword_search = _portal.sync_twin(keyword_search_async)
    delete = _portal.sync_twin(delete_async)
    count = _portal.sync_twin(count_async)
    get = _portal.sync_twin(get_async)
    replace = _portal.sync_twin(replace_async)
    drop = _portal.sync_twin(drop_async)
    close = _portal.sync_twin(aclose)
