"""Sessions and ingestion jobs in Redis (`MINI_REDIS_URL`), so several `mini serve` replicas share them.

Sessions. Redis is the truth: `mini:sessions` (a sorted set: id -> last use, wall-clock seconds) is the index that
decides TTL and LRU for the whole cluster; `mini:session:<id>` (hash: created_at, has_documents) and
`mini:session:<id>:turns` (a list of JSON turns, trimmed to `max_turns`) hold the data, with a Redis expiry of
twice the TTL as a safety net if every replica is gone. Each replica keeps a small cache of `Session` objects for
what cannot live in Redis (its store handle, its running jobs); every lookup reads Redis first, so a session
deleted or expired elsewhere is gone here too.

Ending a session (and dropping its own documents collection) is CLAIMED: whoever removes the id from the sorted
set (`ZREM` / `ZPOPMIN` answer that to exactly one caller) ends it: the replica that deletes it, evicts it (LRU,
on creation) or sweeps it (each replica's sweeper looks for ids older than the TTL). So a collection is dropped
once, by one replica, whichever it is; its name is derived from the id (`collection_for`), so any replica can.
A replica's sweeper keeps alive (touches) the sessions with an ingestion job running on it, and finishes the
end of a session another replica ended while a job of it ran here (cancels the job, drops what it wrote).
Shutdown of one replica ends nothing: the others still serve those sessions.

Jobs. `mini:job:<id>` holds the job's state (`Job.to_dict()` plus its owner instance); finished ones expire
after `job_ttl_s`. Each instance refreshes `mini:jobs:alive:<instance>` (expiring after `HEARTBEAT_TTL_S`) while
it runs: a job read as queued/running whose owner's heartbeat is gone is reported (and written) failed, type
"interrupted". Sending the same request again resumes it without duplicates: ingestion ids are content hashes
and unchanged files are skipped (as after a restart with the SQLite store).

Every Redis call goes through `mini._redis.call` (timeouts; unreachable -> `SharedStateUnavailableError`, 503).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections import deque
from typing import TYPE_CHECKING, Any, cast

from mini import _redis
from mini.conversation import Turn
from mini.errors import SharedStateUnavailableError
from mini.server.job_store import INTERRUPTED, UNFINISHED
from mini.server.sessions import Session, SessionStore, check_session_id

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from mini.stores.base import VectorStore

log = logging.getLogger("mini.server")

PREFIX = "mini:"
SESSIONS = f"{PREFIX}sessions"
# A job's owner is judged dead this long after its last heartbeat (refreshed every third of it).
HEARTBEAT_TTL_S = 15.0
DEAD_OWNER = {
    "type": "interrupted",
    "message": "the server running the job stopped before it finished (no heartbeat); send the same request "
    "again to resume it (files already stored are skipped)",
}


def _session_key(session_id: str) -> str:
    return f"{PREFIX}session:{session_id}"


def _turns_key(session_id: str) -> str:
    return f"{PREFIX}session:{session_id}:turns"


class RedisSessionStore(SessionStore):
    """`SessionStore` over Redis (see the module docstring). Use the async methods (`find`, `open`, `add_turn`,
    `delete`); the synchronous `get`/`get_or_create` only see this replica's cache (after `open`)."""

    def __init__(
        self, url: str, base_store: VectorStore | None, *, max_sessions: int, ttl_s: float, max_turns: int
    ) -> None:
        super().__init__(max_sessions=max_sessions, ttl_s=ttl_s, max_turns=max_turns)
        self.url = url
        self.base_store = base_store
        self._key_ttl = max(1, int(ttl_s * 2) + 60)  # the safety net; the sorted set decides

    @property
    def _redis(self) -> Redis:
        return _redis.redis_client(self.url)

    # The cache: plain dictionary operations, never ending a session (Redis decides that).
    def get(self, session_id: str) -> Session | None:
        session = self._sessions.get(session_id)
        if session is not None:
            self._sessions.move_to_end(session_id)
        return session

    def get_or_create(self, session_id: str | None) -> Session:
        found = self.get(check_session_id(session_id)) if session_id is not None else None
        return (
            found
            if found is not None
            else self._cache(session_id or uuid.uuid4().hex, time.time(), [], False)
        )

    def _cache(self, session_id: str, created_at: float, turns: list[Turn], documents: bool) -> Session:
        session = self._sessions.get(session_id)
        if session is None:
            session = Session(session_id, self.max_turns, created_at=created_at)
            self._sessions[session_id] = session
            while len(self._sessions) > self.max_sessions:  # only the cache: the session lives on in Redis
                _, oldest = self._sessions.popitem(last=False)
                self._release(oldest)
        self._sessions.move_to_end(session_id)
        session.turns = deque(turns, maxlen=self.max_turns)
        if documents and session.store is None and self.base_store is not None:
            session.document_store(self.base_store)
        return session

    def _release(self, session: Session) -> None:
        """Close a cached session's store handle (not its collection: the session may live on elsewhere)."""
        store, session.store = session.store, None
        if store is not None:
            self._track(asyncio.get_running_loop().create_task(store.aclose()))

    def _track(self, task: asyncio.Task[None]) -> None:
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def find(self, session_id: str) -> Session | None:
        check_session_id(session_id)
        pipe = self._redis.pipeline(transaction=False)
        pipe.zscore(SESSIONS, session_id)
        pipe.hgetall(_session_key(session_id))
        pipe.lrange(_turns_key(session_id), 0, -1)
        score, data, turns = await _redis.call(pipe.execute(), what="reading a session")
        now = time.time()
        if score is None or not data:
            self._forget_local(session_id)
            return None
        if now - float(score) > self.ttl_s and not self._busy(session_id):
            await self._claim_and_end(session_id, bool(int(data.get("has_documents", 0))))
            self.expired += 1
            return None
        await self._touch(session_id, now)
        return self._cache(
            session_id,
            float(data.get("created_at", now)),
            [Turn(**json.loads(t)) for t in turns],
            bool(int(data.get("has_documents", 0))),
        )

    async def open(self, session_id: str | None, *, documents: bool = False) -> Session:
        session = await self.find(session_id) if session_id is not None else None
        session_id = session_id or uuid.uuid4().hex
        now = time.time()
        if session is None:
            pipe = self._redis.pipeline(transaction=True)
            pipe.hsetnx(_session_key(session_id), "created_at", now)
            pipe.hsetnx(_session_key(session_id), "has_documents", 0)
            pipe.zadd(SESSIONS, {session_id: now})
            pipe.expire(_session_key(session_id), self._key_ttl)
            pipe.zcard(SESSIONS)
            *_, count = await _redis.call(pipe.execute(), what="creating a session")
            await self._evict(int(count) - self.max_sessions)
            session = self._cache(session_id, now, [], False)
        if documents:
            await _redis.call(
                self._redis.hset(_session_key(session_id), "has_documents", 1), what="a session"
            )
            if session.store is None and self.base_store is not None:
                session.document_store(self.base_store)
        return session

    async def add_turn(self, session: Session, question: str, answer: str) -> None:
        turn = Turn(question, answer, time.time())
        key = _turns_key(session.id)
        pipe = self._redis.pipeline(transaction=True)
        pipe.rpush(key, json.dumps(turn.to_dict()))
        if self.max_turns:
            pipe.ltrim(key, -self.max_turns, -1)
        else:
            pipe.delete(key)
        pipe.expire(key, self._key_ttl)
        pipe.zadd(SESSIONS, {session.id: turn.at})
        await _redis.call(pipe.execute(), what="recording a chat turn")
        session.turns.append(turn)

    async def _touch(self, session_id: str, now: float) -> None:
        pipe = self._redis.pipeline(transaction=False)
        pipe.zadd(SESSIONS, {session_id: now}, xx=True)
        pipe.expire(_session_key(session_id), self._key_ttl)
        pipe.expire(_turns_key(session_id), self._key_ttl)
        await _redis.call(pipe.execute(), what="a session")

    async def _evict(self, excess: int) -> None:
        if excess <= 0:
            return
        popped = await _redis.call(self._redis.zpopmin(SESSIONS, excess), what="evicting sessions")
        for session_id, _score in cast(
            "list[tuple[str, float]]", popped
        ):  # ours alone: ZPOPMIN gave each id to one caller
            self.evicted += 1
            log.info("session %s evicted (more than %d sessions)", session_id, self.max_sessions)
            await self._end_claimed(session_id)

    def _busy(self, session_id: str) -> bool:
        session = self._sessions.get(session_id)
        return session is not None and session.active_jobs > 0

    def _forget_local(self, session_id: str) -> None:
        session = self._sessions.pop(session_id, None)
        if session is not None:
            self._release(session)

    async def _claim_and_end(self, session_id: str, documents: bool | None = None) -> bool:
        if not await _redis.call(self._redis.zrem(SESSIONS, session_id), what="ending a session"):
            self._forget_local(session_id)
            return False  # another replica claimed it and ends it
        await self._end_claimed(session_id, documents)
        return True

    async def _end_claimed(self, session_id: str, documents: bool | None = None) -> None:
        """End a session this replica claimed: hooks, its collection, its keys."""
        if documents is None:
            flag = await _redis.call(
                self._redis.hget(_session_key(session_id), "has_documents"), what="a session"
            )
            documents = bool(int(flag or 0))
        session = self._sessions.pop(session_id, None) or Session(session_id, self.max_turns)
        if documents and session.store is None and self.base_store is not None:
            session.document_store(self.base_store)
        await self._close(session)
        await _redis.call(
            self._redis.delete(_session_key(session_id), _turns_key(session_id)), what="a session"
        )

    async def delete(self, session_id: str) -> bool:
        return await self._claim_and_end(check_session_id(session_id))

    async def sweep_async(self) -> int:
        """End the sessions idle longer than the TTL that this replica claims; keep alive those with a job here;
        finish here the sessions another replica ended (below)."""
        now = time.time()
        stale = await _redis.call(
            self._redis.zrangebyscore(SESSIONS, "-inf", now - self.ttl_s), what="sweeping sessions"
        )
        ended = 0
        for session_id in cast("list[str]", stale):
            if self._busy(session_id):
                await self._touch(session_id, now)
            elif await self._claim_and_end(session_id):
                ended += 1
        self.expired += ended
        await self._finish_ended_elsewhere()
        return ended

    async def _finish_ended_elsewhere(self) -> None:
        """A session another replica ended (deleted, evicted) while this one held its documents: the ender
        dropped the collection and cancelled its own jobs, but a job of the session running HERE kept writing,
        which made the collection again. So for each cached session with documents that Redis no longer
        knows, this replica runs the end too: its `on_close` hooks cancel the jobs here, the collection is
        dropped (again; dropping is idempotent). Within one sweep interval of the end."""
        held = [s for s in self._sessions.values() if s.store is not None]
        if not held:
            return
        pipe = self._redis.pipeline(transaction=False)
        for session in held:
            pipe.zscore(SESSIONS, session.id)
        scores = await _redis.call(pipe.execute(), what="sweeping sessions")
        for session, score in zip(held, scores, strict=True):
            if score is None and self._sessions.get(session.id) is session:
                del self._sessions[session.id]
                log.info("session %s was ended by another replica: ending it here too", session.id)
                await self._close(session)

    async def _sweep_every(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.sweep_async()
            except SharedStateUnavailableError as exc:  # Redis down: try again next time
                log.warning("sweeping sessions failed: %s", exc)

    async def aclose(self) -> None:
        """Stop sweeping and close this replica's handles; no session ends (other replicas still serve them)."""
        await self._stop_sweeping()
        for session in list(self._sessions.values()):
            self._release(session)
        self._sessions.clear()
        await asyncio.gather(*self._closing, return_exceptions=True)
        await _redis.close_client(self.url)

    async def health(self) -> str | None:
        return await _redis.ping(self.url)

    def stats(self) -> dict[str, Any]:
        """This replica's view without I/O: `active` is the cluster's count, known only to `stats_async`."""
        return {**super().stats(), "active": None, "cached": len(self._sessions), "backend": "redis"}

    async def stats_async(self) -> dict[str, Any]:
        """With `active`: the sessions of the whole cluster (ZCARD); None while Redis is unreachable (stats
        still answer: they are how an operator sees what is wrong)."""
        stats = self.stats()
        with contextlib.suppress(SharedStateUnavailableError):
            stats["active"] = int(await _redis.call(self._redis.zcard(SESSIONS), what="counting sessions"))
        return stats


# -- jobs ------------------------------------------------------------------------------------------------------


def _job_key(job_id: str) -> str:
    return f"{PREFIX}job:{job_id}"


def _alive_key(owner: str) -> str:
    return f"{PREFIX}jobs:alive:{owner}"


class RedisJobStore:
    """Job states in Redis, with the interface of `job_store.JobStore`. Writes go through one queue and one
    writer task, so they land in the order they were made (a late progress write never overtakes the final
    state); the heartbeat task proves this instance alive to the others."""

    def __init__(self, url: str, *, owner: str) -> None:
        self.url = url
        self.owner = owner
        self._queue: asyncio.Queue[tuple[dict[str, Any], float | None, asyncio.Future[None]]] = (
            asyncio.Queue()
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False

    @property
    def _redis(self) -> Redis:
        return _redis.redis_client(self.url)

    async def open(self, *, ttl_s: float) -> int:
        self.ttl_s = ttl_s
        try:
            await self._beat()
        except (
            SharedStateUnavailableError
        ) as exc:  # the server starts anyway: job routes answer 503 until Redis is back
            log.warning("jobs: %s", exc)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._write_all(), name="mini-jobs-redis"),
            loop.create_task(self._beat_every(HEARTBEAT_TTL_S / 3), name="mini-jobs-heartbeat"),
        ]
        return 0

    async def _beat(self) -> None:
        await _redis.call(
            self._redis.set(_alive_key(self.owner), 1, px=int(HEARTBEAT_TTL_S * 1000)), what="jobs"
        )

    async def _beat_every(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self._beat()
            except SharedStateUnavailableError as exc:
                log.warning("job heartbeat failed: %s", exc)

    def save_soon(self, state: dict[str, Any]) -> asyncio.Future[None] | None:
        if self._closed:
            return None
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(({**state, "owner": self.owner}, None, future))
        return future

    def save_progress_soon(self, job_id: str, progress: dict[str, Any]) -> None:
        self.save_soon({"job_id": job_id, "progress": progress, "_progress_only": True})

    async def save(self, state: dict[str, Any], *, finished_at: float | None, ttl_s: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(({**state, "owner": self.owner}, finished_at, future))
        await future

    async def _write_all(self) -> None:
        while True:
            state, finished_at, future = await self._queue.get()
            try:
                await self._write(state, finished_at)
            except Exception as exc:
                log.warning("writing a job state to Redis failed: %s", exc)
                if not future.done():
                    future.set_exception(exc)
            else:
                if not future.done():
                    future.set_result(None)

    async def _write(self, state: dict[str, Any], finished_at: float | None) -> None:
        key = _job_key(state["job_id"])
        if state.pop("_progress_only", False):
            current = await _redis.call(self._redis.get(key), what="a job")
            if current is None:
                return
            merged = json.loads(current)
            if merged.get("status") != "running":
                return
            merged["progress"] = state["progress"]
            state = merged
        ttl = int(self.ttl_s) + 1 if finished_at is not None else None
        await _redis.call(self._redis.set(key, json.dumps(state), ex=ttl), what="writing a job")

    async def load(self, job_id: str, *, ttl_s: float) -> dict[str, Any] | None:
        text = await _redis.call(self._redis.get(_job_key(job_id)), what="reading a job")
        if text is None:
            return None
        state: dict[str, Any] = json.loads(text)
        owner = state.pop("owner", None)
        if state.get("status") in UNFINISHED and owner != self.owner:
            alive = await _redis.call(self._redis.exists(_alive_key(str(owner))), what="reading a job")
            if not alive:
                state.update(status="failed", error=dict(DEAD_OWNER))
                await _redis.call(
                    self._redis.set(
                        _job_key(job_id), json.dumps({**state, "owner": owner}), ex=int(ttl_s) + 1
                    ),
                    what="writing a job",
                )
        return state

    async def aclose(self) -> None:
        """Write what is queued, stop the heartbeat and drop this instance's heartbeat key (its jobs were all
        written interrupted by then)."""
        if self._closed:
            return
        self._closed = True
        done = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(({"job_id": "-", "_progress_only": True, "progress": {}}, None, done))
        with contextlib.suppress(Exception):
            await asyncio.wait_for(done, _redis.TIMEOUT_S * 5)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(SharedStateUnavailableError):
            await _redis.call(self._redis.delete(_alive_key(self.owner)), what="jobs")


# The INTERRUPTED marker of the SQLite store is what shutdown writes; kept importable from here for tests.
__all__ = ["DEAD_OWNER", "INTERRUPTED", "RedisJobStore", "RedisSessionStore"]
