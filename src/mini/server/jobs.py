"""Background ingestion jobs: at most `max_concurrent_jobs` run at once, the rest wait their turn in order.

A job is an `asyncio.Task` made at submission; it waits on a semaphore (status "queued"), runs its work
("running") and ends "done" (with the ingestion report) or "failed" (with `{type, message}`; a server-side
failure gets a fixed message, its details go to the log). Finished jobs are kept `ttl_s` seconds for
`GET /v1/jobs/{id}`, then forgotten (checked whenever jobs are submitted or looked up: no sweeper task needed).

With a `JobStore` (see `job_store`; `redis_state.RedisJobStore` for replicas), every state change is also written
to SQLite (or Redis), progress at most once per
`PROGRESS_WRITE_INTERVAL_S`: a job this process does not hold in memory (it ran before a restart, or on another
server sharing the database) is looked up there. Shutdown cancels every job; their `cleanup` (temp files)
still runs, and they end "failed" with type "interrupted": re-submitting the request resumes them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from mini._checks import at_least
from mini.errors import MiniError, SharedStateUnavailableError
from mini.ingest.report import IngestProgress, IngestReport
from mini.server.errors import ApiError, public_error
from mini.server.job_store import INTERRUPTED, PROGRESS_WRITE_INTERVAL_S, JobStates

log = logging.getLogger("mini.server")

JobStatus = Literal["queued", "running", "done", "failed"]
# Waiting jobs hold their uploads on disk and a task each: beyond this many per running slot, new jobs are
# refused (429) rather than queued without bound.
QUEUED_PER_SLOT = 50
_JOB_ID = re.compile(r"[0-9a-f]{32}")  # what `submit` makes: anything else is unknown without a lookup


def _progress(p: IngestProgress | None = None, *, extra_files: int = 0) -> dict[str, int | None]:
    if p is None:
        return {
            "files_total": None,
            "files_done": 0,
            "chunks_total": 0,
            "chunks_embedded": 0,
            "chunks_written": 0,
        }
    return {
        # None until the ingestor has discovered its files.
        "files_total": None if p.files_total is None else p.files_total + extra_files,
        "files_done": p.files_done + extra_files,
        "chunks_total": p.chunks_total,
        "chunks_embedded": p.chunks_embedded,
        "chunks_written": p.chunks_written,
    }


@dataclass(eq=False)
class Job:
    id: str
    session_id: str | None = None
    status: JobStatus = "queued"
    progress: dict[str, int | None] = field(default_factory=_progress)
    report: IngestReport | None = None
    error: dict[str, str] | None = None
    created_at: float = field(default_factory=time.time)
    finished: float | None = None  # monotonic, for the TTL
    task: asyncio.Task[None] | None = None
    # Files that failed before the ingestor saw them (unreadable uploads, paths outside the root): progress
    # counts them as done, so the numbers add up to the report's.
    extra_files: int = 0
    # Told of every progress change (the manager's throttled database write); None: memory only.
    on_change: Callable[[Job], None] | None = field(default=None, repr=False)
    # The pending write of the job's first row, if any: `JobManager.recorded` waits for it.
    recording: concurrent.futures.Future[Any] | asyncio.Future[Any] | None = field(default=None, repr=False)

    def on_progress(self, progress: IngestProgress) -> None:
        """The ingestor's progress callback (called on the loop's thread)."""
        self.progress = _progress(progress, extra_files=self.extra_files)
        if self.on_change is not None:
            self.on_change(self)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "job_id": self.id,
            "status": self.status,
            "session_id": self.session_id,
            "created_at": self.created_at,
            "progress": dict(self.progress),
        }
        if self.report is not None:
            data["report"] = self.report.to_dict()
        if self.error is not None:
            data["error"] = dict(self.error)
        return data


Work = Callable[[Job], Awaitable[IngestReport]]
Cleanup = Callable[[], Awaitable[None]]


class JobManager:
    def __init__(
        self,
        *,
        max_concurrent: int,
        ttl_s: float,
        max_queued: int | None = None,
        store: JobStates | None = None,
        progress_interval_s: float = PROGRESS_WRITE_INTERVAL_S,
    ) -> None:
        at_least(1, max_concurrent_jobs=max_concurrent)
        self.max_concurrent = max_concurrent
        self.ttl_s = ttl_s
        self.max_queued = max_queued if max_queued is not None else QUEUED_PER_SLOT * max_concurrent
        self.store = store
        self.progress_interval_s = progress_interval_s
        self._slots = asyncio.Semaphore(max_concurrent)
        self._jobs: dict[str, Job] = {}
        self._progress_saved: dict[str, float] = {}  # job id -> when its progress was last written
        self._closed = False

    def _forget_expired(self) -> None:
        now = time.monotonic()
        stale = [
            j.id for j in self._jobs.values() if j.finished is not None and now - j.finished > self.ttl_s
        ]
        for job_id in stale:
            del self._jobs[job_id]

    def get(self, job_id: str) -> Job | None:
        """A job of this process, from memory."""
        self._forget_expired()
        return self._jobs.get(job_id)

    async def find(self, job_id: str) -> dict[str, Any] | None:
        """A job's state (`Job.to_dict()`): this process's from memory, any other from the database."""
        job = self.get(job_id)
        if job is not None:
            return job.to_dict()
        if self.store is None or not _JOB_ID.fullmatch(job_id):
            return None
        try:
            return await self.store.load(job_id, ttl_s=self.ttl_s)
        except Exception as exc:
            log.warning("reading job %s from the jobs database failed: %s", job_id, exc)
            raise ApiError(503, "unavailable", "the jobs database is unavailable; try again later") from None

    def submit(self, work: Work, *, session_id: str | None = None, cleanup: Cleanup | None = None) -> Job:
        """Start `work` as a job (queued until a slot frees up); `cleanup` runs after it, whatever happens.

        Raises `ApiError` 429 when too many jobs are waiting, 503 during shutdown (`cleanup` is then the
        caller's to run). The job's first database row is queued here; `recorded` waits for it.
        """
        if self._closed:
            raise ApiError(503, "unavailable", "the server is shutting down")
        self._forget_expired()
        if sum(j.status == "queued" for j in self._jobs.values()) >= self.max_queued:
            raise ApiError(
                429, "rate_limited", f"{self.max_queued} ingestion jobs are already waiting; try again later"
            )
        job = Job(uuid.uuid4().hex, session_id)  # unguessable: the id is what lets a client read the job
        if self.store is not None:
            # Queued before the task can run: the store's one thread writes this row before any later state.
            job.recording = self.store.save_soon(job.to_dict())
            job.on_change = self._progress_changed
        job.task = asyncio.get_running_loop().create_task(
            self._run(job, work, cleanup), name=f"mini-job-{job.id}"
        )
        self._jobs[job.id] = job
        return job

    async def recorded(self, job: Job) -> None:
        """Wait until the job's first row is in the database (so a restart from now on still knows it).

        A local database that fails is logged by the store and the job runs on, in memory. Shared state
        (Redis) that is unreachable withdraws the job and raises `ApiError` 503: the other replicas could
        never report it, so accepting it (202) would hand the client an id that leads nowhere."""
        if job.recording is None:
            return
        try:
            # Shielded: a client that hangs up must not cancel the queued write itself.
            await asyncio.shield(asyncio.wrap_future(job.recording))
        except SharedStateUnavailableError:
            await self._withdraw(job)
            raise  # 503 "unavailable", as every route that needs Redis
        except Exception:  # logged by the store
            pass

    async def _withdraw(self, job: Job) -> None:
        """Cancel a job that was never accepted and forget it (its cleanup still runs)."""
        self._jobs.pop(job.id, None)
        if job.task is not None and not job.task.done():
            job.task.cancel()
            await asyncio.gather(job.task, return_exceptions=True)

    def _progress_changed(self, job: Job) -> None:
        # Progress comes many times a second on a large ingestion: writing each would queue thousands of
        # writes. The final state (with the last progress) is always written when the job ends.
        now = time.monotonic()
        last = self._progress_saved.get(job.id)
        if self.store is None or (last is not None and now - last < self.progress_interval_s):
            return
        self._progress_saved[job.id] = now
        self.store.save_progress_soon(job.id, dict(job.progress))

    async def _run(self, job: Job, work: Work, cleanup: Cleanup | None) -> None:
        try:
            async with self._slots:
                job.status = "running"
                if self.store is not None:
                    self.store.save_soon(job.to_dict())
                job.report = await work(job)
            job.status = "done"
        except asyncio.CancelledError:
            job.status = "failed"
            # Shutdown stops a job the client may simply send again (ingestion skips what is already
            # stored); a cancellation by its session ending is final.
            job.error = (
                dict(INTERRUPTED)
                if self._closed
                else {"type": "cancelled", "message": "the job was cancelled (its session ended)"}
            )
            raise
        except Exception as exc:
            # Errors that would fail every file alike (bad credentials, unknown model) end the job; per-file
            # failures never get here, they are listed in the report.
            job.status = "failed"
            _, kind, message = public_error(exc)
            job.error = {"type": kind, "message": message}
            # The details (paths, SQL, upstream addresses) are for the log only.
            log.warning(
                "ingestion job %s failed: %s: %s",
                job.id,
                type(exc).__name__,
                exc,
                exc_info=not isinstance(exc, MiniError),
            )
        finally:
            job.finished = time.monotonic()
            job.on_change = None
            self._progress_saved.pop(job.id, None)
            await self._save_final(job)
            if cleanup is not None:
                try:
                    await cleanup()
                except Exception:
                    log.exception("cleaning up after job %s failed", job.id)

    async def _save_final(self, job: Job) -> None:
        if self.store is None:
            return
        try:
            await self.store.save(job.to_dict(), finished_at=time.time(), ttl_s=self.ttl_s)
        except Exception as exc:  # the job's outcome stays readable from memory until the TTL
            log.warning("writing the final state of job %s failed: %s", job.id, exc)

    async def cancel(self, jobs: list[Job]) -> None:
        tasks = [j.task for j in jobs if j.task is not None and not j.task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def cancel_session(self, session_id: str) -> None:
        """Cancel the session's unfinished jobs and wait for them (before its collection is dropped)."""
        await self.cancel([j for j in self._jobs.values() if j.session_id == session_id])

    async def aclose(self) -> None:
        """Stop every job (recorded as interrupted), then close the database."""
        self._closed = True
        await self.cancel(list(self._jobs.values()))
        if self.store is not None:
            await self.store.aclose()

    def stats(self) -> dict[str, int]:
        """This process's jobs by status (jobs of earlier runs or other servers are not counted)."""
        self._forget_expired()
        counts = dict.fromkeys(("queued", "running", "done", "failed"), 0)
        for job in self._jobs.values():
            counts[job.status] += 1
        return counts
