"""Chat sessions in memory: bounded (least recently used evicted), forgotten after a TTL, short histories.

A session may own a collection of its own documents (uploaded with its `session_id`), next to the global
collection in the same store location. The collection is created lazily and dropped when the session ends
(deleted, expired, evicted, or the server stops): sessions live in memory only, so a collection that outlived
its session could never be reached again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mini._checks import at_least
from mini.conversation import Turn
from mini.errors import ConfigurationError
from mini.server.errors import ApiError

if TYPE_CHECKING:
    from fastapi import FastAPI

    from mini.server.settings import ServerSettings
    from mini.stores.base import VectorStore

log = logging.getLogger("mini.server")

SESSION_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
SESSION_ID_PATTERN = r"^[A-Za-z0-9_-]{1,128}$"  # the same rule, for pydantic fields (OpenAPI shows it)
# Sessions that end at the same time (a sweep, shutdown) drop their collections this many at a time.
_DROP_CONCURRENCY = 4

CloseHook = Callable[["Session"], Awaitable[None]]


def check_session_id(session_id: str) -> str:
    if not SESSION_ID.fullmatch(session_id):
        raise ApiError(422, "invalid_input", "a session id is 1 to 128 characters of A-Z, a-z, 0-9, '_', '-'")
    return session_id


def collection_for(base: str, session_id: str) -> str:
    """The session's collection name: hashed, because stores differ in what names they accept (Milvus
    refuses '-') and how long they may be; the hash is stable, so the name is the same for the same id."""
    return f"{base}__s_{hashlib.sha256(session_id.encode()).hexdigest()[:24]}"


@dataclass(eq=False)
class Session:
    id: str
    max_turns: int
    created_at: float = field(default_factory=time.time)
    last_used: float = field(default_factory=time.monotonic)
    turns: deque[Turn] = field(init=False)
    # The session's own documents; None until something is uploaded with this session id.
    store: VectorStore | None = None
    # Ingestion jobs writing into `store`: a session is not expired under a running job.
    active_jobs: int = 0

    def __post_init__(self) -> None:
        self.turns = deque(maxlen=self.max_turns)

    def add_turn(self, question: str, answer: str) -> None:
        self.turns.append(Turn(question, answer, time.time()))

    def document_store(self, base: VectorStore) -> VectorStore:
        """The session's collection in `base`'s location, made on first use (construction does no I/O)."""
        if self.store is None:
            from mini.stores.base import VectorStore

            if base.uri is None or base.collection_name is None:
                raise ConfigurationError(
                    "session documents need a store created from a uri and a collection name"
                )
            self.store = VectorStore(base.uri, collection_name=collection_for(base.collection_name, self.id))
        return self.store

    def to_dict(self) -> dict[str, Any]:
        return {
            "session_id": self.id,
            "created_at": self.created_at,
            "turns": [t.to_dict() for t in self.turns],
            "has_documents": self.store is not None,
        }


class SessionStore:
    """Sessions by id. Every method but `delete`/`aclose` is synchronous: the dictionary is only touched on the
    event loop's thread with no await in between, so no lock is needed. Ending a session runs the `on_close`
    hooks (e.g. cancel its ingestion jobs) and then drops its collection, in a background task unless the
    caller awaits it (`delete`).

    `clock` (monotonic seconds) decides what has expired; tests pass a manual one to expire sessions at will.
    """

    def __init__(
        self,
        *,
        max_sessions: int,
        ttl_s: float,
        max_turns: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        at_least(1, max_sessions=max_sessions)
        self.clock = clock
        self.max_sessions = max_sessions
        self.ttl_s = ttl_s
        self.max_turns = max(0, max_turns)
        self.on_close: list[CloseHook] = []
        self._sessions: OrderedDict[str, Session] = OrderedDict()  # least recently used first
        self._closing: set[asyncio.Task[None]] = set()
        self._drop_slots = asyncio.Semaphore(_DROP_CONCURRENCY)
        self._sweeper: asyncio.Task[None] | None = None
        self.evicted = 0
        self.expired = 0

    def __len__(self) -> int:
        return len(self._sessions)

    def _expired(self, session: Session, now: float) -> bool:
        return session.active_jobs == 0 and now - session.last_used > self.ttl_s

    def get(self, session_id: str) -> Session | None:
        """The live session (now most recently used), or None; an expired one is ended here."""
        session = self._sessions.get(session_id)
        if session is None:
            return None
        now = self.clock()
        if self._expired(session, now):
            self._end(session)
            self.expired += 1
            return None
        session.last_used = now
        self._sessions.move_to_end(session_id)
        return session

    def get_or_create(self, session_id: str | None) -> Session:
        """The session `session_id` (made if absent), or a new one with a generated id."""
        if session_id is not None:
            session = self.get(check_session_id(session_id))
            if session is not None:
                return session
        else:
            session_id = uuid.uuid4().hex
        session = Session(session_id, self.max_turns, last_used=self.clock())
        self._sessions[session_id] = session
        while len(self._sessions) > self.max_sessions:
            _, oldest = self._sessions.popitem(last=False)
            self._end(oldest, pop=False)
            self.evicted += 1
            log.info("session %s evicted (more than %d sessions)", oldest.id, self.max_sessions)
        return session

    async def delete(self, session_id: str) -> bool:
        """End a session now, waiting until its jobs are cancelled and its collection is dropped."""
        session = self._sessions.pop(session_id, None)
        if session is None:
            return False
        await self._close(session)
        return True

    # -- the async interface (routes use these: the Redis store, `redis_state.RedisSessionStore`, does I/O) --

    async def find(self, session_id: str) -> Session | None:
        """The live session (now most recently used), or None."""
        return self.get(check_session_id(session_id))

    async def open(self, session_id: str | None, *, documents: bool = False) -> Session:
        """The session `session_id` (made if absent), or a new one; `documents`: it is about to get some."""
        return self.get_or_create(session_id)

    async def add_turn(self, session: Session, question: str, answer: str) -> None:
        session.add_turn(question, answer)

    async def health(self) -> str | None:
        """None when the sessions can be served, else why not (for /health)."""
        return None

    def sweep(self) -> int:
        """End every expired session now (the sweeper calls this periodically); returns how many."""
        now = self.clock()
        stale = [s for s in self._sessions.values() if self._expired(s, now)]
        for session in stale:
            self._end(session)
        self.expired += len(stale)
        return len(stale)

    def _end(self, session: Session, *, pop: bool = True) -> None:
        if pop:
            self._sessions.pop(session.id, None)
        if session.store is None and session.active_jobs == 0:
            return  # nothing to clean up: no task needed
        task = asyncio.get_running_loop().create_task(
            self._close(session), name=f"mini-session-end-{session.id}"
        )
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _close(self, session: Session) -> None:
        for hook in self.on_close:
            try:
                await hook(session)
            except Exception:
                log.exception("closing session %s failed", session.id)
        store, session.store = session.store, None
        if store is None:
            return
        async with self._drop_slots:
            try:
                await store.drop_async()
            except Exception as exc:  # the server goes on; the collection stays (logged for an operator)
                log.warning("dropping the documents of session %s failed: %s", session.id, exc)
            finally:
                await store.aclose()

    # -- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._sweeper is None:
            # Often enough that an idle session does not outlive its TTL by much, rarely enough to cost nothing.
            interval = min(60.0, max(0.05, self.ttl_s / 2))
            self._sweeper = asyncio.get_running_loop().create_task(
                self._sweep_every(interval), name="mini-sessions"
            )

    async def _sweep_every(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self.sweep()

    async def _stop_sweeping(self) -> None:
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper

    async def aclose(self) -> None:
        """Stop sweeping and end every session (their collections are unreachable once the server stops)."""
        await self._stop_sweeping()
        sessions = list(self._sessions.values())
        self._sessions.clear()
        # _close bounds its own drops (_drop_slots): gathering them all at once is safe.
        await asyncio.gather(*(self._close(s) for s in sessions), *self._closing, return_exceptions=True)

    async def stats_async(self) -> dict[str, Any]:
        """`stats()`, for /v1/stats (the Redis store counts the cluster's sessions there)."""
        return self.stats()

    def stats(self) -> dict[str, Any]:
        return {
            "active": len(self._sessions),
            "max": self.max_sessions,
            "ttl_s": self.ttl_s,
            "evicted": self.evicted,
            "expired": self.expired,
        }


def install(app: FastAPI) -> SessionStore:
    """The app's `SessionStore`, made and started on first call (chat and documents both need it): in Redis
    when the settings name one (`redis_state`), else in memory."""
    sessions: SessionStore | None = getattr(app.state, "sessions", None)
    if sessions is None:
        settings: ServerSettings = app.state.settings
        if settings.redis_url:
            from mini.server.redis_state import RedisSessionStore

            sessions = RedisSessionStore(
                settings.redis_url,
                app.state.rag.vector_store,
                max_sessions=settings.max_sessions,
                ttl_s=settings.session_ttl_s,
                max_turns=settings.max_history_turns,
            )
        else:
            sessions = SessionStore(
                max_sessions=settings.max_sessions,
                ttl_s=settings.session_ttl_s,
                max_turns=settings.max_history_turns,
            )
        sessions.start()
        app.state.sessions = sessions
        app.state.stats_extras["sessions"] = lambda request: sessions.stats_async()
        app.state.health_checks["sessions"] = sessions.health
    return sessions


async def uninstall(app: FastAPI) -> None:
    sessions: SessionStore | None = getattr(app.state, "sessions", None)
    if sessions is not None:
        app.state.sessions = None
        await sessions.aclose()
