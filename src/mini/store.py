"""mini-rag 0.1.3's `VectorStore` and `MilvusConfig`, as a subclass of `mini.VectorStore` (so it goes anywhere the
new one does, e.g. `AgenticRAG`), and the translation of 0.1.3's `filter_expr` strings.

`filter_expr` on a Milvus store (a `.db` path or an http(s) URL) is a raw Milvus expression, passed through as
written: trusted input only, never built from user text (see `mini.stores.milvus.expr.RawExpression`). On other
stores only the forms 0.1.3 documents are understood, and translated to the structured filter:
``metadata["key"] == value`` (value a quoted string, a number, true or false), several joined by ``and``.
"""

from __future__ import annotations

import ast
import os
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mini import _portal
from mini._deprecation import warn_renamed
from mini.errors import ConfigurationError, InvalidInputError, UnsupportedFilterError
from mini.stores.base import VectorStore as _VectorStore
from mini.stores.base import VectorStoreBackend
from mini.stores.milvus.expr import RawExpression
from mini.types import RetrievalResult

__all__ = ["MilvusConfig", "VectorStore", "search_dicts", "translate_filter_expr"]

METRIC_TYPES = ("IP", "COSINE", "L2")
DEFAULT_OUTPUT_FIELDS = ("text", "metadata")

SUPPORTED_FILTER_FORMS = (
    'metadata["key"] == value (value: a quoted string, a number, true or false), several joined by "and"'
)

# One 0.1.3 condition: metadata["key"] == value, the key quoted either way, the value a literal.
_CONDITION = re.compile(
    r"""\s*metadata\s*\[\s*(?P<key>"[^"\\]*"|'[^'\\]*')\s*\]\s*==\s*
    (?P<value>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|True|False)\s*""",
    re.VERBOSE,
)
_AND = re.compile(r"(?:and|AND)\b")


def _unsupported(expr: str) -> UnsupportedFilterError:
    return UnsupportedFilterError(
        f"filter_expr {expr!r} cannot be used with this store: the form {SUPPORTED_FILTER_FORMS} is translated. "
        "Other Milvus expressions need a Milvus store (a .db path or an http(s) URL); "
        'or pass a filter dict, e.g. filter={"source": "a.pdf", "year": {"$gte": 2020}}'
    )


def _value(literal: str) -> str | int | float | bool:
    if literal in ("true", "True", "false", "False"):
        return literal in ("true", "True")
    value = ast.literal_eval(literal)  # a string or number literal: the pattern admits nothing else
    assert isinstance(value, (str, int, float))
    return value


def translate_filter_expr(expr: str) -> dict[str, Any]:
    """A 0.1.3 `filter_expr` as the structured filter dict; `UnsupportedFilterError` for any other form. Pure.

    ``'metadata["year"] == 2024 and metadata["kind"] == "paper"'`` -> ``{"$and": [{"year": 2024},
    {"kind": "paper"}]}``."""
    if not isinstance(expr, str) or not expr.strip():
        raise InvalidInputError("filter_expr must be a non-empty string")
    conditions: list[dict[str, Any]] = []
    position = 0
    while True:
        match = _CONDITION.match(expr, position)
        if match is None:
            raise _unsupported(expr)
        conditions.append({ast.literal_eval(match["key"]): _value(match["value"])})
        position = match.end()
        if position == len(expr):
            break
        joined = _AND.match(expr, position)
        if joined is None:
            raise _unsupported(expr)
        position = joined.end()
    return conditions[0] if len(conditions) == 1 else {"$and": conditions}


def _is_milvus(backend: VectorStoreBackend) -> bool:
    from mini.stores.milvus.backend import MilvusBackend  # pymilvus itself loads on the first call only

    return isinstance(backend, MilvusBackend)


class MilvusConfig(BaseModel):
    """0.1.3's store settings; `uri` and `token` default to MILVUS_URI and MILVUS_TOKEN.

    `dimension` None: taken from the first write. `metric_type`, `index_type` and `nlist` are accepted for
    0.1.3 code; the backends always rank by cosine similarity (IP on 0.1.3's normalised OpenAI vectors ranks
    the same) and choose their own index."""

    model_config = ConfigDict(extra="forbid")

    uri: str | None = Field(default_factory=lambda: os.getenv("MILVUS_URI") or None)
    token: str | None = Field(default_factory=lambda: os.getenv("MILVUS_TOKEN") or None)
    collection_name: str = "documents"
    dimension: int | None = None
    metric_type: str = "IP"
    index_type: str = "IVF_FLAT"
    nlist: int = 128


def _as_dict(hit: RetrievalResult, output_fields: Sequence[str]) -> dict[str, Any]:
    # 0.1.3's result shape. `distance` repeats the score: with its IP metric on normalised vectors, 0.1.3's
    # distance was the cosine similarity too.
    row: dict[str, Any] = {"id": hit.id, "score": hit.score, "distance": hit.score}
    values = {"id": hit.id, "text": hit.text, "metadata": hit.metadata}
    for name in output_fields:
        row[name] = values.get(name)
    return row


def _where(store: _VectorStore, filter_expr: str | None, filter: Mapping[str, Any] | None) -> Any:
    """The backend's filter for a 0.1.3 `filter_expr` or a new filter dict (a parsed filter or raw text)."""
    if filter_expr is None:
        return filter
    if filter is not None:
        raise InvalidInputError("pass filter_expr or filter, not both")
    if _is_milvus(store.backend):
        return RawExpression(filter_expr)
    return translate_filter_expr(filter_expr)


async def search_dicts(
    store: _VectorStore,
    query_embedding: Sequence[float],
    top_k: int = 5,
    filter_expr: str | None = None,
    output_fields: Sequence[str] | None = None,
    *,
    filter: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """0.1.3's search on any store: the `top_k` nearest rows as its dicts, `filter_expr` as in the module
    docstring. Also what `mini.VectorStore.search(filter_expr=..., output_fields=...)` runs."""
    ranking = await _nearest(store, query_embedding, top_k, _where(store, filter_expr, filter))
    fields = DEFAULT_OUTPUT_FIELDS if output_fields is None else output_fields
    return [_as_dict(hit, fields) for hit in ranking]


async def _nearest(
    store: _VectorStore, query_embedding: Sequence[float], top_k: int, where: Any
) -> list[RetrievalResult]:
    """The dense ranking under `_where`'s filter: raw Milvus text goes to the backend as written, a filter dict
    through the facade's checks."""
    if isinstance(where, RawExpression):
        return (await store.backend.search_many([query_embedding], top_k=top_k, filter=where))[0]  # type: ignore[arg-type]
    return await _VectorStore.search_async(store, query_embedding, top_k, where)


class VectorStore(_VectorStore):
    """0.1.3's signature: `VectorStore(uri, token, collection_name=, dimension=, metric_type=, ..., config=)`.

    Any URI the new store takes works (a Milvus Lite `.db` path, a Milvus URL, a LanceDB directory, ...); none
    given and MILVUS_URI unset: the default store of `mini.VectorStore`. Differences from the new API: `insert`
    adds rows under fresh random ids every time (0.1.3's auto ids; `upsert` is the idempotent write), `search`
    returns 0.1.3's dicts (`id`, `score`, `distance`, `text`, `metadata`) and takes `filter_expr` (see the
    module docstring), and `delete` also takes a `filter_expr` string.

    New code: `mini.VectorStore(uri, collection_name=..., dimension=..., token=...)`.
    """

    def __init__(
        self,
        uri: str | None = None,
        token: str | None = None,
        collection_name: str | None = None,
        dimension: int | None = None,
        metric_type: str = "IP",
        index_type: str = "IVF_FLAT",
        nlist: int = 128,
        config: MilvusConfig | None = None,
        enable_hybrid_search: bool = False,  # 0.1.3's README signature; keyword search is always available
        *,
        backend: VectorStoreBackend | None = None,
    ) -> None:
        warn_renamed(
            "mini.store.VectorStore(uri, token, collection_name=, dimension=, metric_type=, config=)",
            "mini.VectorStore(uri, collection_name=, dimension=, token=)",
        )
        if config is None:
            # As 0.1.3: arguments left out (or empty, like an unset os.getenv) come from the config's defaults.
            config = MilvusConfig(metric_type=metric_type, index_type=index_type, nlist=nlist)
            config = config.model_copy(
                update={
                    "uri": uri or config.uri,
                    "token": token or config.token,
                    "collection_name": collection_name or config.collection_name,
                    "dimension": dimension if dimension is not None else config.dimension,
                }
            )
        if config.metric_type.upper() not in METRIC_TYPES:
            raise ConfigurationError(
                f"metric_type {config.metric_type!r} is not one of {', '.join(METRIC_TYPES)}"
            )
        self.config = config
        super().__init__(
            config.uri,
            collection_name=config.collection_name,
            dimension=config.dimension,
            token=config.token,
            backend=backend,
        )

    async def insert_async(
        self,
        embeddings: Any,
        texts: Sequence[str],
        metadata: Sequence[Mapping[str, Any]] | None = None,
        ids: Sequence[str] | None = None,
    ) -> list[str]:
        """Add rows; returns their ids, fresh random ones unless `ids` are given (0.1.3 returned integers)."""
        if ids is None and not isinstance(texts, str):
            ids = [uuid.uuid4().hex for _ in texts]
        return await super().insert_async(embeddings, texts, metadata, ids)

    async def search_async(  # type: ignore[override]  # 0.1.3's arguments and result shape
        self,
        query_embedding: Sequence[float],
        top_k: int = 5,
        filter_expr: str | None = None,
        output_fields: Sequence[str] | None = None,
        *,
        filter: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """The `top_k` nearest rows as 0.1.3's dicts, best first; `filter_expr` as in the module docstring."""
        return await search_dicts(self, query_embedding, top_k, filter_expr, output_fields, filter=filter)

    async def hybrid_search_async(
        self,
        query: str,
        query_embedding: Sequence[float],
        top_k: int = 5,
        filter_expr: str | None = None,
        output_fields: Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        """0.1.3's hybrid search: the dense and the keyword (BM25) rankings fused by reciprocal rank (k 60)."""
        from mini.query.fusion import rrf

        where = _where(self, filter_expr, None)
        dense = await _nearest(self, query_embedding, top_k, where)
        if isinstance(where, RawExpression):
            keyword = await self.backend.keyword_search(query, top_k=top_k, filter=where)  # type: ignore[arg-type]
        else:
            keyword = await self.keyword_search_async(query, top_k, where)
        fields = DEFAULT_OUTPUT_FIELDS if output_fields is None else output_fields
        return [_as_dict(hit, fields) for hit in rrf([dense, keyword])[:top_k]]

    async def delete_async(
        self, ids: Sequence[str] | str | None = None, filter: Mapping[str, Any] | None = None
    ) -> int:
        """As `mini.VectorStore.delete`; a string is 0.1.3's `delete(expr)`: a `filter_expr` (returns the rows
        deleted, where 0.1.3 always returned 0)."""
        if not isinstance(ids, str):
            return await super().delete_async(ids, filter)
        _warn_delete_expr(stacklevel=4)
        where = _where(self, ids, filter)
        if isinstance(where, RawExpression):
            return await self.backend.delete(filter=where)  # type: ignore[arg-type]
        return await super().delete_async(filter=where)

    # Sync twins. The renamed ones warn here, in the caller's thread, so the warning names the caller's line
    # (a warning raised on the portal loop would be attributed to asyncio, where Python's filters hide it).
    # (insert and search are written out: mypy checks a twin assigned in a subclass against the base's.)
    def insert(
        self,
        embeddings: Any,
        texts: Sequence[str],
        metadata: Sequence[Mapping[str, Any]] | None = None,
        ids: Sequence[str] | None = None,
    ) -> list[str]:
        return _portal.run(self.insert_async(embeddings, texts, metadata, ids))

    def search(  # type: ignore[override]  # 0.1.3's arguments and result shape
        self,
        query_embedding: Sequence[float],
        top_k: int = 5,
        filter_expr: str | None = None,
        output_fields: Sequence[str] | None = None,
        *,
        filter: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        return _portal.run(
            self.search_async(query_embedding, top_k, filter_expr, output_fields, filter=filter)
        )

    hybrid_search = _portal.sync_twin(hybrid_search_async)

    def delete(self, ids: Sequence[str] | str | None = None, filter: Mapping[str, Any] | None = None) -> int:
        if isinstance(ids, str):
            _warn_delete_expr(stacklevel=4)
        return _portal.run(self.delete_async(ids, filter))

    def drop_collection(self) -> None:
        """0.1.3's name for `drop`."""
        warn_renamed("VectorStore.drop_collection()", "VectorStore.drop()")
        self.drop()

    def disconnect(self) -> None:
        """0.1.3's name for `close`."""
        warn_renamed("VectorStore.disconnect()", "VectorStore.close()")
        self.close()


def _warn_delete_expr(*, stacklevel: int) -> None:
    warn_renamed("VectorStore.delete(expr)", "VectorStore.delete(filter={...})", stacklevel=stacklevel)
