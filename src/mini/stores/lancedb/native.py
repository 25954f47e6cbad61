"""LanceDB's Rust engine without its Python layer: the read path a cold `mini query` takes.

Why: `import lancedb` takes 1.5-2 s on 2 cores (bench/cold_start.py: ~1 s of it lance_namespace's generated
OpenAPI client, which `lancedb.db` imports eagerly, ~0.3 s pandas through `pyarrow.dataset`), while its
extension module `lancedb._lancedb` loads in ~20 ms and opens a table and runs a vector search in ~10 ms. A
question on an existing store needs only that. So the backend opens its table here and reads through
`ReadTable` (the read calls of lancedb's AsyncTable, each the one native call lancedb's own makes); the Python
layer is imported (in a worker thread, never on the event loop) only when a write or another operation needs
it, and then wraps the same native handle in `lancedb.table.AsyncTable`, as lancedb itself does.

The extension's API is private: this path is taken only with the lancedb releases it was checked against
(`VERIFIED_RELEASES`; the store contract tests run on it), else the backend uses `lancedb` as before.
MINI_LANCEDB_NATIVE=0 turns it off. Loading the extension a second time panics (it initialises a global
logger), so the module loaded here is the one a later `import lancedb` gets: a meta-path finder hands it
over, and the import system binds it to the package as for any submodule; a user's own `lancedb` is intact.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.metadata
import importlib.util
import os
import sys
import threading
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import numpy as np
import pyarrow as pa

EXTENSION = "lancedb._lancedb"
# Releases whose extension signatures (connect's positional arguments, open_table's keywords, the query
# builder's methods) match what this module calls; checked by tests/stores/test_contracts.py.
VERIFIED_RELEASES = ("0.40.",)

_lock = threading.Lock()
_loaded: list[ModuleType | None] = []  # [] until first asked; then [module] or [None] (path not usable)


def usable_release(version: str) -> bool:
    return version.startswith(VERIFIED_RELEASES)


def extension() -> ModuleType | None:
    """LanceDB's extension module, loaded without the `lancedb` package when needed; None when the fast path
    is off (MINI_LANCEDB_NATIVE=0, an unverified release). Blocking (~20 ms the first time): call from a
    thread."""
    with _lock:
        if not _loaded:
            _loaded.append(_load())
        return _loaded[0]


def _load() -> ModuleType | None:
    if os.environ.get("MINI_LANCEDB_NATIVE", "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    try:
        if not usable_release(importlib.metadata.version("lancedb")):
            return None
    except importlib.metadata.PackageNotFoundError:
        return None
    loaded = sys.modules.get(EXTENSION)
    if loaded is not None:  # `lancedb` is imported already: its extension is the one to use
        return loaded
    package = importlib.util.find_spec("lancedb")  # finds the package without importing it
    locations = package.submodule_search_locations if package is not None else None
    spec = importlib.machinery.PathFinder.find_spec(EXTENSION, list(locations or []))
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.meta_path.insert(0, _HandOver(module))
    return module


class _HandOver(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Gives `import lancedb` the extension module already loaded, instead of loading it a second time."""

    def __init__(self, module: ModuleType) -> None:
        self.module = module

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != EXTENSION:
            return None
        return importlib.util.spec_from_loader(fullname, self, origin=getattr(self.module, "__file__", None))

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return self.module

    def exec_module(self, module: ModuleType) -> None:
        pass  # initialised when it was loaded


async def connect(native: ModuleType, path: str, *, read_consistency_s: float) -> Any:
    """A native connection to the local directory `path` (what `lancedb.connect_async(path,
    read_consistency_interval=...)` wraps)."""
    # uri, api_key, region, host_override, sql_host_override, read_consistency_interval_secs, client_config,
    # storage_options, session, manifest_enabled, namespace_client_properties, oauth_config
    return await native.connect(
        path, None, None, None, None, read_consistency_s, None, None, None, False, None, None
    )


async def open_table(connection: Any, name: str) -> Any:
    """The native table `name`; ValueError "... was not found" when there is none, as `AsyncConnection`."""
    return await connection.open_table(
        name,
        namespace_path=[],
        storage_options=None,
        index_cache_size=None,
        location=None,
        namespace_client=None,
        managed_versioning=None,
    )


def _arrow_vector(vector: Any) -> pa.Array:
    # Not pa.array(ndarray): that probes for pandas and imports it (~0.3 s) on first use.
    values = np.ascontiguousarray(vector, dtype=np.float32)
    return pa.Array.from_buffers(pa.float32(), len(values), [None, pa.py_buffer(values)])


class ReadTable:
    """The read-only part of lancedb's `AsyncTable` API, over a native table handle (same calls, same
    results): what searches, counts and the keyword cache use, so they work on either."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle

    def query(self) -> ReadQuery:
        return ReadQuery(self.handle.query())

    async def schema(self) -> pa.Schema:
        return await self.handle.schema()

    async def version(self) -> int:
        return int(await self.handle.version())

    async def count_rows(self, filter: str | None = None) -> int:
        return int(await self.handle.count_rows(filter))

    async def list_indices(self) -> Any:
        return await self.handle.list_indices()


class ReadQuery:
    """lancedb's AsyncQuery / AsyncVectorQuery / AsyncFTSQuery builder calls, on the native builder (each
    method of lancedb's wraps exactly one native call; blob columns, rerankers and expressions, which this
    package does not use, are left out)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def nearest_to(self, vector: Any) -> ReadQuery:
        """One vector, or a list of vectors searched in the same scan (results carry `query_index`)."""
        several = isinstance(vector, list) and len(vector) > 0 and not isinstance(vector[0], float | int)
        vectors = vector if several else [vector]
        inner = self._inner.nearest_to(_arrow_vector(vectors[0]))
        for other in vectors[1:]:
            inner.add_query_vector(_arrow_vector(other))
        return ReadQuery(inner)

    def nearest_to_text(self, query: str, columns: str | list[str] | None = None) -> ReadQuery:
        names = [columns] if isinstance(columns, str) else list(columns or [])
        return ReadQuery(self._inner.nearest_to_text({"query": query, "columns": names}))

    def distance_type(self, distance: str) -> ReadQuery:
        self._inner.distance_type(distance)
        return self

    def select(self, columns: list[str]) -> ReadQuery:
        self._inner.select_columns(columns)
        return self

    def limit(self, limit: int) -> ReadQuery:
        self._inner.limit(limit)
        return self

    def where(self, predicate: str) -> ReadQuery:
        self._inner.where(predicate)
        return self

    async def to_arrow(self) -> pa.Table:
        stream = await self._inner.execute(max_batch_length=None, timeout=None)
        batches = [batch async for batch in stream]
        return pa.Table.from_batches(batches, schema=stream.schema)
