"""The store's side of ingestion: fingerprints, read-ahead lookups of what is stored, commits, pruning."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import numpy as np

from mini import tracing
from mini.errors import StoreError, UnsupportedFilterError
from mini.stores.base import delete_duplicates, exclusive
from mini.stores.filters import Compare, In, parse_filter

if TYPE_CHECKING:
    from mini.ingest.units import Unit
    from mini.stores.base import Record, VectorStoreBackend

log = logging.getLogger("mini.ingest")

# Bump when loaders or chunking change their output for the same input: every file is then re-chunked once.
PIPELINE_VERSION = "1"
# What the store holds is looked up for this many files at once (one scan each, read ahead of the workers).
LOOKUP_WINDOW = 256
# Compact the table after this many commits in a run (LanceDB; also builds its vector index when large).
COMPACT_EVERY = 32


@dataclass(slots=True)
class Stored:
    """What the store holds for one origin: its fingerprint (None if its rows disagree), row ids, and the ids
    stored more than once (left by concurrent ingestions of older versions)."""

    fingerprint: str | None
    ids: set[str]
    duplicates: set[str] = field(default_factory=set)


# -- fingerprints: "<embedding model>.<chunking settings>.<content>", each part a short hash ----------------


def short_hash(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:12]


def digest(data: bytes) -> str:
    """The content part of a fingerprint."""
    return hashlib.sha256(data).hexdigest()[:32]


def vector_space(model_name: str) -> str:
    """The model whose vectors `model_name` makes: itself, or for an int8 variant (`local:...-int8`) the float
    model it was quantized from. The default model became the int8 variant because its vectors stay within
    cosine 0.99 of the float model's (docs/design-decisions.md): they mix in one index, so files already
    embedded by one are not embedded again by the other."""
    from mini.embeddings.quantize import split_variant

    return split_variant(model_name)[0] if model_name.startswith("local:") else model_name


def embed_key(model_name: str, dimension: int | None) -> str:
    """Identifies the vectors a model makes: stored vectors are reusable only under the same key."""
    return short_hash(model_name, str(dimension or ""))


def config_key(chunk_tokens: int, overlap_tokens: int, sizing: str) -> str:
    """Identifies how text is cut into chunks (`sizing`: how chunk lengths are measured)."""
    return short_hash(PIPELINE_VERSION, str(chunk_tokens), str(overlap_tokens), sizing)


def fingerprint(embed: str, config: str, content: str) -> str:
    return f"{embed}.{config}.{content}"


def reusable(stored: Stored, embed: str) -> bool:
    """Stored vectors can be reused only if the same embedding model made them."""
    return stored.fingerprint is not None and stored.fingerprint.split(".", 1)[0] == embed


# -- stored state --------------------------------------------------------------------------------------------


def summarize(rows: Iterable[Record]) -> dict[str, Stored]:
    """Stored rows grouped by origin, with the fingerprint they agree on."""
    found: dict[str, Stored] = {}
    for row in rows:
        origin = row.metadata.get("origin")
        if not isinstance(origin, str):
            continue
        fp = row.metadata.get("fingerprint")
        stored = found.get(origin)
        if stored is None:
            found[origin] = Stored(fp if isinstance(fp, str) else None, {row.id})
        else:
            if row.id in stored.ids:
                stored.duplicates.add(row.id)
            stored.ids.add(row.id)
            if stored.fingerprint != fp:
                stored.fingerprint = None  # mixed versions (written by hand?): re-ingest it
    return found


class StoredLookup:
    """What the store holds for each of `origins`, fetched a window of `window` origins per scan; asking for
    one window starts the next window's scan, so it is ready when the workers (in order) get there.

    `empty`: the store held no rows when the run started, so it holds nothing of these origins: no scans at
    all (the first ingestion of a big corpus would otherwise scan a growing table once per window).
    """

    def __init__(
        self, backend: VectorStoreBackend, origins: list[str], *, empty: bool, window: int = LOOKUP_WINDOW
    ) -> None:
        self._backend = backend
        self._origins = origins
        self._empty = empty
        self._window = window
        self._scans: dict[int, asyncio.Task[dict[str, Stored]]] = {}

    async def get(self, index: int) -> Stored | None:
        """What the store holds for `origins[index]`."""
        if self._empty:
            return None
        window = index // self._window
        for w in (window, window + 1):
            if w not in self._scans and w * self._window < len(self._origins):
                origins = self._origins[w * self._window : (w + 1) * self._window]
                self._scans[w] = asyncio.get_running_loop().create_task(self._scan(origins))
        self._scans.pop(window - 2, None)  # windows behind every worker are done with
        # Shielded: one worker giving up must not cancel the scan its window shares with the others.
        found = await asyncio.shield(self._scans[window])
        return found.get(self._origins[index])

    def cancel(self) -> None:
        for scan in self._scans.values():
            scan.cancel()

    async def _scan(self, origins: list[str]) -> dict[str, Stored]:
        found = summarize(await self._backend.get(filter=In("origin", tuple(origins))))
        # The scan saw every row of these files, so it also sees ids stored twice: removed here, whether the
        # file is then skipped as unchanged or replaced (a merge would update both copies and keep them).
        repeated = [i for stored in found.values() for i in stored.duplicates]
        if repeated:
            removed = await delete_duplicates(self._backend, repeated)
            files = sum(bool(stored.duplicates) for stored in found.values())
            log.warning("removed %d duplicate row(s) of %d file(s), left by an older version", removed, files)
            for stored in found.values():
                stored.duplicates.clear()
        return found


async def stored_vectors(backend: VectorStoreBackend, origin: str) -> dict[str, np.ndarray]:
    """The stored vectors of an origin's chunks by content hash: an edited file's unchanged chunks keep them
    (read back, not re-embedded)."""
    rows = await backend.get(filter=Compare("origin", "eq", origin), include_vectors=True)
    return {
        digest: np.asarray(row.vector, dtype=np.float32)
        for row in rows
        if isinstance(digest := row.metadata.get("content_hash"), str) and row.vector is not None
    }


# -- pruning -------------------------------------------------------------------------------------------------


def root_prefix(root: Path) -> str:
    """The prefix of every origin under directory `root`."""
    return root.as_posix().rstrip("/") + "/"


def stale_origins(stored: Iterable[str], prefix: str, seen: set[str], glob: str | None) -> list[str]:
    """Stored origins under `prefix` that this run did not see, restricted to those `glob` matches (the walk
    skipped the others, so their absence proves nothing)."""
    return sorted(
        o
        for o in set(stored)
        if o.startswith(prefix)
        and o not in seen
        and (not glob or PurePosixPath(o[len(prefix) :]).match(glob))
    )


async def prune(
    backend: VectorStoreBackend, roots: list[Path], seen: set[str], glob: str | None
) -> tuple[list[str], int]:
    """Delete the stored files under `roots` that are not in `seen`: the origins pruned and rows deleted."""
    pruned: list[str] = []
    removed = 0
    for root in roots:
        prefix = root_prefix(root)
        # Origins under the root: the strings from "root/" up to (not including) "root0" ('0' follows '/').
        spec = {"origin": {"$gte": prefix, "$lt": prefix[:-1] + "0"}}
        try:
            rows = await backend.get(filter=parse_filter(spec))
        except UnsupportedFilterError:  # no string ranges (Qdrant): read every row's origin instead
            rows = await backend.get()
        origins = (o for r in rows if isinstance(o := r.metadata.get("origin"), str))
        stale = stale_origins(origins, prefix, seen, glob)
        if stale:
            removed += await backend.delete(filter=In("origin", tuple(stale)))
            pruned.extend(stale)
            log.info("pruned %d file(s) under %s that no longer exist", len(stale), root)
    return pruned, removed


# -- writing -------------------------------------------------------------------------------------------------


def already_stored(unit: Unit) -> bool:
    """Whether the store holds exactly the rows this unit would write (another ingestor wrote them first)."""
    stored = unit.stored
    return (
        stored is not None
        and stored.fingerprint == unit.fingerprint
        and stored.ids == {r.id for r in unit.records}
    )


class Committer:
    """Writes finished units, several per commit; compacts the table every `compact_every` commits.

    Each commit is one section under the store's writer lock (`exclusive`): it first checks that the store
    still holds what the read-ahead lookup saw for its units (another ingestor may have written the same files
    since), corrects `unit.stored` where it does not, and leaves out the units whose very rows are already
    there. So `unit.stored` describes the store as this commit found it, and the report built from it is true:
    of two ingestors racing on a file, one adds it and the other finds it unchanged (`already_stored`).

    Units whose rows are all new (no file replaced, none of their ids stored) are appended rather than merged
    (a backend's `append`, where it has one): the merge joins every commit against all stored ids, and at 100k
    rows that made commits, and the run, slow down as the table grew. A run that started on an empty store
    (`start(empty=True)`) skips the id lookup too while the store's `write_state()` is the one its own last
    commit left: no one else wrote, and its own commits hold other files' ids. Such a run also leaves
    periodic compaction out (appends add one fragment each and are not slowed by them) and compacts once at
    the end.

    `fatal(exc)`: errors that would fail every unit alike (then no unit is retried alone).
    `timed(stage, since)`: records the time spent since `since` (perf_counter) in "store" or "compact".
    """

    def __init__(
        self,
        backend: VectorStoreBackend,
        *,
        fatal: Callable[[BaseException], bool],
        timed: Callable[[str, float], None],
        compact_every: int = COMPACT_EVERY,
    ) -> None:
        self._backend = backend
        self._fatal = fatal
        self._timed = timed
        self._compact_every = compact_every
        self.commits = 0
        self._fresh = False  # the run started on an empty store, and no one else has written since
        self._state: object = None  # the store's write_state() when last known to hold only our rows
        # Optional backend methods (LanceDB has both): see the class docstring.
        self._state_of: Callable[[], Awaitable[object]] | None = getattr(backend, "write_state", None)
        self._append: Callable[[list[Record]], Awaitable[None]] | None = getattr(backend, "append", None)

    def start(self, *, empty: bool, state: object = None) -> None:
        """Before the run's first commit: `empty` says the store held no rows, when its `write_state()` was
        `state` (read before that count, so a write in between shows as a changed state)."""
        self._fresh = empty and self._state_of is not None
        self._state = state

    async def write_state(self) -> object:
        """The backend's `write_state()` (None without one); read before `start`."""
        return await self._state_of() if self._state_of is not None else None

    async def write(self, units: list[Unit]) -> list[BaseException | None]:
        """One commit for several finished units; if it fails, each unit is retried alone so one bad file
        (say, metadata that cannot be stored) fails only itself."""
        since = time.perf_counter()
        try:
            try:
                await self._commit(units)
                return [None] * len(units)
            except Exception as exc:
                if self._fatal(exc) or len(units) == 1:
                    return [exc] * len(units)
            outcomes: list[BaseException | None] = []
            for unit in units:
                try:
                    await self._commit([unit])
                    outcomes.append(None)
                except Exception as exc:
                    outcomes.append(exc)
            return outcomes
        finally:
            self._timed("store", since)

    async def finish(self) -> None:
        """At the end of a run: many small writes make later searches slower, so merge them now."""
        if self.commits >= 4 and (self._fresh or self.commits % self._compact_every):
            await self._compact()
        elif self.commits:
            await self._prepare_search()

    async def _prepare_search(self) -> None:
        """A run too small to compact still leaves the store ready to search: a first query after `mini
        ingest` of a few files otherwise built LanceDB's full-text index itself (~1 s, importing `lancedb`)."""
        prepare = getattr(self._backend, "prepare_search", None)
        if callable(prepare):
            since = time.perf_counter()
            try:
                await prepare()
            except StoreError as exc:  # only makes the first search faster: the rows are committed
                log.warning("search index not built: %s", exc)
            self._timed("compact", since)

    async def _commit(self, units: list[Unit]) -> None:
        async with exclusive(self._backend):
            if self._fresh and await self.write_state() != self._state:
                self._fresh = False  # someone else wrote: check every commit from now on
                log.info("another writer changed the store during this run")
            present = set() if self._fresh else await self._recheck(units)
            units = [unit for unit in units if not already_stored(unit)]
            if not units:
                return
            records = [r for unit in units for r in unit.records]
            replaced = tuple(unit.origin for unit in units if unit.stored is not None)
            append = self._append if not replaced and not present else None
            attributes = {"mini.files": len(units), "mini.rows": len(records), "mini.replaced": len(replaced)}
            with tracing.span("mini.ingest.write", {**attributes, "mini.appended": append is not None}):
                if replaced:
                    # Rows of these files that the new versions do not produce are deleted in the same commit.
                    await self._backend.replace(records, scope=In("origin", replaced))
                elif append is not None:
                    await append(records)
                else:
                    await self._backend.upsert(records)
            if self._fresh:
                self._state = await self.write_state()
        self.commits += 1
        if not self._fresh and self.commits % self._compact_every == 0:
            await self._compact()

    async def _recheck(self, units: list[Unit]) -> set[str]:
        """Refresh `unit.stored` for the units whose rows the store no longer holds as the lookup saw them;
        returns the units' ids that are stored.

        One id lookup per commit (the units' new ids): a unit's ids that are stored should be exactly those
        the lookup found for its file. Where they are not, someone wrote the file meanwhile, and its stored
        state is read again (one scan, for those files only)."""
        ids = [r.id for unit in units for r in unit.records]
        present = await self._backend.existing_ids(ids) if ids else set()
        changed = []
        for unit in units:
            new_ids = {r.id for r in unit.records}
            expected = new_ids & unit.stored.ids if unit.stored is not None else set()
            if new_ids & present != expected:
                changed.append(unit)
        if changed:
            fresh = summarize(await self._backend.get(filter=In("origin", tuple(u.origin for u in changed))))
            for unit in changed:
                unit.stored = fresh.get(unit.origin)
            log.info("%d file(s) were written by another ingestor meanwhile", len(changed))
        return present

    async def _compact(self) -> None:
        optimize = getattr(self._backend, "optimize", None)
        if callable(optimize):
            since = time.perf_counter()
            try:
                await optimize()
            except StoreError as exc:
                # Compaction only makes later reads faster: the rows are committed, so the run goes on.
                log.warning("compaction skipped: %s", exc)
            self._timed("compact", since)
