"""Reaching Milvus: the Milvus Lite server of a `.db` path in a child process and its threaded client, the
async client of a server, URIs and the mapping of the SDK's errors."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from typing import Any, ClassVar, Protocol
from urllib.parse import urlsplit, urlunsplit

from mini._logs import drop_records
from mini._portal import PerLoop
from mini.errors import ConfigurationError, MiniError, StoreError
from mini.stores._common import ThreadedClient, path_lock

logger = logging.getLogger("mini.stores")

_LITE_START_TIMEOUT_S = 60.0
_pymilvus_lock = threading.Lock()
_pymilvus_loaded = False


def _names_lite_path(value: str | None) -> bool:
    return value is not None and value.strip().lower().endswith(".db")


def load_pymilvus() -> None:
    """Import pymilvus with MILVUS_URI hidden unless it is set to a server address.

    Why: mini-rag 0.1.3's `.env` sets `MILVUS_URI=./milvus_demo.db`, and our settings read that variable too.
    pymilvus reads it when it is imported (from the environment, and from the working directory's `.env` through
    its own `load_dotenv()`) as the address of its ORM default connection, which we never use. With a `.db` value
    the import fails: "Illegal uri: [...], expected form 'http[s]://...'". So for the import the variable is set
    to "" (pymilvus's "unset"; `load_dotenv` does not override a set variable) and restored right after. A
    server address already in the environment is left alone, so a user's own pymilvus ORM code keeps it.
    """
    global _pymilvus_loaded
    if _pymilvus_loaded:
        return
    with _pymilvus_lock:
        if _pymilvus_loaded:
            return
        saved = os.environ.get("MILVUS_URI")
        hide = saved is None or _names_lite_path(saved)
        try:
            if hide:
                os.environ["MILVUS_URI"] = ""
            import pymilvus  # noqa: F401 - imported for its side effect: settings and default connection
        finally:
            if hide:
                if saved is None:
                    os.environ.pop("MILVUS_URI", None)
                else:
                    os.environ["MILVUS_URI"] = saved
        _pymilvus_loaded = True


def _lite_child_env() -> dict[str, str]:
    """The Lite child's environment: its milvus_lite imports pymilvus too (see `load_pymilvus`), and the child
    never uses pymilvus's default connection, so MILVUS_URI is always empty there."""
    return {**os.environ, "MILVUS_URI": ""}


class _LiteServer:
    """The Milvus Lite server of one `.db` path in a child process (see `mini.stores.milvus._lite_server`),
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
            [sys.executable, "-m", "mini.stores.milvus._lite_server", self.path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_lite_child_env(),
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
    """Translate pymilvus/gRPC failures into `StoreError`; `secret` never reaches a message.

    Only the SDK's own failures are mapped (`MilvusException`, gRPC errors, OSError from sockets and the Lite
    child process): a ValueError or KeyError of ours is a bug, not a store failure, and passes through."""
    try:
        yield
    except MiniError:
        raise
    except Exception as exc:
        load_pymilvus()
        from pymilvus.exceptions import MilvusException

        grpc_error: tuple[type[BaseException], ...] = ()
        with contextlib.suppress(ImportError):
            import grpc

            grpc_error = (grpc.RpcError,)
        if not isinstance(exc, (MilvusException, OSError, *grpc_error)):
            raise
        detail = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        if "Open local milvus failed" in detail:
            detail += " (Milvus Lite allows one process per .db path: is another process using it?)"
        raise StoreError(_redact(f"Milvus {action} failed: {detail}", secret)) from exc


Errors = Callable[[], AbstractContextManager[object]]


class Client(Protocol):
    """What the backend needs from a Milvus client: the client's method `method`, awaited.

    `errors` maps the SDK's failures around the SDK call only; `then` post-processes the result where the call
    ran (Lite: in the worker thread, so parsing a big answer never holds the event loop)."""

    async def call(
        self,
        method: str,
        /,
        *args: Any,
        errors: Errors = ...,
        then: Callable[[Any], Any] | None = None,
        **kw: Any,
    ) -> Any: ...

    async def aclose(self) -> None: ...


class LiteClient(ThreadedClient[Any]):
    """Milvus Lite: its server in a child process (`_LiteServer`), reached with the sync `MilvusClient`, every
    call in a worker thread, one call at a time per path (Lite is not meant to be hammered concurrently).

    Not `AsyncMilvusClient`: its create_index polls with AllocTimestamp, which Lite's server does not implement.
    The server path now tolerates that (`MilvusBackend._create_index`) and passes the store contract against a
    Lite server (issue 22), so this client could become `ServerClient` on the child's URL; not yet measured.
    """

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__(self._open_client, self._close_client, lock=path_lock(path))
        self.path = path
        self._timeout = timeout

    def _open_client(self) -> Any:
        load_pymilvus()
        from pymilvus import MilvusClient

        url = _LiteServer.acquire(self.path)
        try:
            return MilvusClient(uri=url, timeout=self._timeout)
        except BaseException:
            _LiteServer.release(self.path)
            raise

    def _close_client(self, client: Any) -> None:
        try:
            client.close()
        finally:
            _LiteServer.release(self.path)  # the child stops when no backend on this path is open

    async def aclose(self) -> None:
        await self.close()
        self.forget_loop()


class ServerClient:
    """A Milvus server, cluster or Zilliz Cloud through `AsyncMilvusClient`, one per event loop (gRPC aio
    channels belong to the loop that made them); each is closed when its loop shuts down."""

    def __init__(self, uri: str, token: str | None, connect_timeout: float) -> None:
        self._uri = uri
        self._token = token
        self._connect_timeout = connect_timeout
        self._clients: PerLoop[Any] = PerLoop(self._new, aclose=lambda client: client.close())

    def _new(self) -> Any:
        load_pymilvus()
        from pymilvus import AsyncMilvusClient

        # No I/O here: the client connects on its first call, waiting at most `timeout` for the channel.
        return AsyncMilvusClient(uri=self._uri, token=self._token or "", timeout=self._connect_timeout)

    async def call(
        self,
        method: str,
        /,
        *args: Any,
        errors: Errors = nullcontext,
        then: Callable[[Any], Any] | None = None,
        **kw: Any,
    ) -> Any:
        with errors():
            result = await getattr(self._clients.get(), method)(*args, **kw)
        return await asyncio.to_thread(then, result) if then is not None else result

    async def aclose(self) -> None:
        await self._clients.aclose_current()


def parse_uri(uri: str) -> tuple[str | None, str | None]:
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


def shown_url(url: str) -> str:
    """The URL without a password (`https://user:pass@host` is accepted by pymilvus)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _is_lite_index_poll_noise(message: str) -> bool:
    """pymilvus logs an ERROR with a traceback when its index poll meets Milvus Lite's server, which lacks the
    method (UNIMPLEMENTED): there that is the expected end of creating an index (`MilvusBackend._create_index`),
    not an error for the user. A real server implements it, so nothing else is dropped."""
    index_call = "[wait_for_creating_index]" in message or "[create_index]" in message  # the poll, its caller
    return index_call and "UNIMPLEMENTED" in message


def quiet_lite_index_poll() -> None:
    """Drop those records from pymilvus's logger (installed once)."""
    drop_records("pymilvus.decorators", "lite-index-poll", _is_lite_index_poll_noise)
