"""MilvusBackend beyond the store contract (tests/stores/test_contracts.py): the filter translator as pure
functions, URIs and names, Milvus's own limits, the Milvus Lite child process, keyword search on Lite (no
stemmer, the server code path, old collections), errors and secrets."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from mini.errors import (
    ConfigurationError,
    DuplicateIdError,
    InvalidInputError,
    StoreError,
    UnsupportedOperationError,
)
from mini.stores.base import Record, VectorStore, VectorStoreBackend
from mini.stores.filters import And, Compare, In, Or
from mini.stores.milvus import _ANALYZER, MilvusBackend, _LiteServer, map_milvus_errors
from mini.stores.milvus.expr import id_in, kind_of, literal, quote, to_expr
from mini.stores.sparse import ENGLISH_STOP_WORDS
from mini.testing.contracts import KEYWORD_ROWS, rows, unit
from tests.stores.conftest import assert_keyword_searches_coalesce

Make = Callable[..., MilvusBackend]


@pytest.fixture
async def make(milvus_lite_uri: str) -> AsyncIterator[Make]:
    """Backends on the session's Milvus Lite file (one child process for the run), under collection names of
    this test only; dropped and closed afterwards."""
    prefix = f"t{uuid.uuid4().hex[:8]}_"
    made: list[MilvusBackend] = []

    def factory(name: str = "t", uri: str | None = None, **kwargs: Any) -> MilvusBackend:
        made.append(MilvusBackend(uri or milvus_lite_uri, collection_name=prefix + name, **kwargs))
        return made[-1]

    yield factory
    for backend in made:
        if backend.path is not None:
            await backend.drop()
        await backend.aclose()


@contextmanager
def lite_url(path: str) -> Iterator[str]:
    """The URL of the Lite server our backends use for `path`, held open for the block."""
    url = _LiteServer.acquire(path)
    try:
        yield url
    finally:
        _LiteServer.release(path)


def describe(path: str, collection: str) -> dict[str, Any]:
    from pymilvus import MilvusClient

    with lite_url(path) as url:
        client = MilvusClient(uri=url)
        try:
            return dict(client.describe_collection(collection))
        finally:
            client.close()


def collections(path: str) -> list[str]:
    from pymilvus import MilvusClient

    with lite_url(path) as url:
        client = MilvusClient(uri=url)
        try:
            return list(client.list_collections())
        finally:
            client.close()


def ids(hits: list[Any]) -> list[str]:
    return [h.id for h in hits]


# --- the translator, as pure functions -------------------------------------------------------------------


def test_quote_escapes_quotes_backslashes_and_line_breaks_and_keeps_unicode_raw() -> None:
    assert quote("it's") == '"it\'s"'
    assert quote('say "hi"') == '"say \\"hi\\""'
    assert quote("back\\slash") == '"back\\\\slash"'
    assert quote("a\nb\rc\td") == '"a\\nb\\rc\\td"'
    assert quote('" or 1==1 or "') == '"\\" or 1==1 or \\""'
    assert quote("naïve 😀") == '"naïve 😀"'
    with pytest.raises(InvalidInputError):
        quote("bad \ud800 surrogate")


def test_literals_keep_types_apart_and_reject_what_milvus_cannot_hold() -> None:
    assert literal(True) == "true"
    assert literal(False) == "false"
    assert literal(1) == "1"
    assert literal(-5) == "-5"
    assert literal(2.5) == "2.5"
    assert literal(1e-05) == "1e-05"
    assert literal(2**63 - 1) == str(2**63 - 1)
    for bad in (2**63, -(2**63), math.nan, math.inf, -math.inf):
        with pytest.raises(InvalidInputError):
            literal(bad)


def test_id_and_source_use_plain_columns() -> None:
    assert to_expr(Compare("id", "eq", 'a"b')) == 'id == "a\\"b"'
    assert to_expr(In("id", ("a", "b"), negate=True)) == 'id not in ["a", "b"]'
    assert to_expr(Compare("id", "gte", "k")) == 'id >= "k"'
    assert id_in(["x", "y"]) == 'id in ["x", "y"]'
    assert to_expr(Compare("source", "eq", "a.pdf")) == 'source == "a.pdf"'
    assert to_expr(In("source", ("a.pdf", "b.pdf"))) == 'source in ["a.pdf", "b.pdf"]'
    # Rows without a string source hold "" in the column: only the marker keeps them out.
    assert to_expr(Compare("source", "eq", "")) == '(has_source and source == "")'
    assert to_expr(Compare("source", "lt", "b")) == '(has_source and source < "b")'
    with pytest.raises(InvalidInputError):
        to_expr(Compare("id", "eq", 3))
    with pytest.raises(InvalidInputError):
        id_in([])


def test_source_ne_nin_and_non_string_values_read_the_json() -> None:
    assert to_expr(Compare("source", "ne", "a")).startswith('(exists kinds["source"] and not ')
    assert 'metadata["source"] == 1' in to_expr(Compare("source", "eq", 1))
    assert "kinds" in to_expr(In("source", ("a", 1)))


def test_metadata_comparisons_are_guarded_by_the_stored_kind() -> None:
    assert to_expr(Compare("n", "eq", 1)) == '(kinds["n"] == "n" and (metadata["n"] == 1))'
    assert to_expr(Compare("f", "eq", True)) == '(kinds["f"] == "b" and (metadata["f"] == true))'
    assert to_expr(Compare("n", "ne", 1)) == (
        '(exists kinds["n"] and not (kinds["n"] == "n" and (metadata["n"] == 1)))'
    )
    assert to_expr(Compare("d", "gt", "2024")) == '(kinds["d"] == "s" and metadata["d"] > "2024")'
    # `in` on a JSON path is not accepted by Milvus Lite: membership is a chain of ==, grouped by type.
    assert to_expr(In("x", ("a", 1, "b"))) == (
        '((kinds["x"] == "s" and (metadata["x"] == "a" or metadata["x"] == "b"))'
        ' or (kinds["x"] == "n" and (metadata["x"] == 1)))'
    )
    assert to_expr(In("x", ("a",), negate=True)).startswith('(exists kinds["x"] and not ')
    both = to_expr(And((Compare("a", "eq", "x"), Or((Compare("id", "eq", "i"), Compare("b", "lt", 2))))))
    assert both.startswith("((kinds") and ' and (id == "i" or (kinds["b"] == "n"' in both


def test_field_names_are_quoted_too() -> None:
    assert to_expr(Compare("naïve.key-1", "eq", "v")) == (
        '(kinds["naïve.key-1"] == "s" and (metadata["naïve.key-1"] == "v"))'
    )


def test_invalid_filter_values_are_rejected_before_any_io() -> None:
    with pytest.raises(InvalidInputError):
        to_expr(Compare("flag", "gt", False))
    for bad in (math.nan, math.inf, 2**64):
        with pytest.raises(InvalidInputError):
            to_expr(Compare("n", "gte", bad))
        with pytest.raises(InvalidInputError):
            to_expr(In("n", (1, bad)))
    with pytest.raises(InvalidInputError):
        to_expr(In("source", ("ok", "\udfff")))


def test_kind_of_tells_booleans_from_numbers() -> None:
    assert [kind_of(v) for v in (True, 1, 1.5, "x", None, [1], {"a": 1})] == [
        "b",
        "n",
        "n",
        "s",
        "z",
        "a",
        "o",
    ]


# --- construction ----------------------------------------------------------------------------------------


def test_backend_satisfies_the_protocol_and_declares_capabilities(tmp_path: Path) -> None:
    backend = MilvusBackend(str(tmp_path / "x.db"))
    assert isinstance(backend, VectorStoreBackend)
    assert backend.supports_hybrid is True  # Milvus's BM25 function (tests/stores/test_keyword_milvus.py)


def test_construction_does_no_io_and_parses_uris_and_names(tmp_path: Path) -> None:
    target = tmp_path / "not" / "yet.db"
    lite = MilvusBackend(str(target), collection_name="docs_v2", dimension=8)
    assert not (tmp_path / "not").exists()
    assert lite.path == str(target)
    assert lite.url is None
    assert lite.dimension == 8
    assert lite.index_type == "FLAT"
    assert MilvusBackend("milvus://db.example:19530").url == "http://db.example:19530"
    assert MilvusBackend(f"milvus://{target}").path == str(target)
    server = MilvusBackend("https://in01.zillizcloud.com:19538", token="t")
    assert (server.url, server.path, server.index_type) == (
        "https://in01.zillizcloud.com:19538",
        None,
        "AUTOINDEX",
    )
    assert "s3cret" not in repr(MilvusBackend("https://user:s3cret@host:19530"))
    for bad in ["", "docs-v2", "a b", "../x", "naïve", "1abc", "x;drop"]:
        with pytest.raises(InvalidInputError):
            MilvusBackend(str(target), collection_name=bad)
    with pytest.raises(InvalidInputError):
        MilvusBackend(str(target), dimension=0)
    with pytest.raises(ConfigurationError):
        MilvusBackend("milvus://")
    with pytest.raises(ConfigurationError):
        MilvusBackend(str(tmp_path / "dir"))


def test_importing_the_backend_does_not_import_pymilvus() -> None:
    code = "import sys, mini, mini.stores.milvus; assert 'pymilvus' not in sys.modules, 'pymilvus imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_the_registry_and_facade_pick_milvus_for_db_paths(tmp_path: Path) -> None:
    store = VectorStore(uri=str(tmp_path / "f.db"), collection_name="f")
    assert isinstance(store.backend, MilvusBackend)


# --- Milvus Lite: limits, the child process, foreign collections ------------------------------------------


async def test_reads_of_a_missing_collection_create_nothing(make: Make, milvus_lite_uri: str) -> None:
    backend = make()
    assert await backend.count() == 0
    assert await backend.get() == []
    await backend.drop()
    assert backend.collection_name not in await asyncio.to_thread(collections, milvus_lite_uri)


async def test_milvus_limits_are_invalid_input_before_writing(make: Make) -> None:
    backend = make()
    bad_rows = [
        Record("a", unit(0), "x", {"huge": [2**64]}),
        Record("a", unit(0), "é" * 40_000),  # 80,000 UTF-8 bytes: more than a Milvus VARCHAR holds
        Record("x" * 513, unit(0), "x"),
        Record("a", unit(0), "x", {"source": "s" * 70_000}),
    ]
    for record in bad_rows:
        with pytest.raises(InvalidInputError):
            await backend.insert([record])
    assert await backend.count() == 0
    await backend.insert([Record("a", unit(0), "é" * 30_000)])
    assert len((await backend.search(unit(0), top_k=1))[0].text) == 30_000
    with pytest.raises(InvalidInputError):
        await backend.keyword_search("zebra", top_k=16_385)  # Milvus's limit on hits per query
    with pytest.raises(InvalidInputError):
        await backend.keyword_search("lone \ud800 surrogate", top_k=1)


async def test_the_lite_child_stops_with_the_last_backend_and_restarts_on_use(tmp_path: Path) -> None:
    path = str(tmp_path / "own.db")
    backend, other = MilvusBackend(path, collection_name="t"), MilvusBackend(path, collection_name="t")
    await backend.insert(rows(2))
    assert await other.count() == 2
    await backend.aclose()
    assert path in _LiteServer._servers  # still open for the other object
    await other.aclose()
    assert path not in _LiteServer._servers  # the last one closed: the child process stopped
    assert await backend.count() == 2  # and the next call starts it again
    await backend.aclose()
    assert path not in _LiteServer._servers


@pytest.mark.slow
def test_another_process_reopens_the_file_and_reads_it(tmp_path: Path) -> None:
    # Milvus Lite allows one process per file: the writer exits, then a new process must load the collection.
    script = textwrap.dedent(
        """
        import asyncio, sys
        from mini.stores.base import Record
        from mini.stores.milvus import MilvusBackend
        async def main():
            backend = MilvusBackend(sys.argv[1], collection_name="t")
            if sys.argv[2] == "write":
                await backend.insert([Record(f"r{i}", [float(i == j) for j in range(6)], "t", {"n": i}) for i in range(4)])
            else:
                hit = (await backend.search([0.0, 1.0, 0, 0, 0, 0], top_k=1))[0]
                print(await backend.count(), backend.dimension, hit.id, hit.metadata["n"])
        asyncio.run(main())
        """
    )
    path = str(tmp_path / "p.db")
    subprocess.run([sys.executable, "-c", script, path, "write"], check=True, timeout=60)
    out = subprocess.run(
        [sys.executable, "-c", script, path, "read"], check=True, timeout=60, capture_output=True, text=True
    )
    assert out.stdout.split() == ["4", "6", "r1", "1"]


async def test_a_foreign_collection_raises_store_error(make: Make, milvus_lite_uri: str) -> None:
    backend = make()

    def create() -> None:  # pymilvus's quick setup: id and vector fields, no metadata/kinds
        from pymilvus import MilvusClient

        with lite_url(milvus_lite_uri) as url:
            client = MilvusClient(uri=url)
            try:
                client.create_collection(
                    backend.collection_name, dimension=4, id_type="string", max_length=64
                )
            finally:
                client.close()

    await asyncio.to_thread(create)
    with pytest.raises(StoreError, match="not created by this backend"):
        await backend.count()


# --- errors and secrets ----------------------------------------------------------------------------------


async def test_map_milvus_errors_translates_chains_and_redacts() -> None:
    from pymilvus.exceptions import MilvusException

    original = MilvusException(message="boom with sk-secret-123 inside")
    with pytest.raises(StoreError) as info, map_milvus_errors("search", secret="sk-secret-123"):
        raise original
    assert info.value.__cause__ is original
    assert str(info.value) == "Milvus search failed: boom with *** inside"
    with pytest.raises(DuplicateIdError), map_milvus_errors("insert"):
        raise DuplicateIdError(["x"])
    with pytest.raises(KeyError), map_milvus_errors("insert"):
        raise KeyError("a bug of ours is not a store failure")


async def test_unreachable_servers_fail_fast_without_leaking_the_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    token = "sk-secret-123"
    refused = MilvusBackend("http://127.0.0.1:1", collection_name="docs", token=token)
    assert token not in repr(refused)
    started = time.monotonic()
    with pytest.raises(StoreError) as info:
        await refused.count()
    assert time.monotonic() - started < 5
    assert token not in str(info.value)
    assert str(info.value).startswith("Milvus open collection failed")
    # A server that accepts connections but never answers: the connect timeout ends the wait.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        port = silent.getsockname()[1]
        hanging = MilvusBackend(f"milvus://127.0.0.1:{port}", token=token, connect_timeout=1.0)
        started = time.monotonic()
        with pytest.raises(StoreError) as info:
            await hanging.search([1.0, 0.0], top_k=1)
        assert time.monotonic() - started < 5
        assert token not in str(info.value) and token not in repr(hanging)
        await hanging.aclose()
    finally:
        silent.close()
    await refused.aclose()
    assert token not in caplog.text


async def test_lite_refuses_a_file_another_process_holds(tmp_path: Path) -> None:
    path = str(tmp_path / "held.db")
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sys, time; from milvus_lite.db import MilvusLite; MilvusLite(sys.argv[1]); "
        "print('ready', flush=True); time.sleep(60)",
        path,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        assert await asyncio.wait_for(holder.stdout.readline(), 60) == b"ready\n"
        with pytest.raises(StoreError, match=r"one process per \.db path"):
            await MilvusBackend(path).count()
    finally:
        holder.kill()
        await holder.wait()


# --- keyword search on Lite ------------------------------------------------------------------------------


async def keyword_rows(backend: MilvusBackend) -> MilvusBackend:
    await backend.insert([Record(i, unit(n), text, meta) for n, (i, text, meta) in enumerate(KEYWORD_ROWS)])
    return backend


async def test_lite_drops_stop_words_but_does_not_stem(make: Make, milvus_lite_uri: str) -> None:
    backend = make()
    await backend.insert(
        [
            Record("run1", unit(0), "The council runs the schedule."),
            Record("run2", unit(1), "Running the parks."),
        ]
    )
    assert await backend.keyword_search("the and of", top_k=5) == []
    # Milvus Lite 3.2 has no stemmer: only the exact forms match ...
    assert ids(await backend.keyword_search("running", top_k=10)) == ["run2"]
    assert ids(await backend.keyword_search("runs", top_k=10)) == ["run1"]
    # ... while the collection asks for the English stemmer, which servers apply.
    described = await asyncio.to_thread(describe, milvus_lite_uri, backend.collection_name)
    fields = {f["name"]: f for f in described["fields"]}
    params = json.loads(fields["text"]["params"]["analyzer_params"])
    assert params == _ANALYZER
    assert {"type": "stemmer", "language": "english"} in params["filter"]
    assert params["filter"][1] == {"type": "stop", "stop_words": sorted(ENGLISH_STOP_WORDS)}


async def test_concurrent_keyword_searches_share_requests(make: Make) -> None:
    backend = await keyword_rows(make())
    await assert_keyword_searches_coalesce(
        backend, backend._keyword_searches, ["zebra", "council", "parks", "town"]
    )


async def test_the_server_code_path_searches_the_same(make: Make, milvus_lite_uri: str) -> None:
    # A collection made through a .db path, read by the server code path through that file's own Lite server:
    # describe, load and the text search request agree. (The whole contract over the server path, creation
    # included: the milvus-lite-server target of tests/stores/test_contracts.py.)
    lite = await keyword_rows(make())
    flt = Compare("year", "lt", 2023)
    expected = await lite.keyword_search("zebra budget", top_k=5, filter=flt)
    with lite_url(milvus_lite_uri) as url:
        server = MilvusBackend(url, collection_name=lite.collection_name)
        assert server.path is None and server.url == url
        got = await server.keyword_search("zebra budget", top_k=5, filter=flt)
        await server.aclose()
    assert ids(got) == ids(expected) and set(ids(got)) == {"k0", "k1", "k2"}
    assert [h.score for h in got] == pytest.approx([h.score for h in expected])


def _create_old_collection(url: str, name: str) -> None:
    """The collection as this backend made it before keyword search: no analyzer, no sparse field, no BM25."""
    from pymilvus import CollectionSchema, DataType, FieldSchema, MilvusClient

    schema = CollectionSchema(
        [
            FieldSchema("id", DataType.VARCHAR, is_primary=True, auto_id=False, max_length=512),
            FieldSchema("vector", DataType.FLOAT_VECTOR, dim=4),
            FieldSchema("text", DataType.VARCHAR, max_length=65_535),
            FieldSchema("source", DataType.VARCHAR, max_length=65_535),
            FieldSchema("has_source", DataType.BOOL),
            FieldSchema("metadata", DataType.JSON),
            FieldSchema("kinds", DataType.JSON),
        ],
        enable_dynamic_field=False,
    )
    client = MilvusClient(uri=url)
    try:
        client.create_collection(name, schema=schema, consistency_level="Strong")
        index = MilvusClient.prepare_index_params()
        index.add_index("vector", index_type="FLAT", metric_type="COSINE")
        client.create_index(name, index, sync=False)
    finally:
        client.close()


async def test_a_collection_without_the_bm25_field_raises_and_still_works_for_dense(
    make: Make, milvus_lite_uri: str
) -> None:
    backend = make()
    with lite_url(milvus_lite_uri) as url:
        await asyncio.to_thread(_create_old_collection, url, backend.collection_name)
        with pytest.raises(UnsupportedOperationError, match="Re-create it"):
            await backend.keyword_search("quokka", top_k=3)
        await backend.upsert([Record("old", unit(1), "a quokka", {"source": "o.md"})])
        assert ids(await backend.search(unit(1), top_k=1)) == ["old"]
        # The server code path reads the same schema and refuses the same way.
        server = MilvusBackend(url, collection_name=backend.collection_name)
        with pytest.raises(UnsupportedOperationError):
            await server.keyword_search("quokka", top_k=3)
        await server.aclose()
    await backend.drop()  # re-created, it has keyword search
    await backend.upsert([Record("new", unit(1), "a quokka", {"source": "n.md"})])
    assert ids(await backend.keyword_search("quokka", top_k=3)) == ["new"]
