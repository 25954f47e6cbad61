"""Background ingestion jobs: at most `max_concurrent_jobs` run at once, the rest wait their turn in order.

A job is an `asyncio.Task` made at submission; it waits on a semaphore (status "queued"), runs its work
("running") and ends "done" (with the ingestion report) or "failed" (with `{type, message}`). Finished jobs
are kept `ttl_s` seconds for `GET /v1/jobs/{id}`, then forgotten (checked whenever jobs are submitted or
looked up: no sweeper task needed). Shutdown cancels every job; their `cleanup` (temp files) still runs.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from mini._checks import at_least
from mini.ingest.report import IngestProgress, IngestReport
from mini.server.errors import ApiError, status_for

log = logging.getLogger("mini.server")

JobStatus = Literal["queued", "running", "done", "failed"]
# Waiting jobs hold their uploads on disk and a task each: beyond this many per running slot, new jobs are
# refused (429) rather than queued without bound.
QUEUED_PER_SLOT = 50


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

    def on_progress(self, progress: IngestProgress) -> None:
        """The ingestor's progress callback (called on the loop's thread)."""
        self.progress = _progress(progress, extra_files=self.extra_files)

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
    def __init__(self, *, max_concurrent: int, ttl_s: float, max_queued: int | None = None) -> None:
        at_least(1, max_concurrent_jobs=max_concurrent)
        self.max_concurrent = max_concurrent
        self.ttl_s = ttl_s
        self.max_queued = max_queued if max_queued is not None else QUEUED_PER_SLOT * max_concurrent
        self._slots = asyncio.Semaphore(max_concurrent)
        self._jobs: dict[str, Job] = {}
        self._closed = False

    def _forget_expired(self) -> None:
        now = time.monotonic()
        stale = [
            j.id for j in self._jobs.values() if j.finished is not None and now - j.finished > self.ttl_s
        ]
        for job_id in stale:
            del self._jobs[job_id]

    def get(self, job_id: str) -> Job | None:
        self._forget_expired()
        return self._jobs.get(job_id)

    def submit(self, work: Work, *, session_id: str | None = None, cleanup: Cleanup | None = None) -> Job:
        """Start `work` as a job (queued until a slot frees up); `cleanup` runs after it, whatever happens.

        Raises `ApiError` 429 when too many jobs are waiting, 503 during shutdown (`cleanup` is then the
        caller's to run).
        """
        if self._closed:
            raise ApiError(503, "unavailable", "the server is shutting down")
        self._forget_expired()
        if sum(j.status == "queued" for j in self._jobs.values()) >= self.max_queued:
            raise ApiError(
                429, "rate_limited", f"{self.max_queued} ingestion jobs are already waiting; try again later"
            )
        job = Job(uuid.uuid4().hex, session_id)  # unguessable: the id is what lets a client read the job
        job.task = asyncio.get_running_loop().create_task(
            self._run(job, work, cleanup), name=f"mini-job-{job.id}"
        )
        self._jobs[job.id] = job
        return job

    async def _run(self, job: Job, work: Work, cleanup: Cleanup | None) -> None:
        try:
            async with self._slots:
                job.status = "running"
                job.report = await work(job)
            job.status = "done"
        except asyncio.CancelledError:
            job.status = "failed"
            job.error = {
                "type": "cancelled",
                "message": "the job was cancelled (session ended or server stopping)",
            }
            raise
        except Exception as exc:
            # Errors that would fail every file alike (bad credentials, unknown model) end the job; per-file
            # failures never get here, they are listed in the report.
            job.status = "failed"
            job.error = {"type": status_for(exc)[1], "message": str(exc) or type(exc).__name__}
            log.warning("ingestion job %s failed: %s", job.id, job.error["message"])
        finally:
            job.finished = time.monotonic()
            if cleanup is not None:
                try:
                    await cleanup()
                except Exception:
                    log.exception("cleaning up after job %s failed", job.id)

    async def cancel(self, jobs: list[Job]) -> None:
        tasks = [j.task for j in jobs if j.task is not None and not j.task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def cancel_session(self, session_id: str) -> None:
        """Cancel the session's unfinished jobs and wait for them (before its collection is dropped)."""
        await self.cancel([j for j in self._jobs.values() if j.session_id == session_id])

    async def aclose(self) -> None:
        self._closed = True
        await self.cancel(list(self._jobs.values()))

    def stats(self) -> dict[str, int]:
        self._forget_expired()
        counts = dict.fromkeys(("queued", "running", "done", "failed"), 0)
        for job in self._jobs.values():
            counts[job.status] += 1
        return counts
