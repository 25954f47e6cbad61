"""Keyword (BM25) rankings summed from per-word scores that LanceDB's full-text index computed, cached per
table version: the same ranking as one LanceDB query per question, without paying a query per question.

Why: a LanceDB query costs ~1.5-2 ms of CPU whatever the table size (plan and scan set-up), and full-text
queries, unlike vector queries, cannot share one call. At 64 concurrent questions that made hybrid retrieval
cost ~2x the CPU of dense (bench/query_concurrency.py --mode hybrid vs dense).

Why the ranking is the same: LanceDB's BM25 score of a query is the sum over its tokens, each counted as often
as it occurs, of that token's score (checked against whole-query scores on the example corpus: equal to the
last printed digit). So a question's scores are its words' cached scores summed, each word times its count.
Words are cut only at ASCII non-alphanumerics, which are token boundaries for LanceDB's simple tokenizer too,
and only ASCII letters are lowercased (LanceDB lowercases anyway): a word may hold several LanceDB tokens
(its own query sums them), never part of one. Sums are float64 of LanceDB's float32 scores, so two hits
LanceDB scores within float32 rounding of each other may swap places.

Any write changes every score (IDF and the average length cover every row), so each batch of concurrent
searches reads the table version (~0.1 ms) and a new version starts an empty cache, used once the version has
stood `SETTLE_S`. A question the cache cannot answer (a version too young, words past a batch's fetch budget
or past `MAX_POSTINGS`) gets None: its caller asks LanceDB directly, as it would without the cache.
"""

from __future__ import annotations

import asyncio
import re
import string
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from mini._tasks import to_the_end
from mini.stores.lancedb.commits import map_lancedb_errors
from mini.stores.lancedb.hits import metadata_decoder
from mini.stores.lancedb.rows import TEXT_COLUMN, float_values
from mini.stores.lancedb.sql import ID_COLUMN, METADATA_COLUMN, id_in
from mini.types import RetrievalResult

if TYPE_CHECKING:  # importing lancedb's Python layer takes seconds: `mini.stores.lancedb.native`
    from lancedb.table import AsyncTable

# (row, score) pairs cached, over all words: 8 bytes each, so ~16 MB.
MAX_POSTINGS = 2_000_000
# Rows whose text and metadata are kept for building results (a table's hits are mostly the same rows).
MAX_ROWS = 20_000
# A word's postings longer than this are converted to arrays in a thread: ~1 us per row holds the GIL.
_OFFLOAD_ROWS = 5_000
# A table version is cached only once it has stood this long: while writes keep coming (an ingestion commits
# every few hundred ms), each would empty the cache, and refilling it costs ~1.5x one query per question
# (bench/keyword_scifact.py), so meanwhile questions get one LanceDB query each, as without the cache.
SETTLE_S = 1.0
# Uncached words a batch fetches per query at most (see `words_to_fetch`).
_WORDS_PER_QUERY = 8
# Ranking holds the GIL for ~20 ns per posting added up plus ~20 us per query (SciFact: 300 queries adding up
# 817k postings in 20-25 ms), i.e. a query costs as much as `_RANK_OVERHEAD` postings: past ~2 ms of work,
# the batch is ranked in a thread so the event loop keeps running.
_OFFLOAD_POSTINGS = 100_000
_RANK_OVERHEAD = 1_000
# Ids per `id IN (...)` predicate, as in the backend.
_ID_BATCH = 1_000

_BOUNDARY = re.compile(r"[\x00-\x2f\x3a-\x40\x5b-\x60\x7b-\x7f]+")  # every ASCII char but letters and digits
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def query_words(text: str) -> Counter[str]:
    """The words of a keyword query with their counts (see the module docstring for why this cut is safe)."""
    return Counter(word.translate(_ASCII_LOWER) for word in _BOUNDARY.split(text) if word)


def words_to_fetch(queries: Sequence[Counter[str]], cached: Collection[str]) -> list[str]:
    """The uncached words one batch fetches: those most of its queries need first, at most
    `_WORDS_PER_QUERY` per query (plus a few). A cold cache then costs a batch about what one direct query per
    question would (a word's query costs ~3 ms on SciFact, a question's ~10 ms): the rest of its questions go
    direct this time, and later batches find more of their words."""
    need = Counter(w for q in queries for w in q if w not in cached)
    budget = _WORDS_PER_QUERY * len(queries) + 8
    return [word for word, _ in sorted(need.items(), key=lambda item: (-item[1], item[0]))[:budget]]


@dataclass
class _Cache:
    """Postings of one table version. Rows get positions in `ids` as postings first name them."""

    version: int
    seen: float  # time.monotonic() when this process first saw the version
    row_count: int | None = None  # read when the first word is fetched
    ids: list[str] = field(default_factory=list)
    positions: dict[str, int] = field(default_factory=dict)
    postings: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # int32 rows, float32
    size: int = 0
    # id -> text, and a function giving a fresh metadata dict per hit (decoded once: `hits.metadata_decoder`)
    rows: dict[str, tuple[str, Callable[[], Any]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)  # loops on other threads share the cache

    def add(self, word: str, ids: list[str], scores: np.ndarray) -> None:
        with self.lock:
            where = []
            for id_ in ids:
                position = self.positions.get(id_)
                if position is None:
                    position = self.positions[id_] = len(self.ids)
                    self.ids.append(id_)
                where.append(position)
            self.postings[word] = (np.asarray(where, dtype=np.int32), scores.astype(np.float32, copy=False))
            self.size += len(ids)

    def rank(self, words: Counter[str], top_k: int) -> list[tuple[str, float]]:
        """The best `top_k` (id, score) pairs, best first; on equal scores, the row seen first."""
        scores = np.zeros(len(self.ids), dtype=np.float64)
        hit = np.zeros(len(self.ids), dtype=bool)
        for word, count in words.items():
            rows, values = self.postings[word]
            scores[rows] += count * values.astype(np.float64)
            hit[rows] = True
        found = np.flatnonzero(hit)
        if len(found) > top_k:  # the best top_k in linear time; ties at the cut are arbitrary, as in LanceDB
            found = found[np.argpartition(-scores[found], top_k - 1)[:top_k]]
        best = found[np.lexsort((found, -scores[found]))]  # best first, then the row seen first
        return [(self.ids[p], float(scores[p])) for p in best]

    def rank_all(self, queries: Sequence[Counter[str]], top_k: int) -> list[list[tuple[str, float]] | None]:
        """`rank` of each query whose words are all cached; None for the others."""
        return [self.rank(q, top_k) if all(w in self.postings for w in q) else None for q in queries]

    def work(self, queries: Sequence[Counter[str]]) -> int:
        """Postings `rank_all` would add up (see `_OFFLOAD_POSTINGS`)."""
        return sum(len(self.postings[w][0]) for q in queries for w in q if w in self.postings)


class KeywordScores:
    """Serves batches of concurrent keyword queries (no filter) for one backend; see the module docstring."""

    def __init__(self, *, settle: float = SETTLE_S) -> None:
        self.settle = settle
        self._cache: _Cache | None = None

    def forget(self) -> None:
        self._cache = None

    async def search_batch(
        self, table: AsyncTable, texts: Sequence[str], top_k: int
    ) -> list[list[RetrievalResult] | None]:
        """Each text's `top_k` hits, best first; None for a text the cache cannot answer (see the module
        docstring): the caller runs one LanceDB query for it, under its own bound on concurrent searches."""
        with map_lancedb_errors("keyword search"):
            version = await table.version()
        cache = self._cache
        if cache is None or cache.version != version:
            cache = self._cache = _Cache(version, time.monotonic())
        if time.monotonic() - cache.seen < self.settle:  # see SETTLE_S
            return [None for _ in texts]
        if cache.row_count is None:
            with map_lancedb_errors("keyword search"):
                cache.row_count = await table.count_rows()
        queries = [query_words(text) for text in texts]
        for word in words_to_fetch(queries, cache.postings.keys()):
            if cache.size >= MAX_POSTINGS:
                break
            await self._fetch_word(table, cache, word)
        if cache.work(queries) + _RANK_OVERHEAD * len(queries) > _OFFLOAD_POSTINGS:
            ranked = await asyncio.to_thread(cache.rank_all, queries, top_k)
        else:
            ranked = cache.rank_all(queries, top_k)
        found = await self._fetch_rows(table, cache, {i for r in ranked if r for i, _ in r})
        out: list[list[RetrievalResult] | None] = []
        for ranking in ranked:
            if ranking is None:
                out.append(None)
                continue
            results = []
            for id_, score in ranking:
                row = found.get(id_)
                if row is not None:  # else deleted meanwhile: the next batch sees the new version
                    results.append(RetrievalResult(id_, row[0], score, row[1]()))
            out.append(results)
        return out

    async def _fetch_word(self, table: AsyncTable, cache: _Cache, word: str) -> None:
        """One word's score on every row it matches (no limit but the table's rows)."""
        if not cache.row_count:
            cache.add(word, [], np.zeros(0, dtype=np.float32))
            return
        query = (
            table.query()
            .nearest_to_text(word, columns=TEXT_COLUMN)
            .select([ID_COLUMN, "_score"])
            .limit(cache.row_count)  # every row the word matches
        )
        with map_lancedb_errors("keyword search"):
            hits = await to_the_end(query.to_arrow())

        def add() -> None:
            scores = float_values(hits.column("_score"))  # not to_numpy(): it imports pandas
            cache.add(word, hits.column(ID_COLUMN).to_pylist(), scores)

        if hits.num_rows > _OFFLOAD_ROWS:
            await asyncio.to_thread(add)
        else:
            add()

    async def _fetch_rows(
        self, table: AsyncTable, cache: _Cache, ids: set[str]
    ) -> dict[str, tuple[str, Callable[[], Any]]]:
        """Text and metadata of `ids`: the cached ones, the rest in one query for the whole batch."""
        out = {id_: row for id_ in ids if (row := cache.rows.get(id_)) is not None}
        missing = sorted(ids - out.keys())
        if not missing:
            return out
        for start in range(0, len(missing), _ID_BATCH):
            predicate = id_in(missing[start : start + _ID_BATCH])
            query = table.query().where(predicate).select([ID_COLUMN, TEXT_COLUMN, METADATA_COLUMN])
            with map_lancedb_errors("keyword search"):
                found: pa.Table = await to_the_end(query.to_arrow())
            columns = (found.column(name).to_pylist() for name in (ID_COLUMN, TEXT_COLUMN, METADATA_COLUMN))
            for id_, text, metadata in zip(*columns, strict=True):
                out[id_] = (text or "", metadata_decoder(metadata))
                if len(cache.rows) < MAX_ROWS:
                    cache.rows[id_] = out[id_]
        return out
