"""Adding documents: `POST /v1/documents` starts a background ingestion job; `GET /v1/jobs/{id}` follows it.

    POST /v1/documents   multipart: files=<file>..., session_id?            -> 202 {job_id, status}
                         JSON: {texts?: [{text, source?, metadata?}], urls?, paths?, session_id?}
    GET  /v1/jobs/{id}   {job_id, status, progress, report?, error?}

With a `session_id`, documents go to that session's own collection (searched only by its chat turns, dropped
with it); without, to the global collection.

Uploads. Each file is copied (in a thread) into a per-job directory of the server's upload spool
(`<tmp>/mini-uploads-<uid>/<instance>/`, see `job_store.UploadSpool`) under a name we make up (`0000.upload`,
...), never the client's; the directory is removed when the job ends, and a killed server's are removed when
the next server starts. The job parses the bytes itself (`loaders.parse_bytes`, in a thread) into `Document`s
named `upload:<session id or global>/<filename>`: the Ingestor would name a file by its path, and a temp path
changes with every upload, so re-uploading a file would add a second copy instead of being skipped as
unchanged (or updated in place when edited). The client's filename, stripped of any directory part and
control characters, is only a label.
Copying first (rather than holding the bytes) keeps memory flat while jobs wait for a slot.

Jobs are durable: their states are kept in SQLite (`job_store.JobStore`), so `GET /v1/jobs/{id}` answers
after a restart, and a job the server did not finish (crash, kill, shutdown) reads "failed" with type
"interrupted": sending the same request again resumes it, as files already stored unchanged are skipped.

Server-side paths are refused (403) unless `MINI_INGEST_ROOT` is set, and then must resolve, symlinks
followed, inside it; relative paths are relative to the root. Files found by walking a directory are checked
again, so a symlink inside the root that points outside it is never read.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError
from starlette.datastructures import UploadFile

from mini.errors import DocumentError, MiniError, UnsupportedFormatError
from mini.ingest import loaders
from mini.ingest.chunking import content_hash
from mini.ingest.netguard import FetchPolicy
from mini.ingest.report import IngestIssue, IngestReport
from mini.ingest.web import is_url, redact_url
from mini.server import sessions as sessions_module
from mini.server.deps import get_rag, get_settings, require_api_key, state
from mini.server.errors import ApiError
from mini.server.job_store import JobStates, UploadSpool, new_instance_id, open_job_store
from mini.server.jobs import Job, JobManager
from mini.server.redis_state import RedisJobStore
from mini.server.schemas import ERRORS, RequestBody
from mini.server.sessions import SESSION_ID_PATTERN, Session, SessionStore, check_session_id
from mini.types import Document

if TYPE_CHECKING:
    from mini.rag import AgenticRAG
    from mini.stores.base import VectorStore

log = logging.getLogger("mini.server")

router = APIRouter(
    prefix="/v1", dependencies=[Depends(require_api_key)], responses=ERRORS, tags=["documents"]
)

MAX_FILES = 100  # per upload request
MAX_ITEMS = 10_000  # texts, urls or paths per JSON request
_MAX_NAME_CHARS = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# JSON bodies bigger than this are validated in a thread (parsing megabytes holds the loop for many ms).
_THREAD_JSON_BYTES = 256 * 1024
_COPY_CHUNK = 1 << 20


class TextIn(BaseModel):
    text: str
    source: str | None = Field(
        default=None,
        min_length=1,
        max_length=1_000,
        description='A stable name (re-sending it updates the text); default "text:<content hash>".',
    )
    metadata: dict[str, Any] | None = None


class DocumentsRequest(RequestBody):  # RequestBody: unusable text anywhere is a 422
    texts: list[TextIn] = Field(default_factory=list, max_length=MAX_ITEMS)
    # Fetched by the server under its fetch policy: public addresses only, plus what MINI_FETCH_ALLOW opens
    # (SSRF: a client could otherwise point the server at loopback or internal addresses).
    urls: list[str] = Field(default_factory=list, max_length=MAX_ITEMS)
    paths: list[str] = Field(
        default_factory=list, max_length=MAX_ITEMS, description="Server-side files; need MINI_INGEST_ROOT."
    )
    session_id: str | None = Field(default=None, pattern=SESSION_ID_PATTERN)


class JobAccepted(BaseModel):
    job_id: str
    status: str
    session_id: str | None


@dataclass(frozen=True, slots=True)
class _Upload:
    path: Path  # our temp file
    filename: str  # the client's name, sanitised: a label only
    source: str  # upload:<scope>/<filename>


@dataclass
class _Batch:
    """What one request asks to ingest, checked and ready for a job."""

    session_id: str | None = None
    documents: list[Document] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)  # real paths, inside `root`
    root: str | None = None
    uploads: list[_Upload] = field(default_factory=list)
    tmpdir: Path | None = None

    async def remove_files(self) -> None:
        if self.tmpdir is not None:
            await asyncio.to_thread(shutil.rmtree, self.tmpdir, True)


# -- request parsing -----------------------------------------------------------------------------------------


def safe_filename(name: str | None) -> str:
    """The last part of a client's filename, without control characters, at most 200 characters."""
    base = _CONTROL.sub("", re.split(r"[\\/]", name or "")[-1]).strip()
    if base in ("", ".", ".."):
        return "upload"
    if len(base) > _MAX_NAME_CHARS:
        suffix = PurePosixPath(base).suffix[:16]
        base = base[: _MAX_NAME_CHARS - len(suffix)] + suffix
    return base


def _copy(src: IO[bytes], dest: Path) -> None:
    src.seek(0)
    with dest.open("xb") as out:
        shutil.copyfileobj(src, out, _COPY_CHUNK)


async def _from_multipart(request: Request) -> _Batch:
    async with request.form(max_files=MAX_FILES, max_fields=10) as form:
        session_id = form.get("session_id")
        if session_id is not None and not isinstance(session_id, str):
            raise ApiError(422, "invalid_input", "session_id must be a form field, not a file")
        batch = _Batch(session_id=check_session_id(session_id) if session_id else None)
        files = form.getlist("files")
        if not files:
            raise ApiError(422, "invalid_input", "no files: send them in the multipart field 'files'")
        if not all(isinstance(f, UploadFile) for f in files):
            raise ApiError(422, "invalid_input", "every 'files' part must be a file")
        names = [safe_filename(f.filename) for f in files if isinstance(f, UploadFile)]
        if len(set(names)) != len(names):
            raise ApiError(422, "invalid_input", "two files in one upload have the same name")
        scope = batch.session_id or "global"
        spool: UploadSpool = state(request, "upload_spool")
        batch.tmpdir = await asyncio.to_thread(spool.make_dir)
        try:
            for i, (upload, name) in enumerate(zip(files, names, strict=True)):
                assert isinstance(upload, UploadFile)
                dest = batch.tmpdir / f"{i:04d}.upload"
                await asyncio.to_thread(_copy, upload.file, dest)
                batch.uploads.append(_Upload(dest, name, f"upload:{scope}/{name}"))
        except BaseException:
            await batch.remove_files()
            raise
    return batch


async def _from_json(request: Request, ingest_root: str | None) -> _Batch:
    raw = await request.body()
    try:
        if len(raw) > _THREAD_JSON_BYTES:
            body = await asyncio.to_thread(DocumentsRequest.model_validate_json, raw)
        else:
            body = DocumentsRequest.model_validate_json(raw)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from None
    if not (body.texts or body.urls or body.paths):
        raise ApiError(422, "invalid_input", "nothing to ingest: give texts, urls or paths")
    batch = _Batch(session_id=body.session_id)
    for item in body.texts:
        source = item.source or f"text:{content_hash(item.text)}"
        batch.documents.append(Document(item.text, source, dict(item.metadata or {})))
    for url in body.urls:
        # Anything else would be taken for a server-side path by the ingestor, bypassing the root check.
        if not is_url(url):
            raise ApiError(422, "invalid_input", f"not an http(s) URL: {redact_url(url)!r}")
        batch.urls.append(url)
    if body.paths:
        if not ingest_root:
            raise ApiError(
                403, "forbidden", "server-side paths are disabled (the server has no MINI_INGEST_ROOT)"
            )
        batch.root, batch.paths = await asyncio.to_thread(_confine, ingest_root, body.paths)
    return batch


def _inside(root: str, real: str) -> bool:
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def _confine(root: str, paths: list[str]) -> tuple[str, list[str]]:
    """The real root and each path's real location (symlinks followed); 403 for one outside the root.

    Blocking (it reads the file system): runs in a thread.
    """
    real_root = os.path.realpath(root)
    found = []
    for given in paths:
        if not given or "\x00" in given:
            raise ApiError(422, "invalid_input", "a path is empty or contains a NUL character")
        real = os.path.realpath(os.path.join(real_root, given))  # an absolute `given` replaces the root
        if not _inside(real_root, real):
            raise ApiError(403, "forbidden", f"path {given!r} is outside the ingest root")
        found.append(real)
    return real_root, found


# -- the job ---------------------------------------------------------------------------------------------------


def _expand_paths(root: str, paths: list[str]) -> tuple[list[str], list[IngestIssue]]:
    """Directories walked into files; every file checked against the root again (a directory may hold
    symlinks to elsewhere, and a path may have been swapped for one since the request). Blocking."""
    files: list[str] = []
    issues: list[IngestIssue] = []
    for path in paths:
        if not os.path.isdir(path):
            candidates = [path]  # a missing file is reported by the ingestor
        else:
            try:
                candidates = [p.as_posix() for p in loaders.discover([path])]
            except DocumentError as exc:
                issues.append(IngestIssue(path, exc.reason, type(exc).__name__))
                continue
        for candidate in candidates:
            real = os.path.realpath(candidate)
            if _inside(root, real):
                files.append(real)
            else:
                issues.append(IngestIssue(candidate, "resolves outside the ingest root", "forbidden"))
    return files, issues


def _parse_upload(upload: _Upload) -> list[Document]:
    """An uploaded file's documents. Blocking (disk and parsing): runs in a thread."""
    suffix = PurePosixPath(upload.filename).suffix.lower()
    if suffix not in loaders.SUPPORTED_SUFFIXES:
        supported = " ".join(sorted(loaders.SUPPORTED_SUFFIXES))
        raise UnsupportedFormatError(
            upload.source, f"unsupported file type {suffix or '(no suffix)'!r}; supported: {supported}"
        )
    file_type = loaders.file_type_of(upload.filename)
    documents = loaders.parse_bytes(
        upload.source, upload.path.read_bytes(), file_type, filename=upload.filename
    )
    # An empty file still goes to the ingestor, which reports it as empty (or removes an earlier version).
    return documents or [Document("", upload.source, {"filename": upload.filename, "file_type": file_type})]


async def _ingest(
    rag: AgenticRAG, store: VectorStore, items: list[str | Path | Document], job: Job, policy: FetchPolicy
) -> IngestReport:
    if store is rag.vector_store:
        return await rag.index_documents_async(items, progress=job.on_progress, fetch_policy=policy)
    # A session's collection: the same ingestion with the rag's model and embedding cache, so a text already
    # embedded for the global collection is not embedded again.
    return await rag.ingestor(store, fetch_policy=policy).run(items, progress=job.on_progress)


async def _run_batch(
    rag: AgenticRAG, store: VectorStore, batch: _Batch, job: Job, policy: FetchPolicy
) -> IngestReport:
    issues: list[IngestIssue] = []
    items: list[str | Path | Document] = [*batch.documents, *batch.urls]
    if batch.paths:
        assert batch.root is not None
        files, failed = await asyncio.to_thread(_expand_paths, batch.root, batch.paths)
        items += files
        issues += failed
    for upload in batch.uploads:
        try:
            items += await asyncio.to_thread(_parse_upload, upload)
        except MiniError as exc:  # one unreadable file fails alone: listed in the report
            reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
            issues.append(IngestIssue(upload.source, reason, type(exc).__name__))
        except Exception as exc:  # a parser's own failure: its details are for the log, not the client
            log.warning("parsing upload %s failed", upload.source, exc_info=exc)
            issues.append(IngestIssue(upload.source, "the file could not be read", "DocumentParseError"))
    job.extra_files = len(issues)
    if items:
        report = await _ingest(rag, store, items, job, policy)
    else:  # every file failed before ingestion: the ingestor's callback will not report them
        report = IngestReport()
        job.progress.update(files_total=len(issues), files_done=len(issues))
    if issues:
        report.failures[:0] = issues
        report.files_failed += len(issues)
        report.files_seen += len(issues)
    return report


def _submit(request: Request, batch: _Batch) -> Job:
    """Queue the batch as a job. No await in here: the session cannot end between finding it and
    registering the job (which its ending would cancel)."""
    rag = get_rag(request)
    jobs: JobManager = state(request, "jobs")
    session: Session | None = None
    if batch.session_id is not None:
        sessions: SessionStore = state(request, "sessions")
        session = sessions.get_or_create(batch.session_id)
    store = session.document_store(rag.vector_store) if session is not None else rag.vector_store

    async def cleanup() -> None:
        if session is not None:
            session.active_jobs -= 1
            session.last_used = sessions.clock()  # the TTL counts from the job's end
        await batch.remove_files()

    policy: FetchPolicy = state(request, "fetch_policy")

    async def work(job: Job) -> IngestReport:
        return await _run_batch(rag, store, batch, job, policy)

    job = jobs.submit(work, session_id=batch.session_id, cleanup=cleanup)
    if session is not None:
        session.active_jobs += 1
    return job


# -- routes ----------------------------------------------------------------------------------------------------

_REQUEST_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {
                    "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
                    "session_id": {"type": "string", "pattern": SESSION_ID_PATTERN},
                },
                "required": ["files"],
            }
        },
        "application/json": {"schema": DocumentsRequest.model_json_schema()},  # nested models inline ($defs)
    },
}


@router.post(
    "/documents",
    status_code=202,
    response_model=JobAccepted,
    summary="Add documents (uploads, texts, URLs or server paths) in a background job",
    openapi_extra={"requestBody": _REQUEST_BODY},
)
async def add_documents(request: Request) -> JSONResponse:
    kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if kind == "multipart/form-data":
        batch = await _from_multipart(request)
    elif kind == "application/json" or kind.endswith("+json"):
        batch = await _from_json(request, get_settings(request).ingest_root)
    else:
        raise ApiError(415, "unsupported_media_type", "send multipart/form-data (files) or application/json")
    try:
        if batch.session_id is not None:  # registered (in Redis too) before `_submit` finds it in the cache
            await state(request, "sessions").open(batch.session_id, documents=True)
        job = _submit(request, batch)
    except BaseException:
        await batch.remove_files()
        raise
    await state(request, "jobs").recorded(job)  # accepted means recorded: a restart from here still knows it
    return JSONResponse(
        {"job_id": job.id, "status": job.status, "session_id": job.session_id},
        status_code=202,
        headers={"Location": f"/v1/jobs/{job.id}"},
    )


@router.get("/jobs/{job_id}", summary="An ingestion job's status, progress and report")
async def get_job(job_id: str, request: Request) -> dict[str, Any]:
    jobs: JobManager = state(request, "jobs")
    found = await jobs.find(job_id)
    if found is None:
        raise ApiError(404, "not_found", f"no job {job_id!r} (unknown, or finished and forgotten)")
    return found


async def setup(app: FastAPI) -> None:
    settings = app.state.settings
    # Built once, first, so a malformed MINI_FETCH_ALLOW stops the start-up instead of failing every job.
    app.state.fetch_policy = FetchPolicy.server(settings.fetch_allow)
    sessions = sessions_module.install(app)
    owner = new_instance_id()  # this lifespan, as the owner of job rows and upload directories
    store: JobStates | None
    if settings.redis_url:  # replicas share job states in Redis (mini.server.redis_state)
        store = RedisJobStore(settings.redis_url, owner=owner)
        await store.open(ttl_s=settings.job_ttl_s)
    else:
        store = await open_job_store(
            settings.jobs_db, app.state.rag.vector_store, owner=owner, ttl_s=settings.job_ttl_s
        )
    try:
        spool = UploadSpool(await asyncio.to_thread(UploadSpool.default_root), owner=owner)
        await asyncio.to_thread(spool.open)
    except BaseException:
        if store is not None:
            await store.aclose()
        raise
    app.state.upload_spool = spool
    jobs = JobManager(max_concurrent=settings.max_concurrent_jobs, ttl_s=settings.job_ttl_s, store=store)
    app.state.jobs = jobs

    async def cancel_jobs(session: Session) -> None:
        await jobs.cancel_session(session.id)

    # A session's jobs are cancelled before its collection is dropped (they would re-create it).
    sessions.on_close.append(cancel_jobs)
    app.state.stats_extras["jobs"] = lambda request: jobs.stats()


async def teardown(app: FastAPI) -> None:
    jobs: JobManager | None = getattr(app.state, "jobs", None)
    if jobs is not None:
        await jobs.aclose()  # first: a job must not write into a session collection being dropped
    spool: UploadSpool | None = getattr(app.state, "upload_spool", None)
    if spool is not None:
        await asyncio.to_thread(spool.close)
    await sessions_module.uninstall(app)
