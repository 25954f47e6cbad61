"""The alias prefilter's index: which rows name which aliases, so a question can pull in the rows it mentions.

The prefilter field of a row may hold a string or a list of strings (the names of one entity:
``{"aliases": ["Attack on Titan", "AoT"]}``). A question mentions an alias when the alias's words appear in it
as consecutive words, compared in a normal form (`alias_key`: NFKC, casefolded, split by the tokenizer of the
question's phrases). So matching is case-insensitive and word-bounded: "What is AoT about?", "what is aot
about" and "Attack on Titan's ending" mention the aliases above, "a chaotic plot" does not.

Design (issue "One pipeline and one configuration", part 6). A case-insensitive "any element equals" filter
operator was the alternative; it was not chosen because no engine can answer it from what it stores today:
Milvus has no lower() and compares JSON values as stored, Qdrant's `MatchValue` is exact and `MatchText`
is token containment over a full-text index per field, and only LanceDB's SQL could lower() the JSON text,
by parsing every row's metadata per question (the scan the exact prefilter already does there). Answering
it server-side would mean storing a normalised copy of the field at write time in every backend. Instead,
this module reads the field's values once per store state through the portable store API (a row count,
`get` with a `$ne` filter, `get` by ids), which every backend implements with the same semantics (the store
contract checks it, `mini.testing.contracts.aliases`), and matches questions in Python:

- building: the rows that have the field (`{field: {"$ne": <a value no row holds>}}` selects them, list
  values included) are read once and indexed as alias key -> sorted row ids. At most `MAX_INDEXED_ROWS`
  rows: with more, the exact prefilter (the question's phrases `$in` the field) answers instead.
- freshness: each question reads the store's row count (a metadata read on LanceDB and Qdrant); the index
  is rebuilt when the count changed or the index is older than `MAX_AGE_S`, but a build that took more
  than `THROTTLE_AFTER_S` is not repeated sooner than `REBUILD_COST_FACTOR` times its duration, so index
  upkeep stays a bounded share of the work. A question waits at most `BUILD_WAIT_S` for a build; past that
  the previous index (or the exact prefilter) answers and the build finishes in the background.
- per question: the question's words are looked up (no store read), and the matching rows are fetched by
  id (at most `MAX_FETCH_IDS` candidates, in id order, until `top_k` pass the caller's filter). Fetched rows
  are checked against their current value, so a stale index never returns a row that no longer names a
  mentioned alias; it can miss a row whose aliases changed without the row count changing until the index
  expires (`forget` drops it at once).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import re
import threading
import time
import unicodedata
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mini.stores.base import Record, VectorStore

log = logging.getLogger("mini.query")

# Words of a question or an alias: runs of word characters, keeping inner ".+#/-" (C++, node.js, ZX-4471).
WORD = re.compile(r"[\w][\w.+#/-]*[\w+#]|[\w]", re.UNICODE)

# Aliases longer than this many words are not indexed; a row's list is read up to this many aliases.
MAX_ALIAS_WORDS = 12
MAX_ALIASES_PER_ROW = 256
# Rows holding the field that one index covers; past this the exact prefilter answers (with a warning).
MAX_INDEXED_ROWS = 100_000
# Index lifetime, the wait for a build, and the throttle of expensive rebuilds (see the module docstring).
MAX_AGE_S = 60.0
BUILD_WAIT_S = 2.0
THROTTLE_AFTER_S = 0.5
REBUILD_COST_FACTOR = 10.0
# Matching rows considered per question and store (in id order): bounds a question naming a common alias.
MAX_FETCH_IDS = 2048

# Indexes of up to this many rows are built on the event loop (a few ms at most), larger ones in a thread.
_BUILD_INLINE_ROWS = 1000
# A value no row holds: `{field: {"$ne": _ABSENT}}` selects the rows that have the field, whatever its value.
_ABSENT = "\x1fmini: a value no row holds\x1f"


def alias_key(text: str) -> str:
    """The form aliases and questions are compared in: NFKC, casefolded, words joined by single spaces
    ("Attack on Titan's ending" -> "attack on titan s ending", "STRASSE" and "Straße" -> "strasse")."""
    return " ".join(WORD.findall(unicodedata.normalize("NFKC", text).casefold()))


def alias_keys(value: Any) -> set[str]:
    """The alias keys a field value names: a string's, or those of a list's strings; other values none."""
    if isinstance(value, str):
        texts: Iterable[Any] = (value,)
    elif isinstance(value, (list, tuple)):
        texts = value[:MAX_ALIASES_PER_ROW]
    else:
        return set()
    keys = set()
    for text in texts:
        if isinstance(text, str):
            key = alias_key(text)
            if key and key.count(" ") < MAX_ALIAS_WORDS:
                keys.add(key)
    return keys


@dataclass(frozen=True)
class AliasIndex:
    """The rows of one store naming each alias key, for one field."""

    rows: Mapping[str, tuple[str, ...]]  # alias key -> ids of the rows naming it, sorted
    lengths: tuple[int, ...] = ()  # the distinct word counts of the keys, longest first

    @classmethod
    def build(cls, records: Iterable[Record], field: str) -> AliasIndex:
        by_key: dict[str, set[str]] = {}
        for record in records:
            for key in alias_keys(record.metadata.get(field)):
                by_key.setdefault(key, set()).add(record.id)
        lengths = sorted({key.count(" ") + 1 for key in by_key}, reverse=True)
        return cls({key: tuple(sorted(ids)) for key, ids in by_key.items()}, tuple(lengths))

    def match(self, question: str) -> list[str]:
        """The alias keys `question` mentions (as whole words), longest first, then in question order."""
        words = WORD.findall(unicodedata.normalize("NFKC", question).casefold())
        found: dict[str, None] = {}
        for n in self.lengths:
            for i in range(len(words) - n + 1):
                key = " ".join(words[i : i + n])
                if key in self.rows:
                    found.setdefault(key)
        return list(found)

    def ids(self, keys: Iterable[str], limit: int = MAX_FETCH_IDS) -> list[str]:
        """The ids of the rows naming any of `keys`, sorted, each once, at most `limit`."""
        merged = heapq.merge(*(self.rows.get(key, ()) for key in keys))
        unique = (id_ for id_, _ in itertools.groupby(merged))
        return list(itertools.islice(unique, limit))


@dataclass
class _State:
    """One store's index for one field, and the builds under way (one per event loop)."""

    index: AliasIndex | None = None
    oversize: bool = False  # more rows hold the field than MAX_INDEXED_ROWS: the exact prefilter answers
    stamp: int | None = None  # the store's row count just before the installed build read it
    started_at: float = float("-inf")
    built_at: float = float("-inf")
    build_s: float = 0.0
    # The build running on each loop, and when it started (a question waits for what is left of BUILD_WAIT_S).
    tasks: dict[asyncio.AbstractEventLoop, tuple[asyncio.Task[AliasIndex | None], float]] = field(
        default_factory=dict
    )

    @property
    def built(self) -> bool:
        return self.index is not None or self.oversize

    def current(self) -> AliasIndex | None:
        return None if self.oversize else self.index


_lock = threading.Lock()  # guards _states and every _State (questions may run on several loops and threads)
_states: weakref.WeakKeyDictionary[VectorStore, dict[str, _State]] = weakref.WeakKeyDictionary()


def _state(store: VectorStore, field_name: str) -> _State:
    with _lock:
        return _states.setdefault(store, {}).setdefault(field_name, _State())


def forget(store: VectorStore, field_name: str | None = None) -> None:
    """Drop the alias index of `store` (for one field, or all): the next question rebuilds it. For writers
    that change a row's aliases without changing the store's row count and cannot wait for `MAX_AGE_S`."""
    with _lock:
        fields = _states.get(store)
        if fields is None:
            return
        for name in [field_name] if field_name is not None else list(fields):
            state = fields.get(name)
            if state is not None:
                state.index, state.oversize, state.stamp = None, False, None
                state.built_at = float("-inf")


async def lookup(store: VectorStore, field_name: str, *, wait: float | None = None) -> AliasIndex | None:
    """The alias index of `store` for `field_name`, current as of the store's row count; None when the
    exact prefilter must answer (more rows hold the field than `MAX_INDEXED_ROWS`, or the first build is
    still running after `wait` seconds, default `BUILD_WAIT_S`; `wait=math.inf`: until it is built). A
    failed build raises, unless an older index can answer."""
    budget = BUILD_WAIT_S if wait is None else wait
    state = _state(store, field_name)
    count = await store.count_async()
    now = time.monotonic()
    with _lock:
        built, current = state.built, state.current()
        fresh = state.stamp == count and now - state.built_at < MAX_AGE_S
        throttled = state.build_s >= THROTTLE_AFTER_S and (
            now - state.built_at < REBUILD_COST_FACTOR * state.build_s
        )
    if built and (fresh or throttled):
        return current
    task, since = _build_task(store, field_name, state, count)
    left = None if budget == float("inf") else max(0.0, budget - (time.monotonic() - since))
    done, _ = await asyncio.wait({task}, timeout=left)
    if not done:
        answer = "the previous index" if built else "exact matches"
        log.info("the alias index of %r on %r is still building: %s answer", field_name, store, answer)
        return current
    try:
        return task.result()
    except Exception as exc:
        if not built:
            raise
        log.warning(
            "rebuilding the alias index of %r on %r failed, kept the old one: %r", field_name, store, exc
        )
        return current


def _build_task(
    store: VectorStore, field_name: str, state: _State, count: int
) -> tuple[asyncio.Task[AliasIndex | None], float]:
    """The build running on this loop, or a new one (builds on other loops cannot be awaited from here),
    and when it started."""
    loop = asyncio.get_running_loop()
    with _lock:
        for ended in [other for other, (task, _) in state.tasks.items() if task.done() or other.is_closed()]:
            del state.tasks[ended]
        running = state.tasks.get(loop)
        if running is None:
            task = loop.create_task(_build(store, field_name, state, count))
            task.add_done_callback(_retrieved)
            running = state.tasks[loop] = (task, time.monotonic())
    return running


def _retrieved(task: asyncio.Task[AliasIndex | None]) -> None:
    # A build no question waited for to the end (it timed out): its failure is logged, not left unretrieved.
    if not task.cancelled() and task.exception() is not None:
        log.debug("alias index build failed: %r", task.exception())


async def _build(store: VectorStore, field_name: str, state: _State, count: int) -> AliasIndex | None:
    started = time.monotonic()
    having = {field_name: {"$ne": _ABSENT}}
    # The row count bounds the rows having the field: only a large store pays for counting those.
    oversize = count > MAX_INDEXED_ROWS and await store.count_async(having) > MAX_INDEXED_ROWS
    index = None
    if not oversize:
        records = await store.get_async(filter=having, limit=MAX_INDEXED_ROWS + 1)
        oversize = len(records) > MAX_INDEXED_ROWS  # rows were added since the count
        if not oversize and len(records) > _BUILD_INLINE_ROWS:
            index = await asyncio.to_thread(AliasIndex.build, records, field_name)
        elif not oversize:
            index = AliasIndex.build(records, field_name)
    finished = time.monotonic()
    with _lock:
        newly_oversize = oversize and not state.oversize
        if started >= state.started_at:  # else a build started later finished first: keep its index
            state.index, state.oversize, state.stamp = index, oversize, count
            state.started_at, state.built_at, state.build_s = started, finished, finished - started
    if newly_oversize:
        log.warning(
            "more than %d rows of %r hold %r: the prefilter matches whole values exactly (case as written or "
            "lower case), not aliases",
            MAX_INDEXED_ROWS,
            store,
            field_name,
        )
    return index


async def fetch(
    store: VectorStore,
    index: AliasIndex,
    keys: Sequence[str],
    field_name: str,
    top_k: int,
    filter: Mapping[str, Any] | None,
) -> list[Record]:
    """Up to `top_k` rows of `store` naming one of `keys` and matching `filter`, in id order.

    The index's candidates are fetched by id, in batches, until `top_k` pass; each row is checked against its
    current value, so rows whose aliases changed since the index was built are dropped."""
    wanted = set(keys)
    ids = index.ids(keys)
    batch = max(4 * top_k, 64)
    found: list[Record] = []
    for start in range(0, len(ids), batch):
        records = await store.get_async(ids[start : start + batch], filter=filter)
        named = [r for r in records if alias_keys(r.metadata.get(field_name)) & wanted]
        found += sorted(named, key=lambda r: r.id)  # batches are consecutive runs of the sorted ids
        if len(found) >= top_k:
            break
    return found[:top_k]
