"""Reaching Qdrant: a server through `AsyncQdrantClient` (one per loop), or local mode (a directory or
``:memory:``) through the sync `QdrantClient` in worker threads; URIs and the clients' errors.

Why two clients: local mode is pure Python, and its async client never yields (64 searches blocked the loop
for 6.9 s, DESIGN.md section 7), so local mode runs the sync client in worker threads, one call at a time
(it is not thread-safe). Both clients have the same method names and arguments, so everything above
`Connection` is one code path: only "await the coroutine" vs "call it in a thread" differs.
"""

from __future__ import annotations

import atexit
import logging
import os
import sqlite3
import threading
import urllib.parse
from typing import TYPE_CHECKING, Any, Protocol

from mini._portal import PerLoop
from mini.errors import InvalidInputError, StoreError
from mini.stores._common import ThreadedClient

if TYPE_CHECKING:
    from qdrant_client import AsyncQdrantClient, QdrantClient

logger = logging.getLogger("mini.stores")

_DEFAULT_PORT = 6333


class Connection(Protocol):
    """Calls a `QdrantClient` / `AsyncQdrantClient` method by name; both share names and arguments."""

    local: bool

    async def call(self, method: str, /, **kwargs: Any) -> Any: ...

    async def release(self) -> None: ...


class LocalClient(ThreadedClient["QdrantClient"]):
    """One sync local-mode client for a location, shared by every backend object on it in this process.

    Local mode holds an exclusive file lock on its directory (a second client on the same path fails, even in
    the same process) and is not thread-safe, so: one client per path (see `local_client`), every call in a
    worker thread under the client's lock (`ThreadedClient`). The client is opened on first use and closed
    when the last backend object using it is closed; the next call reopens it.
    """

    local = True

    def __init__(self, location: str, *, shared: bool) -> None:
        super().__init__(self._open_client, lambda client: client.close())
        self.location = location
        self.shared = shared
        self._users = 0  # backend objects holding this client; changed under _users_lock
        self._users_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LocalClient({self.location!r})"

    def _open_client(self) -> QdrantClient:
        from qdrant_client import QdrantClient

        # Safe because every call is serialised by the lock: sqlite objects are then used by one thread at a
        # time (needed where sqlite's default would refuse a second thread, e.g. macOS).
        if self.location == ":memory:":
            return QdrantClient(location=":memory:", force_disable_check_same_thread=True)
        return QdrantClient(path=self.location, force_disable_check_same_thread=True)

    def acquire(self) -> None:
        with self._users_lock:
            self._users += 1

    async def release(self) -> None:
        with self._users_lock:
            self._users -= 1
            idle = self._users <= 0
        # An in-memory store lives as long as its backend object: closing it would lose the data.
        if idle and self.shared:
            await self.close(unless=lambda: self._users > 0)  # reacquired while we waited for the lock


_local_clients: dict[str, LocalClient] = {}
_local_clients_lock = threading.Lock()


def local_client(path: str) -> LocalClient:
    """The process-wide client for a directory (entries stay; their client closes when unused)."""
    with _local_clients_lock:
        client = _local_clients.get(path)
        if client is None:
            client = _local_clients[path] = LocalClient(path, shared=True)
        return client


@atexit.register
def _close_local_clients() -> None:
    # QdrantClient.__del__ would otherwise close them during interpreter teardown, where its lazy
    # `import portalocker` fails and prints "Exception ignored in ...".
    with _local_clients_lock:
        clients = list(_local_clients.values())
    for client in clients:
        try:
            client.close_now(timeout=2.0)
        except Exception:  # exiting anyway; the OS releases the file lock
            logger.debug("closing Qdrant local client %s failed", client.location, exc_info=True)


class RemoteClient:
    """`AsyncQdrantClient` per event loop (its HTTP pool / gRPC channel belong to the loop that made them)."""

    local = False

    def __init__(
        self, url: str, *, api_key: str | None, timeout: float, prefer_grpc: bool, grpc_port: int
    ) -> None:
        self.url = url
        self._api_key = api_key
        self._timeout = timeout
        self._prefer_grpc = prefer_grpc
        self._grpc_port = grpc_port
        self._clients: PerLoop[AsyncQdrantClient] = PerLoop(self._make, aclose=lambda client: client.close())

    def __repr__(self) -> str:
        return f"RemoteClient({self.url!r})"

    def _make(self) -> AsyncQdrantClient:
        from qdrant_client import AsyncQdrantClient

        # The API key goes in as the `api-key` header (what `api_key=` sets for REST and gRPC alike): passing
        # `api_key=` over plain http makes qdrant-client emit a UserWarning on every construction, which is
        # global-state noise in tests and apps; `_warn_plain_http` logs it once, without the key, instead.
        # check_compatibility=False: it would start a thread making a blocking request to read the version.
        return AsyncQdrantClient(
            url=self.url,
            headers={"api-key": self._api_key} if self._api_key else None,
            timeout=max(1, round(self._timeout)),
            prefer_grpc=self._prefer_grpc,
            grpc_port=self._grpc_port,
            check_compatibility=False,
        )

    async def call(self, method: str, /, **kwargs: Any) -> Any:
        return await getattr(self._clients.get(), method)(**kwargs)

    async def release(self) -> None:
        await self._clients.aclose_current()


class CollectionMissing(StoreError):
    """The collection does not exist (reads answer empty; never escapes a public method unless unexpected)."""


def driver_errors() -> tuple[type[BaseException], ...]:
    """What the clients raise for failures of the store. Local mode is a pure-Python engine that reports its
    failures (a missing collection, a locked directory) as ValueError/RuntimeError; the mapping wraps only
    the client call, so those of our own code are not caught."""
    import httpx
    from qdrant_client.http.exceptions import ApiException

    errors: list[type[BaseException]] = [ApiException, httpx.HTTPError, ValueError, RuntimeError, OSError]
    errors.append(sqlite3.Error)  # local mode's storage
    try:
        import grpc

        errors.append(grpc.RpcError)
    except ImportError:  # pragma: no cover - grpcio is a dependency of qdrant-client
        pass
    return tuple(errors)


def _status(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)  # UnexpectedResponse (REST)
    if isinstance(status, int):
        return status
    code = getattr(exc, "code", None)  # grpc.aio.AioRpcError
    if callable(code):
        try:
            name = getattr(code(), "name", "")
        except Exception:
            return None
        return {"NOT_FOUND": 404, "ALREADY_EXISTS": 409, "INVALID_ARGUMENT": 400, "UNAUTHENTICATED": 401}.get(
            name
        )
    return None


def is_missing(exc: BaseException) -> bool:
    """A read or write of a collection that does not exist (local mode: ValueError "... not found")."""
    if _status(exc) == 404:
        return True
    return isinstance(exc, ValueError) and str(exc).startswith("Collection ") and "not found" in str(exc)


def is_conflict(exc: BaseException) -> bool:
    """create_collection lost a race: the collection exists now."""
    return _status(exc) == 409 or "already exists" in str(exc)


def parse_uri(uri: str) -> tuple[str, str, str]:
    """(kind, location, display) for a URI; kind is "memory", "path" or "server". No I/O."""
    if not isinstance(uri, str) or not uri.strip():
        raise InvalidInputError("the Qdrant URI must be a non-empty string")
    if uri.strip() == ":memory:":
        return "memory", ":memory:", ":memory:"
    scheme, sep, rest = uri.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in ("qdrant", "qdrants", "qdrant+path"):
        raise InvalidInputError(
            f"not a Qdrant URI: {uri!r}; use qdrant://host:port, qdrants://host:port, qdrant+path:///dir "
            "or :memory:"
        )
    if scheme == "qdrant+path":
        if not rest:
            raise InvalidInputError("qdrant+path:// needs a directory, e.g. qdrant+path:///data/qdrant")
        # Resolved now (no I/O) so a later chdir cannot move the store.
        path = os.path.abspath(os.path.expanduser(rest))
        return "path", path, f"qdrant+path://{path}"
    parts = urllib.parse.urlsplit(f"//{rest}")
    if "@" in parts.netloc:
        # A key inside the URI would show up in repr() and messages: it belongs in `token`.
        raise InvalidInputError("put the Qdrant API key in token=..., not in the URI")
    if parts.query or parts.fragment:
        raise InvalidInputError(f"unexpected query or fragment in Qdrant URI {uri!r}")
    try:
        host, port = parts.hostname, parts.port or _DEFAULT_PORT
    except ValueError as exc:
        raise InvalidInputError(f"invalid port in Qdrant URI {uri!r}") from exc
    if not host:
        raise InvalidInputError(f"the Qdrant URI {uri!r} names no host")
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    path = parts.path.rstrip("/")
    http = "https" if scheme == "qdrants" else "http"
    return "server", f"{http}://{netloc}{path}", f"{scheme}://{netloc}{path}"
