"""Store URIs to backends: the built-in scheme table and third-party backends from the `mini.stores` entry points."""

from __future__ import annotations

import importlib.metadata
import sys
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest

from mini import _registry
from mini.errors import ConfigurationError
from mini.stores.base import Record, VectorStore, create_backend
from mini.stores.filters import Filter, matches
from mini.types import RetrievalResult


class FakeBackend:
    """A plug-in backend as a third-party package would ship it: rows in a dict, dot-product scores."""

    supports_hybrid: ClassVar[bool] = False
    made: ClassVar[list[FakeBackend]] = []

    def __init__(self, uri: str, *, collection_name: str, dimension: int | None, token: str | None) -> None:
        self.uri, self.collection_name, self.token = uri, collection_name, token
        self._dimension = dimension
        self.rows: dict[str, Record] = {}
        FakeBackend.made.append(self)

    @property
    def dimension(self) -> int | None:
        return self._dimension

    async def insert(self, records: Sequence[Record]) -> None:
        await self.upsert(records)

    async def upsert(self, records: Sequence[Record]) -> None:
        self.rows.update((r.id, r) for r in records)
        self._dimension = len(records[0].vector)

    async def search(
        self, vector: Sequence[float], *, top_k: int, filter: Filter | None = None
    ) -> list[RetrievalResult]:
        return (await self.search_many([vector], top_k=top_k, filter=filter))[0]

    async def search_many(
        self, vectors: Sequence[Sequence[float]], *, top_k: int, filter: Filter | None = None
    ) -> list[list[RetrievalResult]]:
        rankings = []
        for vector in vectors:
            hits = [
                RetrievalResult(
                    r.id, r.text, float(sum(a * b for a, b in zip(vector, r.vector, strict=True))), r.metadata
                )
                for r in self.rows.values()
                if matches(filter, r.metadata)
            ]
            rankings.append(sorted(hits, key=lambda hit: -hit.score)[:top_k])
        return rankings

    async def keyword_search(
        self, text: str, *, top_k: int, filter: Filter | None = None
    ) -> list[RetrievalResult]:
        raise NotImplementedError

    async def delete(self, *, ids: Sequence[str] | None = None, filter: Filter | None = None) -> int:
        gone = [
            i for i, r in self.rows.items() if i in (ids or ()) or (filter and matches(filter, r.metadata))
        ]
        for i in gone:
            del self.rows[i]
        return len(gone)

    async def replace(self, records: Sequence[Record], *, scope: Filter) -> int:
        raise NotImplementedError

    async def get(
        self, *, ids: Sequence[str] | None = None, filter: Filter | None = None, **_: Any
    ) -> list[Record]:  # vectors always included, no `limit`: these tests need neither
        return [r for r in self.rows.values() if (ids is None or r.id in ids) and matches(filter, r.metadata)]

    async def count(self, filter: Filter | None = None) -> int:
        return len(await self.get(filter=filter))

    async def existing_ids(self, ids: Sequence[str]) -> set[str]:
        return set(ids) & set(self.rows)

    async def drop(self) -> None:
        self.rows.clear()

    async def aclose(self) -> None:
        pass


class NotABackend:
    def __init__(self, uri: str, **kwargs: Any) -> None:
        self.uri = uri


@pytest.fixture
def plugins(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Entry points of group `mini.stores` as installed packages would declare them (name -> "module:Class")."""
    module = types.ModuleType("fake_mini_store_plugin")
    module.FakeBackend = FakeBackend  # type: ignore[attr-defined]
    module.NotABackend = NotABackend  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    declared: dict[str, str] = {}
    real = importlib.metadata.entry_points

    def entry_points(**params: Any) -> Any:
        if params.get("group") != _registry.STORE_ENTRY_POINTS:
            return real(**params)
        return importlib.metadata.EntryPoints(
            importlib.metadata.EntryPoint(name, value, _registry.STORE_ENTRY_POINTS)
            for name, value in declared.items()
        )

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    FakeBackend.made.clear()
    return declared


@pytest.mark.parametrize(
    ("uri", "kind"),
    [
        ("./mini_data", "lancedb"),
        ("/abs/dir", "lancedb"),
        ("LanceDB://./x", "lancedb"),
        ("milvus://host:19530", "milvus"),
        ("http://host:19530", "milvus"),
        ("https://x.zillizcloud.com", "milvus"),
        ("./data/milvus.db", "milvus"),
        ("qdrant://host:6333", "qdrant"),
        ("qdrants://host:6333", "qdrant"),
        ("qdrant+path:///tmp/q", "qdrant"),
        (":memory:", "qdrant"),
    ],
)
def test_built_in_schemes(uri: str, kind: str) -> None:
    assert _registry.store_kind(uri) == kind
    assert _registry.store_entry(uri) is _registry.STORES[kind]


async def test_a_plug_in_registers_a_scheme_through_entry_points(plugins: dict[str, str]) -> None:
    plugins["fakestore"] = "fake_mini_store_plugin:FakeBackend"
    assert _registry.store_kind("FakeStore://index") == "fakestore"
    store = VectorStore("fakestore://index", collection_name="docs", token="secret")
    (backend,) = FakeBackend.made
    assert store.backend is backend
    assert (backend.uri, backend.collection_name, backend.token) == ("fakestore://index", "docs", "secret")
    await store.insert_async([[1.0, 0.0], [0.0, 1.0]], ["a", "b"], [{"source": "x"}, {"source": "y"}])
    hits = await store.search_async([0.0, 1.0], top_k=1, filter={"source": "y"})
    assert [hit.text for hit in hits] == ["b"]


def test_built_in_schemes_cannot_be_taken_over(plugins: dict[str, str], tmp_path: Path) -> None:
    plugins["lancedb"] = "fake_mini_store_plugin:FakeBackend"
    plugins["qdrant"] = "fake_mini_store_plugin:FakeBackend"
    assert _registry.store_kind("lancedb://x") == "lancedb"
    backend = create_backend(f"lancedb://{tmp_path}", collection_name="docs", dimension=None, token=None)
    assert type(backend).__name__ == "LanceDBBackend"
    assert not FakeBackend.made


def test_unknown_schemes_name_the_entry_point_group(plugins: dict[str, str]) -> None:
    plugins["fakestore"] = "fake_mini_store_plugin:FakeBackend"
    with pytest.raises(ConfigurationError, match=r"unknown store URI scheme 'pinecone'.*'mini\.stores'"):
        _registry.store_kind("pinecone://index")
    # A URI ending in .db has always meant Milvus Lite, whatever comes before it.
    assert _registry.store_kind("file://data/x.db") == "milvus"


def test_a_plug_in_that_is_not_a_backend_is_refused(plugins: dict[str, str]) -> None:
    plugins["broken"] = "fake_mini_store_plugin:NotABackend"
    plugins["missing"] = "fake_mini_store_plugin:Nowhere"
    with pytest.raises(ConfigurationError, match="does not implement VectorStoreBackend"):
        create_backend("broken://x", collection_name="docs", dimension=None, token=None)
    with pytest.raises(AttributeError):
        create_backend("missing://x", collection_name="docs", dimension=None, token=None)
