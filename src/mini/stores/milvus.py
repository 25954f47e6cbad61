"""The Milvus backend: Milvus Lite for a `*.db` path, a Milvus server, cluster or Zilliz Cloud for a URL."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import logging
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar, Protocol
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from mini._batching import Coalescer
from mini._portal import PerLoop
from mini.errors import (
    ConfigurationError,
    DimensionMismatchError,
    DuplicateIdError,
    InvalidInputError,
    MiniError,
    StoreError,
    UnsupportedOperationError,
)
from mini.stores._rows import json_default, vector_matrix
from mini.stores.base import Record
from mini.stores.filters import Filter
from mini.stores.milvus_expr import (
    HAS_SOURCE_FIELD,
    ID_FIELD,
    KINDS_FIELD,
    METADATA_FIELD,
    SOURCE_FIELD,
    id_in,
    kind_of,
    quote,
    to_expr,
)
from mini.stores.sparse import ENGLISH_STOP_WORDS, tokenize
from mini.types import RetrievalResult

logger = logging.getLogger("mini.stores")

# Milvus names: a letter or '_' first, then letters, digits and '_' (no '-', unlike LanceDB).
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")
_VECTOR = "vector"
_TEXT = "text"
# Keyword search: Milvus's BM25 function turns `text` into a sparse term-frequency vector in `_SPARSE` on every
# write and the query text into one at search time; the index scores them with BM25 (k1 1.2, b 0.75).
_SPARSE = "text_bm25"
_BM25_FUNCTION = "text_bm25"
# English analysis: the standard tokenizer, lowercase, our stop words (an explicit list, which Milvus Lite
# also reads; it does not know "_english_") and the English stemmer. Milvus Lite 3.2 implements the tokenizer,
# lowercasing and stop words and ignores the stemmer (it has no stemming): on Lite "runs" does not find
# "running"; on servers it does.
_ANALYZER: dict[str, Any] = {
    "tokenizer": "standard",
    "filter": [
        "lowercase",
        {"type": "stop", "stop_words": sorted(ENGLISH_STOP_WORDS)},
        {"type": "stemmer", "language": "english"},
    ],
}
_BM25_PARAMS = {"bm25_k1": 1.2, "bm25_b": 0.75}
_MAX_ID_BYTES = 512
_MAX_VARCHAR_BYTES = 65_535  # Milvus's VARCHAR limit, counted in UTF-8 bytes
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1  # JSON integers Milvus can store
# Ids per `id in [...]` predicate, rows per write request and rows per page of a `get`: keeps expressions
# and gRPC messages small (a page of 1,000 x 384 floats is 1.5 MB; servers refuse > 16,384 rows per query).
_ID_BATCH = 1_000
_WRITE_ROWS = 1_000
_PAGE_ROWS = 1_000
_MAX_TOP_K = 16_384  # Milvus's limit on hits per query vector
# Converting big batches (vectors, JSON) holds the GIL: above this many floats it runs in a worker thread.
_THREAD_MIN_FLOATS = 250_000
# Milvus Lite is one process per path and not meant to be hammered concurrently: calls on one path take turns.
_lite_locks: dict[str, threading.Lock] = {}
_LITE_START_TIMEOUT_S = 60.0


class _LiteServer:
    """The Milvus Lite server of one `.db` path in a child process (see `mini.stores._milvus_lite_server`),
    shared by every backend object on that path in this process and stopped when the last one closes."""

    _servers: ClassVar[dict[str, _LiteServer]] = {}
    _registry = threading.Lock()

    def __init__(self, path: str) -> None:
        self.path = path
        self.users = 0
        self.url = ""
        self._process: subprocess.Popen[str] | None = None

    @classmethod
    def acquire(cls, path: str) -> str:
        """The server's URL, starting it if needed. Blocking (up to a few seconds): call from a thread."""
        with cls._registry:
            server = cls._servers.get(path)
            if server is None:
                server = cls._servers[path] = cls(path)
            server.users += 1
            try:
                if server._process is None or server._process.poll() is not None:
                    server._start()
            except BaseException:
                server.users -= 1
                if server.users == 0:
                    cls._servers.pop(path, None)
                raise
            return server.url

    @classmethod
    def release(cls, path: str) -> None:
        with cls._registry:
            server = cls._servers.get(path)
            if server is None:
                return
            server.users -= 1
            if server.users <= 0:
                cls._servers.pop(path, None)
                server._stop()

    @classmethod
    def stop_all(cls) -> None:
        with cls._registry:
            servers, cls._servers = list(cls._servers.values()), {}
        for server in servers:
            server._stop()

    def _start(self) -> None:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)  # Lite refuses a missing parent directory
        process = subprocess.Popen(
            [sys.executable, "-m", "mini.stores._milvus_lite_server", self.path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        # The first line is the port; a child that fails to start (the path is locked by another process,
        # milvus-lite missing) closes stdout instead, and its stderr says why. A watchdog bounds the wait.
        watchdog = threading.Timer(_LITE_START_TIMEOUT_S, process.kill)
        watchdog.start()
        try:
            assert process.stdout is not None
            line = process.stdout.readline().strip()
        finally:
            watchdog.cancel()
        if not line.isdigit():
            process.kill()
            _, stderr = process.communicate(timeout=10)
            last = (stderr or "").strip().splitlines()[-1:] or ["no output"]
            raise StoreError(
                f"Milvus Lite server for {self.path} did not start: {last[0]} "
                "(Milvus Lite allows one process per .db path: is another process using it?)"
            )
        self._process = process
        self.url = f"http://127.0.0.1:{int(line)}"
        logger.debug("Milvus Lite server for %s started at %s (pid %d)", self.path, self.url, process.pid)

    def _stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        with contextlib.suppress(OSError):
            assert process.stdin is not None
            process.stdin.close()  # the child's cue to stop and close its data files
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


atexit.register(_LiteServer.stop_all)


def _redact(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text


@contextlib.contextmanager
def map_milvus_errors(action: str, *, secret: str | None = None) -> Iterator[None]:
    """Translate pymilvus/gRPC failures into `StoreError` (ours pass through); `secret` never reaches a message."""
    try:
        yield
    except MiniError:
        raise
    except Exception as exc:
        from pymilvus.exceptions import MilvusException

        grpc_error: tuple[type[BaseException], ...] = ()
        with contextlib.suppress(ImportError):
            import grpc

            grpc_error = (grpc.RpcError,)
        if not isinstance(exc, (MilvusException, OSError, RuntimeError, ValueError, *grpc_error)):
            raise
        detail = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        if "Open local milvus failed" in detail:
            detail += " (Milvus Lite allows one process per .db path: is another process using it?)"
        raise StoreError(_redact(f"Milvus {action} failed: {detail}", secret)) from exc


class _Client(Protocol):
    """What the backend needs from a Milvus client: the client's method `method`, awaited.

    `then` post-processes the result where the call ran (Lite: in the worker thread, so parsing a big answer
    never holds the event loop)."""

    async def call(
        self, method: str, /, *args: Any, then: Callable[[Any], Any] | None = None, **kw: Any
    ) -> Any: ...

    async def aclose(self) -> None: ...


class _LiteClient:
    """Milvus Lite: its server in a child process (`_LiteServer`), reached with the sync `MilvusClient`, every
    call in a worker thread, one call at a time per path.

    Not `AsyncMilvusClient`: Lite's server answers its create_index with UNIMPLEMENTED (DESIGN.md section 7).
    The sync client is not tied to a loop, so one is shared by every loop.
    """

    def __init__(self, path: str, timeout: float) -> None:
        self.path = path
        self._timeout = timeout
        self._client: Any = None
        self._server_url: str | None = None
        self._lock = _lite_locks.setdefault(path, threading.Lock())  # atomic under the GIL
        # Waiters queue on the loop, not in the default executor's few threads.
        self._turns: PerLoop[asyncio.Lock] = PerLoop(asyncio.Lock)

    async def call(
        self, method: str, /, *args: Any, then: Callable[[Any], Any] | None = None, **kw: Any
    ) -> Any:
        async with self._turns.get():
            return await asyncio.to_thread(self._call, method, args, kw, then)

    def _call(
        self, method: str, args: tuple[Any, ...], kw: dict[str, Any], then: Callable[[Any], Any] | None
    ) -> Any:
        with self._lock:
            if self._client is None:
                from pymilvus import MilvusClient

                if self._server_url is None:
                    self._server_url = _LiteServer.acquire(self.path)
                self._client = MilvusClient(uri=self._server_url, timeout=self._timeout)
            result = getattr(self._client, method)(*args, **kw)
            return then(result) if then is not None else result

    async def aclose(self) -> None:
        async with self._turns.get():
            await asyncio.to_thread(self._close)
        self._turns.pop_current()

    def _close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
            if client is not None:
                client.close()
            if self._server_url is not None:
                self._server_url = None
                _LiteServer.release(self.path)  # the child stops when no backend on this path is open


class _ServerClient:
    """A Milvus server, cluster or Zilliz Cloud through `AsyncMilvusClient`, one per event loop (gRPC aio
    channels belong to the loop that made them); each is closed when its loop shuts down."""

    def __init__(self, uri: str, token: str | None, connect_timeout: float) -> None:
        self._uri = uri
        self._token = token
        self._connect_timeout = connect_timeout
        self._clients: PerLoop[Any] = PerLoop(self._new, aclose=lambda client: client.close())

    def _new(self) -> Any:
        from pymilvus import AsyncMilvusClient

        # No I/O here: the client connects on its first call, waiting at most `timeout` for the channel.
        return AsyncMilvusClient(uri=self._uri, token=self._token or "", timeout=self._connect_timeout)

    async def call(
        self, method: str, /, *args: Any, then: Callable[[Any], Any] | None = None, **kw: Any
    ) -> Any:
        result = await getattr(self._clients.get(), method)(*args, **kw)
        return await asyncio.to_thread(then, result) if then is not None else result

    async def aclose(self) -> None:
        await self._clients.aclose_current()


def _parse_uri(uri: str) -> tuple[str | None, str | None]:
    """(Lite path, server URL): exactly one is set."""
    lowered = uri.lower()
    if lowered.startswith(("http://", "https://")):
        return None, uri
    if lowered.startswith("milvus://"):
        rest = uri[len("milvus://") :]
        if not rest:
            raise ConfigurationError("milvus:// needs a host, e.g. milvus://localhost:19530")
        if not rest.lower().endswith(".db"):
            return None, "http://" + rest
        uri = rest
    if not uri.lower().endswith(".db"):
        raise ConfigurationError(
            f"not a Milvus URI: {uri!r} (use http(s)://host:port, milvus://host:port or a .db path)"
        )
    # Resolved now (no I/O) so a later chdir cannot move the store.
    return os.path.abspath(os.path.expanduser(uri)), None


def _shown_url(url: str) -> str:
    """The URL without a password (`https://user:pass@host` is accepted by pymilvus)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _check_ints(value: Any) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        if not _INT_MIN <= value <= _INT_MAX:
            raise InvalidInputError(f"metadata integer {value} does not fit in 64 bits (Milvus JSON limit)")
    elif isinstance(value, list):
        for item in value:
            _check_ints(item)
    elif isinstance(value, dict):
        for item in value.values():
            _check_ints(item)


def _utf8_size(text: str, what: str) -> int:
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InvalidInputError(f"{what} is not valid Unicode") from exc


def _rows(records: Sequence[Record]) -> tuple[int, list[dict[str, Any]]]:
    """(dimension, Milvus rows) for a batch, validated (CPU only: big batches call this in a thread)."""
    ids = [r.id for r in records]
    if len(set(ids)) != len(ids):
        raise InvalidInputError("ids within one write must be unique")
    matrix = vector_matrix(records)
    dump = json.JSONEncoder(ensure_ascii=False, allow_nan=False, default=json_default).encode
    rows = []
    for i, (record, vector) in enumerate(zip(records, matrix, strict=True)):
        if not isinstance(record.id, str) or not record.id:
            raise InvalidInputError(f"id of row {i} must be a non-empty string")
        if _utf8_size(record.id, f"id of row {i}") > _MAX_ID_BYTES:
            raise InvalidInputError(f"id of row {i} is longer than Milvus's {_MAX_ID_BYTES} bytes")
        if not isinstance(record.text, str):
            raise InvalidInputError(f"text of row {i} must be a string")
        if _utf8_size(record.text, f"text of row {i}") > _MAX_VARCHAR_BYTES:
            raise InvalidInputError(
                f"text of row {i} ({record.id!r}) is longer than Milvus's {_MAX_VARCHAR_BYTES} bytes; "
                "split it into smaller chunks"
            )
        try:  # JSON-normalised: numpy scalars become numbers, tuples lists; sets, NaN fail here
            metadata = json.loads(dump(dict(record.metadata)))
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"metadata of row {i} cannot be stored as JSON: {exc}") from exc
        _check_ints(metadata)
        source = metadata.get("source")
        has_source = isinstance(source, str)
        if has_source and _utf8_size(source, "source") > _MAX_VARCHAR_BYTES:
            raise InvalidInputError(
                f"metadata['source'] of row {i} is longer than {_MAX_VARCHAR_BYTES} bytes"
            )
        rows.append(
            {
                ID_FIELD: record.id,
                _VECTOR: vector,
                _TEXT: record.text,
                SOURCE_FIELD: source if has_source else "",
                HAS_SOURCE_FIELD: has_source,
                METADATA_FIELD: metadata,
                KINDS_FIELD: {key: kind_of(value) for key, value in metadata.items()},
            }
        )
    return int(matrix.shape[1]), rows


def _records(rows: list[dict[str, Any]], include_vectors: bool) -> list[Record]:
    return [
        Record(
            id=row[ID_FIELD],
            vector=np.asarray(row[_VECTOR], dtype=np.float32) if include_vectors else None,
            text=row.get(_TEXT) or "",
            metadata=dict(row.get(METADATA_FIELD) or {}),
        )
        for row in rows
    ]


def _rankings(result: Any) -> list[list[RetrievalResult]]:
    rankings = []
    for hits in result:
        ranking = []
        for hit in hits:
            entity = hit.get("entity") or {}
            ranking.append(
                RetrievalResult(
                    id=str(hit.get("id", entity.get(ID_FIELD))),
                    text=entity.get(_TEXT) or "",
                    score=float(hit["distance"]),  # COSINE: Milvus reports the similarity itself
                    metadata=dict(entity.get(METADATA_FIELD) or {}),
                )
            )
        ranking.sort(key=lambda hit: -hit.score)
        rankings.append(ranking)
    return rankings


def _keyword_rankings(result: Any) -> list[list[RetrievalResult]]:
    rankings = _rankings(result)
    # Servers report the BM25 score as the distance; Milvus Lite reports its negation (its sparse index
    # sorts distances ascending). BM25 scores are never negative, so the magnitude is the score either way.
    return [
        sorted(
            (RetrievalResult(hit.id, hit.text, abs(hit.score), hit.metadata) for hit in ranking),
            key=lambda hit: -hit.score,
        )
        for ranking in rankings
    ]


def _count(result: Any) -> int:
    return int(result[0]["count(*)"]) if result else 0


def _id_column(result: Any) -> list[str]:
    return [row[ID_FIELD] for row in result]


def _both(*parts: str | None) -> str:
    present = [p for p in parts if p]
    return " and ".join(f"({p})" for p in present) if len(present) > 1 else (present[0] if present else "")


_FIELDS = (ID_FIELD, _VECTOR, _TEXT, SOURCE_FIELD, HAS_SOURCE_FIELD, METADATA_FIELD, KINDS_FIELD)


def _schema_dimension(description: dict[str, Any]) -> int:
    """The vector dimension of a collection this backend made; a foreign schema is refused up front."""
    fields = {field.get("name"): field for field in description.get("fields", [])}
    missing = [name for name in _FIELDS if name not in fields]
    dim = (fields.get(_VECTOR, {}).get("params") or {}).get("dim")
    if missing or dim is None:
        raise StoreError(
            f"collection {description.get('collection_name')!r} was not created by this backend "
            f"(missing fields: {', '.join(missing) or _VECTOR + ' dimension'})"
        )
    return int(dim)


def _has_keyword_index(description: dict[str, Any]) -> bool:
    """Whether the collection has our BM25 function (`text` -> sparse field); collections made before keyword
    search was added do not, and cannot get it (Milvus cannot add a function to an existing collection)."""
    for function in description.get("functions") or []:
        kind = function.get("type")
        if (
            getattr(kind, "name", kind) in ("BM25", 1)
            and function.get("input_field_names") == [_TEXT]
            and function.get("output_field_names") == [_SPARSE]
        ):
            return True
    return False


class MilvusBackend:
    """Vectors, text and JSON metadata in one Milvus collection; COSINE metric, score = cosine similarity.

    `uri`: a path ending in `.db` is Milvus Lite (embedded, one process per path); `http(s)://host:port`
    (or `milvus://host:port`) is a server, a cluster or Zilliz Cloud, with `token` ("user:password" or an API
    key). Construction does no I/O; the collection is created on first write (FLAT index on Lite, exact;
    AUTOINDEX on servers, which Zilliz Cloud requires) with Strong consistency, so reads see every write.
    Besides `metadata`, each row stores `source`/`has_source` columns and a `kinds` JSON object that makes
    filters type-strict (see `mini.stores.milvus_expr`). `keyword_search` is Milvus's full-text search: a
    BM25 function fills a sparse field from `text` (see `_ANALYZER`); collections created without it raise
    `UnsupportedOperationError` there and must be re-created.
    """

    supports_hybrid: ClassVar[bool] = True
    supports_filters: ClassVar[bool] = True

    def __init__(
        self,
        uri: str,
        *,
        collection_name: str = "docs",
        dimension: int | None = None,
        token: str | None = None,
        index_type: str | None = None,
        connect_timeout: float = 5.0,
        request_timeout: float | None = 120.0,
        max_concurrent_searches: int | None = None,
    ) -> None:
        if not isinstance(collection_name, str) or not _NAME.fullmatch(collection_name):
            raise InvalidInputError(
                f"collection name {collection_name!r}: Milvus allows letters, digits and '_' (not '-'), "
                "starting with a letter or '_'"
            )
        if dimension is not None and not (type(dimension) is int and dimension > 0):
            raise InvalidInputError(f"dimension must be a positive integer, not {dimension!r}")
        path, url = _parse_uri(uri)
        self.collection_name = collection_name
        self.path = path
        self.url = url
        self._secret = token
        self._client: _Client
        if path is not None:
            self._client = _LiteClient(path, connect_timeout)
        else:
            assert url is not None
            self._client = _ServerClient(url, token, connect_timeout)
        self.index_type = index_type or ("FLAT" if path is not None else "AUTOINDEX")
        self.request_timeout = request_timeout
        self._configured_dimension = dimension
        self._dimension = dimension
        self._ready = False  # the collection exists and is loaded (shared by every loop: it is server state)
        self._keyword = False  # the open collection has the BM25 function (see _has_keyword_index)
        self._state = threading.Lock()  # guards _ready/_dimension/_keyword; never held across an await
        self._open_locks: PerLoop[asyncio.Lock] = PerLoop(asyncio.Lock)
        # Lite runs one call at a time anyway; a server gets a few multi-vector searches in flight.
        limit = 1 if path is not None else (max_concurrent_searches or 8)
        self._searches: Coalescer[tuple[int, str], np.ndarray, list[RetrievalResult]] = Coalescer(
            self._search_batch, max_batch=256, max_concurrent=limit
        )
        self._keyword_searches: Coalescer[tuple[int, str], str, list[RetrievalResult]] = Coalescer(
            self._keyword_batch, max_batch=256, max_concurrent=limit
        )

    def __repr__(self) -> str:
        where = self.path if self.path is not None else _shown_url(self.url or "")
        return f"MilvusBackend({where!r}, collection_name={self.collection_name!r})"

    @property
    def dimension(self) -> int | None:
        """The collection's dimension once it is open, else the configured one."""
        return self._dimension

    async def _call(
        self, action: str, method: str, /, *args: Any, then: Callable[[Any], Any] | None = None, **kw: Any
    ) -> Any:
        with map_milvus_errors(action, secret=self._secret):
            return await self._client.call(
                method, self.collection_name, *args, then=then, timeout=self.request_timeout, **kw
            )

    async def _open(self, *, create_dimension: int | None = None) -> bool:
        """Whether the collection exists (then loaded, dimension read); created if `create_dimension` is given."""
        if self._ready:
            return True
        async with self._open_locks.get():
            if self._ready:
                return True
            if not await self._call("open collection", "has_collection"):
                if create_dimension is None:
                    return False
                await self._create(create_dimension)
            description = await self._call("describe collection", "describe_collection")
            dimension = _schema_dimension(description)
            keyword = _has_keyword_index(description)
            # A collection reopened by a new process (or released on a server) must be loaded to be read.
            await self._call("load collection", "load_collection")
            with self._state:
                self._dimension, self._keyword, self._ready = dimension, keyword, True
            return True

    async def _create(self, dimension: int) -> None:
        from pymilvus import CollectionSchema, DataType, FieldSchema, Function, FunctionType, MilvusClient

        schema = CollectionSchema(
            [
                FieldSchema(
                    ID_FIELD, DataType.VARCHAR, is_primary=True, auto_id=False, max_length=_MAX_ID_BYTES
                ),
                FieldSchema(_VECTOR, DataType.FLOAT_VECTOR, dim=dimension),
                FieldSchema(
                    _TEXT,
                    DataType.VARCHAR,
                    max_length=_MAX_VARCHAR_BYTES,
                    enable_analyzer=True,
                    analyzer_params=_ANALYZER,
                ),
                FieldSchema(SOURCE_FIELD, DataType.VARCHAR, max_length=_MAX_VARCHAR_BYTES),
                FieldSchema(HAS_SOURCE_FIELD, DataType.BOOL),
                FieldSchema(METADATA_FIELD, DataType.JSON),
                FieldSchema(KINDS_FIELD, DataType.JSON),
                FieldSchema(_SPARSE, DataType.SPARSE_FLOAT_VECTOR),
            ],
            functions=[
                Function(
                    name=_BM25_FUNCTION,
                    function_type=FunctionType.BM25,
                    input_field_names=[_TEXT],
                    output_field_names=[_SPARSE],
                )
            ],
            enable_dynamic_field=False,
        )
        index = MilvusClient.prepare_index_params()
        index.add_index(_VECTOR, index_type=self.index_type, metric_type="COSINE")
        if self.path is not None:  # Lite accepts only this sparse index, and defaults k1 to 1.5
            index.add_index(
                _SPARSE, index_type="SPARSE_INVERTED_INDEX", metric_type="BM25", params=_BM25_PARAMS
            )
        else:  # what Zilliz Cloud requires; servers default to k1 1.2, b 0.75
            index.add_index(_SPARSE, index_type="AUTOINDEX", metric_type="BM25")
        try:
            await self._call(
                "create collection", "create_collection", schema=schema, consistency_level="Strong"
            )
        except StoreError as exc:
            if "already exist" not in str(exc):
                raise
            return  # another process or backend object won the race: its collection (and index) is used
        # Not create_collection(index_params=...): pymilvus's sync client then polls the index state every
        # 0.5 s, and an empty collection's index needs no waiting (0.5 s per new collection on Lite).
        wait: dict[str, Any] = {"sync": False} if self.path is not None else {}
        await self._call("create index", "create_index", index, **wait)
        logger.info(
            "created Milvus collection %r (dimension %d) in %r", self.collection_name, dimension, self
        )

    async def _prepare(self, records: Sequence[Record]) -> list[dict[str, Any]]:
        """Validate and convert a batch, then open (or create) the collection its vectors fit."""
        big = len(records) * len(records[0].vector) >= _THREAD_MIN_FLOATS
        got, rows = await asyncio.to_thread(_rows, records) if big else _rows(records)
        if not await self._open():
            wanted = self._configured_dimension or got
            if got != wanted:  # refuse before creating a collection of the wrong size
                raise DimensionMismatchError(wanted, got, "row 0")
            await self._open(create_dimension=wanted)
        if got != self._dimension:
            raise DimensionMismatchError(self._dimension or 0, got, "row 0")
        return rows

    async def _write(self, method: str, rows: list[dict[str, Any]]) -> None:
        for start in range(0, len(rows), _WRITE_ROWS):
            await self._call(method, method, rows[start : start + _WRITE_ROWS])

    async def insert(self, records: Sequence[Record]) -> None:
        if not records:
            return
        rows = await self._prepare(records)
        # Check then insert: Milvus itself would keep two rows with one id. Not atomic against a concurrent
        # writer inserting the same ids (upsert is idempotent).
        existing = await self.existing_ids([r.id for r in records])
        if existing:
            raise DuplicateIdError(sorted(existing))
        await self._write("insert", rows)

    async def upsert(self, records: Sequence[Record]) -> None:
        if records:
            await self._write("upsert", await self._prepare(records))

    async def delete(self, *, ids: Sequence[str] | None = None, filter: Filter | None = None) -> int:
        predicates = [to_expr(filter)] if filter is not None else []
        ids = list(ids or [])
        predicates += [id_in(ids[i : i + _ID_BATCH]) for i in range(0, len(ids), _ID_BATCH)]
        if not predicates or not await self._open():
            return 0
        deleted = 0
        # Milvus does not report deleted rows (it echoes the ids asked for): count, then delete. A row deleted
        # by an earlier predicate is not counted again.
        for predicate in predicates:
            matching = await self._call(
                "count", "query", filter=predicate, output_fields=["count(*)"], then=_count
            )
            if matching:
                await self._call("delete", "delete", filter=predicate)
                deleted += matching
        return deleted

    async def replace(self, records: Sequence[Record], *, scope: Filter) -> int:
        """Upsert `records`, then delete the rows in `scope` that are not among them; returns rows deleted.

        Milvus has no atomic merge-and-delete: between the two steps readers may briefly see the new rows next
        to the old ones they replace (never a scope with rows missing)."""
        where = to_expr(scope)
        if not records:
            return await self.delete(filter=scope)
        await self.upsert(records)
        keep = {r.id for r in records}
        stale = [i for i in await self._ids_in(where) if i not in keep]
        return await self.delete(ids=stale) if stale else 0

    async def _ids_in(self, where: str) -> list[str]:
        return [r.id for r in await self._paged(where, [ID_FIELD], None, False)]

    async def get(
        self,
        *,
        ids: Sequence[str] | None = None,
        filter: Filter | None = None,
        include_vectors: bool = False,
        limit: int | None = None,
    ) -> list[Record]:
        where = to_expr(filter) if filter is not None else None
        if (ids is not None and not ids) or not await self._open():
            return []
        fields = [ID_FIELD, _TEXT, METADATA_FIELD] + ([_VECTOR] if include_vectors else [])
        if ids is None:
            return await self._paged(where, fields, limit, include_vectors)
        records: list[Record] = []
        wanted = list(dict.fromkeys(ids))
        for start in range(0, len(wanted), _ID_BATCH):
            batch = wanted[start : start + _ID_BATCH]
            size = len(batch) if limit is None else min(len(batch), limit - len(records))
            found = await self._call(
                "get",
                "query",
                filter=_both(id_in(batch), where),
                output_fields=fields,
                limit=size,
                then=lambda rows: _records(rows, include_vectors),
            )
            records += found[:size]  # Milvus Lite ignores `limit` on a primary key lookup
            if limit is not None and len(records) >= limit:
                break
        return records

    async def _paged(
        self, where: str | None, fields: list[str], limit: int | None, include_vectors: bool
    ) -> list[Record]:
        """Every row matching `where` (up to `limit`), a page at a time in id order (servers cap one query)."""
        records: list[Record] = []
        cursor: str | None = None
        while limit is None or len(records) < limit:
            size = _PAGE_ROWS if limit is None else min(_PAGE_ROWS, limit - len(records))
            after = f"{ID_FIELD} > {quote(cursor)}" if cursor is not None else f'{ID_FIELD} != ""'
            page: list[Record] = await self._call(
                "get",
                "query",
                filter=_both(where, after),
                output_fields=fields,
                limit=size,
                # What pymilvus's query iterator sends: results come back in primary key order.
                iterator="True",
                reduce_stop_for_best="True",
                then=lambda rows: _records(rows, include_vectors),
            )
            records += page
            if len(page) < size:
                break
            cursor = max(r.id for r in page)
        return records if limit is None else records[:limit]

    async def count(self, filter: Filter | None = None) -> int:
        where = to_expr(filter) if filter is not None else ""
        if not await self._open():
            return 0
        result: int = await self._call(
            "count", "query", filter=where, output_fields=["count(*)"], then=_count
        )
        return result

    async def existing_ids(self, ids: Sequence[str]) -> set[str]:
        ids = list(dict.fromkeys(ids))
        if not ids or not await self._open():
            return set()
        found: set[str] = set()
        for start in range(0, len(ids), _ID_BATCH):
            batch = ids[start : start + _ID_BATCH]
            rows = await self._call(
                "id lookup",
                "query",
                filter=id_in(batch),
                output_fields=[ID_FIELD],
                limit=len(batch),
                then=_id_column,
            )
            found.update(rows)
        return found

    async def search(
        self, vector: Sequence[float], *, top_k: int, filter: Filter | None = None
    ) -> list[RetrievalResult]:
        return (await self.search_many([vector], top_k=top_k, filter=filter))[0]

    async def search_many(
        self, vectors: Sequence[Sequence[float]], *, top_k: int, filter: Filter | None = None
    ) -> list[list[RetrievalResult]]:
        """One ranking per query vector. Concurrent calls with the same `top_k` and filter are coalesced into
        one multi-vector search (Milvus Lite answers one call at a time; a batch costs little more than one)."""
        if top_k < 1:
            raise InvalidInputError("top_k must be >= 1")
        if top_k > _MAX_TOP_K:
            raise InvalidInputError(f"top_k must be <= {_MAX_TOP_K} on Milvus")
        if len(vectors) == 0:
            return []
        where = to_expr(filter) if filter is not None else ""
        if not await self._open():
            return [[] for _ in vectors]
        queries = []
        for vector in vectors:
            query = np.asarray(vector, dtype=np.float32)
            if query.ndim != 1 or query.shape[0] != self._dimension:
                raise DimensionMismatchError(self._dimension or 0, len(vector), "query")
            if not np.isfinite(query).all():
                raise InvalidInputError("query vector contains NaN or infinity")
            queries.append(query)
        return await self._searches.submit_many((top_k, where), queries)

    async def _search_batch(
        self, key: tuple[int, str], vectors: list[np.ndarray]
    ) -> list[list[RetrievalResult]]:
        top_k, where = key
        result: list[list[RetrievalResult]] = await self._call(
            "search",
            "search",
            data=vectors,
            limit=top_k,
            filter=where,
            output_fields=[_TEXT, METADATA_FIELD],
            search_params={"metric_type": "COSINE"},
            then=_rankings,
        )
        return result

    async def keyword_search(
        self, text: str, *, top_k: int, filter: Filter | None = None
    ) -> list[RetrievalResult]:
        """Milvus full-text search: BM25 of the analysed `text` field against the analysed query, best first.

        Scores are BM25 scores (positive). Concurrent calls with the same `top_k` and filter share one request.
        Milvus Lite computes IDF per segment and, with a filter, over the matching unflushed rows only, so its
        scores (not which rows match) can differ from a server's."""
        if top_k < 1:
            raise InvalidInputError("top_k must be >= 1")
        if top_k > _MAX_TOP_K:
            raise InvalidInputError(f"top_k must be <= {_MAX_TOP_K} on Milvus")
        if not isinstance(text, str):
            raise InvalidInputError(f"the query text must be a string, not {type(text).__name__}")
        _utf8_size(text, "the query text")
        where = to_expr(filter) if filter is not None else ""
        if not await self._open():
            return []
        if not self._keyword:
            raise UnsupportedOperationError(
                f"Milvus collection {self.collection_name!r} has no full-text (BM25) field: it was created "
                "before keyword search was supported. Re-create it to use keyword search: drop the "
                "collection and ingest the documents again."
            )
        # Only stop words or punctuation: no term to match, so no row matches (and a server is not asked to
        # search with an empty sparse vector).
        if not tokenize(text):
            return []
        return (await self._keyword_searches.submit_many((top_k, where), [text]))[0]

    async def _keyword_batch(self, key: tuple[int, str], texts: list[str]) -> list[list[RetrievalResult]]:
        top_k, where = key
        result: list[list[RetrievalResult]] = await self._call(
            "keyword search",
            "search",
            data=texts,
            anns_field=_SPARSE,
            limit=top_k,
            filter=where,
            output_fields=[_TEXT, METADATA_FIELD],
            search_params={"metric_type": "BM25"},
            then=_keyword_rankings,
        )
        return result

    async def drop(self) -> None:
        if await self._call("open collection", "has_collection"):
            await self._call("drop collection", "drop_collection")
        with self._state:
            self._ready = False
            self._keyword = False
            self._dimension = self._configured_dimension

    async def aclose(self) -> None:
        """Release this loop's client; the next call reconnects and rereads the collection."""
        with self._state:
            self._ready = False
        self._open_locks.pop_current()
        with map_milvus_errors("close", secret=self._secret):
            await self._client.aclose()
