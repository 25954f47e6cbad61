"""Retrieval legs run concurrently and fused by rank: dense (per query variant), keyword (BM25) and an
optional metadata prefilter (the rows whose metadata field, a string or a list of aliases, names something the
question mentions, case-insensitively and as whole words: seed 001's alias prefilter, see `mini.query.aliases`).

The dense leg is required: its failure raises. The optional legs degrade: a failure (or a store without keyword
search) leaves the others' results, with a warning the caller puts in the response metadata.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mini import tracing
from mini._names import RETRIEVAL_MODES as MODES
from mini._names import Mode
from mini._tasks import gather_all
from mini.config import RetrievalConfig
from mini.embeddings.base import EmbeddingModel
from mini.errors import InvalidInputError, UnsupportedOperationError
from mini.query import aliases
from mini.query.fusion import merge_by_score, rrf
from mini.stores.base import Record, VectorStore
from mini.types import RetrievalResult

log = logging.getLogger("mini.query")

# Prefilter phrases: word n-grams of the question up to this many words, at most this many phrases.
_MAX_PHRASE_WORDS = 4
_MAX_PHRASES = 128
_WORD = aliases.WORD


@dataclass
class Retrieval:
    """What one retrieval produced: the fused results and how each leg went."""

    results: list[RetrievalResult]
    mode: Mode
    embed_ms: float = 0.0
    wall_ms: float = 0.0
    legs: dict[str, dict[str, Any]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def metadata(self) -> dict[str, Any]:
        return {"mode": self.mode, "wall_ms": round(self.wall_ms, 3), "legs": self.legs}


def resolve_mode(config: RetrievalConfig, override: str | None = None) -> Mode:
    """`override` (a per-question mode), else the configured mode (a hybrid retriever over a store without
    keyword search runs dense, with a warning)."""
    mode = override or config.retrieval_mode or ("hybrid" if config.use_hybrid_search else "dense")
    for known in MODES:
        if mode == known:
            return known
    raise InvalidInputError(f"retrieval mode must be one of {', '.join(MODES)}, not {mode!r}")


def question_phrases(question: str) -> list[str]:
    """Word n-grams of the question (1 to 4 words), as written and lower-cased: the values the exact-match
    metadata prefilter looks for ("Which SKUs does Acme Pro X cover?" -> ..., "Acme Pro X", "acme pro x", ...),
    when a store has too many rows for an alias index (`mini.query.aliases`)."""
    words = _WORD.findall(question)
    phrases: dict[str, None] = {}
    for n in range(_MAX_PHRASE_WORDS, 0, -1):  # longest first: they are the most specific
        for i in range(len(words) - n + 1):
            phrase = " ".join(words[i : i + n])
            phrases.setdefault(phrase)
            phrases.setdefault(phrase.lower())
    return list(phrases)[:_MAX_PHRASES]


class HybridRetriever:
    """Runs the legs of one retrieval concurrently and fuses their rankings with weighted RRF.

    Over several stores (a chat session's uploads beside the main collection), every leg searches each store
    and, per query, the stores' hits are merged by score before fusion: one query vector against collections
    of the same embedding model gives comparable cosine scores, whereas fusing the stores' rankings with RRF
    would rank each store's best hit equal whatever its relevance (one unrelated upload would always be a
    top source). The first store wins exact score ties.
    """

    def __init__(
        self,
        store: VectorStore | Sequence[VectorStore],
        embedding_model: EmbeddingModel,
        config: RetrievalConfig,
    ) -> None:
        self.stores: list[VectorStore] = [store] if isinstance(store, VectorStore) else list(store)
        if not self.stores:
            raise InvalidInputError("retrieval needs at least one store")
        self.embedding_model = embedding_model
        self.config = config

    async def retrieve(
        self,
        queries: Sequence[str],
        *,
        question: str,
        top_k: int,
        filter: Mapping[str, Any] | None,
        mode: Mode | None = None,
    ) -> Retrieval:
        """`top_k` fused results for `queries` (the question and its rewrites); `question` feeds the prefilter."""
        mode = mode or resolve_mode(self.config)
        out = Retrieval([], mode)
        started = time.perf_counter()
        fetch = max(top_k, self.config.candidates_per_leg or 0)
        want_keyword = mode in ("keyword", "hybrid")
        keyword_stores = [s for s in self.stores if s.supports_hybrid]
        if want_keyword and not keyword_stores:
            if mode == "keyword":
                raise UnsupportedOperationError(
                    f"keyword retrieval needs a store with keyword search; {self.stores[0]!r} has none"
                )
            out.warnings.append("hybrid search: this store has no keyword search, dense retrieval only")
            want_keyword = False
        legs: dict[str, Awaitable[list[list[RetrievalResult]]]] = {}
        if mode != "keyword":
            legs["dense"] = self._dense(out, queries, fetch, filter)
        if want_keyword:
            legs["keyword"] = self._keyword(keyword_stores, queries, fetch, filter)
        if self.config.prefilter_field:
            legs["prefilter"] = self._prefilter(question, self.config.prefilter_field, fetch, filter)
        rankings = await self._run_legs(out, legs, required="keyword" if mode == "keyword" else "dense")
        weights = {
            "dense": self.config.dense_weight,
            "keyword": self.config.keyword_weight,
            "prefilter": self.config.prefilter_weight,
        }
        lists = [ranking for name, per_query in rankings.items() for ranking in per_query]
        if len(lists) == 1:
            out.results = lists[0][:top_k]
        else:
            leg_weights = [weights[name] for name, per_query in rankings.items() for _ in per_query]
            out.results = rrf(lists, k=self.config.rrf_k, weights=leg_weights)[:top_k]
        out.wall_ms = (time.perf_counter() - started) * 1000.0
        return out

    async def _run_legs(
        self, out: Retrieval, legs: dict[str, Awaitable[list[list[RetrievalResult]]]], *, required: str
    ) -> dict[str, list[list[RetrievalResult]]]:
        """All legs at once; the required leg's failure cancels the others and raises, an optional one's warns."""

        async def timed(
            name: str, leg: Awaitable[list[list[RetrievalResult]]]
        ) -> list[list[RetrievalResult]]:
            since = time.perf_counter()
            try:
                rankings = await leg
            finally:
                out.legs[name] = {"ms": round((time.perf_counter() - since) * 1000.0, 3)}
            out.legs[name]["hits"] = sum(len(r) for r in rankings)
            return rankings

        tasks = {name: asyncio.ensure_future(timed(name, leg)) for name, leg in legs.items()}
        try:
            await tasks[required]
            await asyncio.wait(tasks.values())
        except BaseException:  # the required leg failed, or we were cancelled: stop the rest
            for task in tasks.values():
                task.cancel()
            await asyncio.gather(*tasks.values(), return_exceptions=True)
            raise
        rankings: dict[str, list[list[RetrievalResult]]] = {}
        for name, task in tasks.items():
            exc = task.exception()
            if exc is None:
                rankings[name] = task.result()
                continue
            log.warning("%s retrieval leg failed: %r", name, exc)
            out.legs[name]["error"] = f"{type(exc).__name__}: {exc}"
            out.warnings.append(f"{name} retrieval failed, fused the other legs only: {exc}")
        return rankings

    async def _dense(
        self, out: Retrieval, queries: Sequence[str], top_k: int, filter: Mapping[str, Any] | None
    ) -> list[list[RetrievalResult]]:
        since = time.perf_counter()
        with tracing.span("mini.embed", {"mini.leg": "dense", "mini.queries": len(queries)}) as span:
            tracing.set_model_call(span, self.embedding_model.name, operation="embeddings")
            vectors = await self.embedding_model.embed_async(list(queries), input_type="query")
        out.embed_ms = (time.perf_counter() - since) * 1000.0
        with tracing.span("mini.search", {"mini.leg": "dense", "mini.top_k": top_k}) as span:
            per_store = await gather_all(
                store.search_many_async(list(vectors), top_k, filter) for store in self.stores
            )
            rankings = [merge_by_score(hits, top_k) for hits in zip(*per_store, strict=True)]
            span.set_attribute("mini.hits", sum(len(r) for r in rankings))
        return rankings

    async def _keyword(
        self,
        stores: Sequence[VectorStore],
        queries: Sequence[str],
        top_k: int,
        filter: Mapping[str, Any] | None,
    ) -> list[list[RetrievalResult]]:
        # One BM25 query over the words of every variant, not one per variant: rewrites add terms (synonyms,
        # spelled-out acronyms) that BM25 rewards in one ranking, and each full-text query costs ~2 ms of CPU,
        # which at 64 concurrent questions x 3 variants was the largest client cost of a query.
        text = queries[0] if len(queries) == 1 else "\n".join(queries)
        attributes: tracing.Attributes = {"mini.leg": "keyword", "mini.queries": len(queries)}
        with tracing.span("mini.search.keyword", attributes) as span:
            per_store = await gather_all(store.keyword_search_async(text, top_k, filter) for store in stores)
            hits = merge_by_score(per_store, top_k)
            span.set_attribute("mini.hits", len(hits))
        return [hits]

    async def _prefilter(
        self, question: str, field_name: str, top_k: int, filter: Mapping[str, Any] | None
    ) -> list[list[RetrievalResult]]:
        phrases = question_phrases(question)
        if not phrases:
            return [[]]
        attributes: tracing.Attributes = {"mini.leg": "prefilter", "mini.phrases": len(phrases)}
        with tracing.span("mini.search.prefilter", attributes) as span:
            per_store = await gather_all(
                _prefilter_store(store, question, phrases, field_name, top_k, filter) for store in self.stores
            )
            records: dict[str, Record] = {}
            for found, _ in per_store:
                for record in found:
                    records.setdefault(record.id, record)  # a row in several stores: the first store's copy
            span.set_attribute("mini.hits", len(records))
            span.set_attribute("mini.prefilter.matching", ",".join(sorted({how for _, how in per_store})))
        # Matches carry no relevance order of their own: by id, so the ranking is deterministic.
        hits = [RetrievalResult(r.id, r.text, 1.0, r.metadata) for _, r in sorted(records.items())]
        return [merge_by_score([hits], top_k)]


async def _prefilter_store(
    store: VectorStore,
    question: str,
    phrases: Sequence[str],
    field_name: str,
    top_k: int,
    filter: Mapping[str, Any] | None,
) -> tuple[list[Record], str]:
    """One store's prefilter rows (at most `top_k`, in id order) and how they were matched: "aliases" (the
    store's alias index, see `mini.query.aliases`: a string or list field, case-insensitive, whole words) or
    "exact" (a phrase of the question equals the field's value: while a store has more rows holding the field
    than one index covers, or its first index is still being built; and for the row id, which is no metadata).

    Why an index read through the portable store API rather than a new case-insensitive filter operator:
    Milvus and Qdrant cannot compare JSON values case-insensitively, and LanceDB could only by parsing every
    row's metadata per question (the module docstring of `mini.query.aliases` has the details)."""
    index = await aliases.lookup(store, field_name) if field_name != "id" else None
    if index is not None:
        keys = index.match(question)
        found = await aliases.fetch(store, index, keys, field_name, top_k, filter) if keys else []
        return found, "aliases"
    match: dict[str, Any] = {field_name: {"$in": list(phrases)}}
    where = {"$and": [match, dict(filter)]} if filter else match
    records = await store.get_async(filter=where, limit=top_k)
    return sorted(records, key=lambda r: r.id), "exact"
