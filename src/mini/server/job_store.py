"""Where ingestion jobs outlive the server process: their states in SQLite, their uploads in a swept spool.

Job states. One row per job in a small SQLite file (`MINI_JOBS_DB`; unset: `mini-jobs.sqlite3` inside the
store's directory when the store is a local LanceDB directory, else `$XDG_DATA_HOME/mini/jobs.sqlite3`). Every
state change (queued, running, done, failed) is written; progress at most once per `PROGRESS_WRITE_INTERVAL_S`.
All SQLite work happens on one worker thread that owns the connection: never on the event loop, and writes
land in the order they were made (a late progress write cannot overtake the final state). WAL mode and a busy
timeout let several servers share one file; SQLite needs that file on a local file system.

Owners. A job left "queued" or "running" by a process that died (crash, kill -9) must be reported as
interrupted, but a job of another live server sharing the file must not be. Pids are no proof of life (a
restarted container's server is pid 1 again), so each server instance holds an exclusive `flock` on a lease
file `<db>.owners/<instance>.lock` for its lifetime, and rows name their owner instance. The kernel drops the
lock when the process dies, however it dies: a lease whose lock can be taken belongs to a dead owner. At
start-up, the unfinished rows of dead owners are marked failed with error type "interrupted". Leases need
processes sharing one kernel (one host, or containers on one host), which SQLite's locking needs anyway.
Without `flock` (Windows), no other owner is ever judged dead.

Uploads. Each job's uploaded files wait in `<tmp>/mini-uploads-<uid>/<instance>/<job dir>/`, next to the
instance's lease `<instance>.lock`. At start-up, the directories of instances whose lease is free are
removed, so uploads of a killed server do not pile up, while a live server's uploads are left alone.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import json
import logging
import os
import shutil
import socket
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from mini import _registry
from mini.errors import ConfigurationError

try:
    import fcntl
except ImportError:  # Windows: no flock; nobody else's jobs or uploads are ever judged orphaned
    fcntl = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from mini.stores.base import VectorStore

log = logging.getLogger("mini.server")

T = TypeVar("T")

DB_NAME = "mini-jobs.sqlite3"
SCHEMA_VERSION = 1
# How long a statement waits for another server's write lock before failing (SQLite's busy timeout).
BUSY_TIMEOUT_S = 5.0
# A running job's progress reaches the database at most this often; state changes are written at once.
PROGRESS_WRITE_INTERVAL_S = 1.0
UNFINISHED = ("queued", "running")
INTERRUPTED = {
    "type": "interrupted",
    "message": "the server stopped before the job finished; send the same request again to resume it "
    "(files already stored unchanged are skipped)",
}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    session_id TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    finished_at REAL,
    progress TEXT NOT NULL,
    report TEXT,
    error TEXT,
    owner TEXT NOT NULL,
    owner_pid INTEGER NOT NULL,
    owner_host TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_unfinished ON jobs (status, owner);
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs (finished_at);
"""


# -- where the database lives ----------------------------------------------------------------------------------


def db_path(setting: str | None, store: VectorStore) -> Path:
    """The database file: `setting` (MINI_JOBS_DB) if given; else inside the store's directory when it is a
    local LanceDB one (the jobs belong to that store and move with it); else in the user's data directory."""
    # Resolved (symlinks followed): the owners' leases live beside the real file, where every server sharing
    # it looks for them.
    if setting:
        return Path(os.path.realpath(os.path.expanduser(setting)))
    uri = store.uri
    if uri is not None and _registry.store_kind(uri) == "lancedb":
        directory = getattr(store.backend, "path", None)  # the backend resolved the URI to a path
        if isinstance(directory, str):
            return Path(os.path.realpath(os.path.join(directory, DB_NAME)))
    data_home = os.environ.get("XDG_DATA_HOME", "")
    base = data_home if os.path.isabs(data_home) else os.path.expanduser("~/.local/share")  # XDG's rule
    return Path(os.path.realpath(os.path.join(base, "mini", "jobs.sqlite3")))


# -- leases: "is the owner still alive?" -----------------------------------------------------------------------


class Lease:
    """An exclusive `flock` on `path`, held until `release` or the process's death. Blocking: use a thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        if fcntl is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                # Waits only while a sweeper holds the new file, taking it for a dead owner's (we had not
                # locked it yet); the sweeper then unlinks it, and a lock on an unlinked file proves nothing:
                # start over with a new file.
                fcntl.flock(fd, fcntl.LOCK_EX)
                if os.fstat(fd).st_ino == os.stat(self.path).st_ino:
                    self._fd = fd
                    return
            except FileNotFoundError:
                pass
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)

    def release(self) -> None:
        if self._fd is not None:
            self.path.unlink(missing_ok=True)  # while still locked: nobody takes it for a dead owner's
            os.close(self._fd)
            self._fd = None


def take_if_orphaned(lease: Path, remove: Callable[[], None]) -> bool:
    """If nobody holds the lease file `lease`, run `remove` (its owner's leftovers) and delete it; blocking.

    A missing lease counts as orphaned (it is created, and locked, to be taken): an owner makes its lease before
    anything the lease guards and holds it until it has removed all that, and `remove` runs only while we hold
    the very file at `lease`, so it never overlaps a live owner.
    """
    if fcntl is None:
        return False
    fd = os.open(lease, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # its owner is alive (or another sweeper is at it, and will finish)
        try:
            if os.stat(lease).st_ino != os.fstat(fd).st_ino:
                return False  # swept and replaced since we opened it: not the file we hold
        except FileNotFoundError:
            return False  # swept by another meanwhile
        remove()
        lease.unlink(missing_ok=True)
        return True
    finally:
        os.close(fd)


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"))


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


# -- the database ----------------------------------------------------------------------------------------------


class JobStates(Protocol):
    """What `JobManager` needs of a job store: `JobStore` (SQLite, one host) or `redis_state.RedisJobStore`
    (replicas). `save_soon` returns a future of the write (None once closed); writes land in call order."""

    async def open(self, *, ttl_s: float) -> int: ...
    def save_soon(
        self, state: dict[str, Any]
    ) -> concurrent.futures.Future[Any] | asyncio.Future[Any] | None: ...
    def save_progress_soon(self, job_id: str, progress: dict[str, Any]) -> None: ...
    async def save(self, state: dict[str, Any], *, finished_at: float | None, ttl_s: float) -> None: ...
    async def load(self, job_id: str, *, ttl_s: float) -> dict[str, Any] | None: ...
    async def aclose(self) -> None: ...


class JobStore:
    """Job rows in one SQLite file, written by this server instance (`owner`).

    One worker thread owns the connection: `sqlite3` connections belong to their thread, and one thread keeps
    the writes in the order they were made. Construction does no I/O; `open` (async) connects and recovers.
    """

    def __init__(self, path: Path, *, owner: str) -> None:
        self.path = path
        self.owner = owner
        self._lease = Lease(Path(f"{path}.owners") / f"{owner}.lock")
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="mini-jobs-db")
        self._pid = os.getpid()
        self._host = socket.gethostname()
        self._db: sqlite3.Connection | None = None
        self._closed = False

    # Everything below with a leading underscore runs on the store's thread.

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    def _soon(self, fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future[Any] | None:
        """Queue a write without waiting for it (progress from a sync callback); failures are logged."""
        if self._closed:
            return None
        future = self._thread.submit(fn, *args)
        future.add_done_callback(self._log_failure)
        return future

    @staticmethod
    def _log_failure(future: concurrent.futures.Future[Any]) -> None:
        if not future.cancelled() and future.exception() is not None:
            log.warning("writing a job state failed: %s", future.exception())

    @property
    def _conn(self) -> sqlite3.Connection:
        assert self._db is not None, "JobStore used before open()"
        return self._db

    async def open(self, *, ttl_s: float) -> int:
        """Connect, take this instance's lease, mark dead owners' unfinished jobs interrupted and forget
        expired ones. Returns how many jobs were marked interrupted."""
        return await self._call(self._open, ttl_s)

    def _open(self, ttl_s: float) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit: each statement is its own transaction, so no write lock outlives a statement.
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # with WAL: durable when the process dies, fast to commit
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise ConfigurationError(
                    f"the jobs database {self.path} was made by a newer version of mini; "
                    "upgrade, or point MINI_JOBS_DB at another file"
                )
            db.executescript(_SCHEMA)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except BaseException:
            db.close()
            raise
        self._db = db
        self._lease.acquire()  # before the first row naming us as owner is written
        interrupted = self._recover()
        self._forget(ttl_s)
        return interrupted

    def _recover(self) -> int:
        marks = ",".join("?" * len(UNFINISHED))
        leases = self._lease.path.parent
        # Owners with unfinished jobs, and owners that left a lease (they may have died with none): marking
        # under the dead owner's lock means a lease is never gone while its owner's rows are unfinished.
        owners = {
            owner
            for (owner,) in self._conn.execute(
                f"SELECT DISTINCT owner FROM jobs WHERE status IN ({marks})", UNFINISHED
            )
        }
        owners |= {path.stem for path in leases.glob("*.lock")}
        owners.discard(self.owner)
        marked = 0

        def mark(owner: str) -> None:
            nonlocal marked
            now = time.time()
            marked += self._conn.execute(
                f"UPDATE jobs SET status = 'failed', error = ?, finished_at = ?, updated_at = ? "
                f"WHERE owner = ? AND status IN ({marks})",
                (_dumps(INTERRUPTED), now, now, owner, *UNFINISHED),
            ).rowcount

        for owner in sorted(owners):
            take_if_orphaned(leases / f"{owner}.lock", functools.partial(mark, owner))
        if marked:
            log.warning("%d ingestion job(s) of a stopped server marked interrupted", marked)
        return marked

    def _forget(self, ttl_s: float) -> None:
        self._conn.execute("DELETE FROM jobs WHERE finished_at < ?", (time.time() - ttl_s,))

    async def save(self, state: dict[str, Any], *, finished_at: float | None, ttl_s: float) -> None:
        """Write a job's state (its `to_dict()`); once finished, also forget jobs past the TTL."""
        await self._call(self._put, state, finished_at, ttl_s)

    def save_soon(self, state: dict[str, Any]) -> concurrent.futures.Future[Any] | None:
        """Queue writing an unfinished job's state (`to_dict()`) without waiting for it."""
        return self._soon(self._put, state, None, None)

    def _put(self, state: dict[str, Any], finished_at: float | None, ttl_s: float | None) -> None:
        now = time.time()
        # A finished row is final: nothing this process still had queued may turn it back.
        self._conn.execute(
            "INSERT INTO jobs (id, status, session_id, created_at, updated_at, finished_at, progress, report,"
            " error, owner, owner_pid, owner_host) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET status = excluded.status, updated_at = excluded.updated_at,"
            " finished_at = excluded.finished_at, progress = excluded.progress, report = excluded.report,"
            " error = excluded.error WHERE jobs.status IN ('queued', 'running')",
            (
                state["job_id"],
                state["status"],
                state.get("session_id"),
                state["created_at"],
                now,
                finished_at,
                _dumps(state["progress"]),
                _dumps(state.get("report")),
                _dumps(state.get("error")),
                self.owner,
                self._pid,
                self._host,
            ),
        )
        if ttl_s is not None:
            self._forget(ttl_s)

    def save_progress_soon(self, job_id: str, progress: dict[str, Any]) -> None:
        self._soon(self._put_progress, job_id, progress)

    def _put_progress(self, job_id: str, progress: dict[str, Any]) -> None:
        self._conn.execute(
            "UPDATE jobs SET progress = ?, updated_at = ? WHERE id = ? AND status = 'running'",
            (_dumps(progress), time.time(), job_id),
        )

    async def load(self, job_id: str, *, ttl_s: float) -> dict[str, Any] | None:
        """A job's state as `Job.to_dict()` gave it, or None if unknown or finished longer than `ttl_s` ago."""
        return await self._call(self._load, job_id, ttl_s)

    def _load(self, job_id: str, ttl_s: float) -> dict[str, Any] | None:
        row = self._conn.execute(
            "SELECT status, session_id, created_at, progress, report, error FROM jobs"
            " WHERE id = ? AND (finished_at IS NULL OR finished_at >= ?)",
            (job_id, time.time() - ttl_s),
        ).fetchone()
        if row is None:
            return None
        status, session_id, created_at, progress, report, error = row
        state: dict[str, Any] = {
            "job_id": job_id,
            "status": status,
            "session_id": session_id,
            "created_at": created_at,
            "progress": _loads(progress),
        }
        if report is not None:
            state["report"] = _loads(report)
        if error is not None:
            state["error"] = _loads(error)
        return state

    async def aclose(self) -> None:
        """Wait for queued writes, close the connection, release the lease."""
        if self._closed:
            return
        self._closed = True
        await self._call(self._close)
        self._thread.shutdown(wait=False)  # idle now: its thread ends at once

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        self._lease.release()


async def open_job_store(
    setting: str | None, store: VectorStore, *, owner: str, ttl_s: float
) -> JobStore | None:
    """The server's job database (see the module docstring), opened and recovered.

    A database the operator named (MINI_JOBS_DB) that cannot be opened stops the start-up; the default one
    (e.g. in a read-only store directory) only costs durability: jobs then live in memory, with a warning.
    """
    path = await asyncio.to_thread(db_path, setting, store)  # reads the environment, home and working dirs
    jobs = JobStore(path, owner=owner)
    try:
        await jobs.open(ttl_s=ttl_s)
    except (OSError, sqlite3.Error) as exc:
        await jobs.aclose()
        if setting:
            raise ConfigurationError(
                f"cannot open the jobs database {path} ({exc}); set MINI_JOBS_DB to a writable file"
            ) from exc
        log.warning("jobs will not survive a restart: cannot open %s (%s); set MINI_JOBS_DB", path, exc)
        return None
    except BaseException:
        await jobs.aclose()
        raise
    return jobs


# -- the upload spool ------------------------------------------------------------------------------------------


class UploadSpool:
    """Per-job upload directories of one server instance, swept of dead instances' at start-up.

    Layout: `<root>/<instance>.lock` (the instance's lease, made first) and `<root>/<instance>/<job dirs>`.
    All methods block (disk): call them in a thread.
    """

    def __init__(self, root: Path, *, owner: str) -> None:
        self.root = root
        self.dir = root / owner
        self._lease = Lease(root / f"{owner}.lock")

    @staticmethod
    def default_root() -> Path:
        # Per user: a shared /tmp must not let one user's server sweep (or plant) another's directories.
        uid = os.getuid() if hasattr(os, "getuid") else None
        return Path(tempfile.gettempdir()) / ("mini-uploads" if uid is None else f"mini-uploads-{uid}")

    def open(self) -> int:
        """Take the lease, remove dead instances' uploads, make our directory; returns how many dirs went."""
        self.root.mkdir(mode=0o700, exist_ok=True)
        info = self.root.lstat()
        if self.root.is_symlink() or (hasattr(os, "getuid") and info.st_uid != os.getuid()):
            raise ConfigurationError(f"{self.root} is not a directory of this user; remove it or set TMPDIR")
        self._lease.acquire()
        removed = 0
        # Every instance that left a lease or a directory (a directory alone: its lease was deleted by hand).
        owners = {
            entry.stem if entry.suffix == ".lock" else entry.name
            for entry in self.root.iterdir()
            if entry.suffix == ".lock" or entry.is_dir()
        }
        owners.discard(self.dir.name)
        for owner in sorted(owners):
            leftovers = self.root / owner
            if take_if_orphaned(self.root / f"{owner}.lock", functools.partial(_rmtree, leftovers)):
                removed += 1
        if removed:
            log.info("removed the uploads of %d stopped server(s) from %s", removed, self.root)
        self.dir.mkdir(exist_ok=True)
        return removed

    def make_dir(self) -> Path:
        """A new, empty directory for one job's uploads."""
        return Path(tempfile.mkdtemp(prefix="job-", dir=self.dir))

    def close(self) -> None:
        _rmtree(self.dir)  # before the lease goes: a sweeper never sees the directory unowned
        self._lease.release()


def _rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def new_instance_id() -> str:
    """Names one server instance (one app lifespan) as an owner of jobs and uploads."""
    return uuid.uuid4().hex
