"""Ingestion on a Ray cluster: Ray tasks read, parse, chunk and (with a local model) embed groups of files.

    driver: discover -> look up what is stored -> [Ray task per group of files] -> vectors -> one Committer
    task:   read -> fingerprint -> unchanged? stop : parse -> chunk -> embed (local model) -> rows' parts back

Why this split: the driver keeps discovery, the skip-unchanged check against the store and the single
`state.Committer`, so chunk ids (source + content hash), skipping, resume after a crash and the report are
exactly the local path's (the same `Ingestor` code runs; only the read hop goes to the cluster). A task writes
nothing, so a task that Ray retries after its worker died (`max_retries`) cannot duplicate rows; a driver that
dies leaves every file complete or absent, as locally.

Embedding: a local model (the CPU-bound part) runs in the task, on the worker's cores. A remote API is not
embedded on workers: the driver embeds those chunks through its usual stage, so the provider limiter (in
Redis when MINI_REDIS_URL is set) is the one cluster-wide limit, with nothing to coordinate between workers.
Files whose stored vectors can be reused (an edited file) are embedded on the driver too, which reuses them.

Bounded: at most `max_tasks` tasks in flight (default: two per CPU of the cluster); the driver's chunk budget
still stops it from starting groups while too many chunks wait for the writer. Every task has a timeout;
a task that fails or times out fails its files, each listed in the report.

Tasks and not Ray Data: the driver needs each group's result as soon as it is ready, in the Ingestor's own
flow (lookups ahead, budget, commits); tasks give that with `ray.wait`-free awaits, and need only `ray`
(no pyarrow/pandas pipeline). Not yet measured against `map_batches` (docs/scaling.md).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import os
import socket
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mini._logs import drop_records
from mini.errors import ConfigurationError, IngestWorkerError, MissingDependencyError
from mini.ingest import grouped, state
from mini.ingest.grouped import FileOutcome
from mini.ingest.units import Unit

if TYPE_CHECKING:
    from mini.embeddings.base import Embedder
    from mini.ingest.cache import CacheKey, EmbeddingCache
    from mini.ingest.limits import ParseLimits
    from mini.ingest.report import IngestReport

log = logging.getLogger("mini.ingest.ray")

DEFAULT_TASK_TIMEOUT_S = 600.0
# A task that fails for a system reason (its worker or node died) is run again elsewhere; it writes nothing,
# so running it twice is harmless.
TASK_RETRIES = 3


@dataclasses.dataclass(frozen=True)
class TaskSettings:
    """What every task of a run needs, sent once per task (small)."""

    model: str  # the embedder's name, rebuilt on the worker
    model_path: str | None
    embed_key: str
    config_key: str
    chunk_tokens: int
    overlap_tokens: int
    local_model: bool  # chunks sized with the model's tokenizer, and embedded on the worker
    metadata: Mapping[str, Any] | None
    parse_limits: ParseLimits | None


@dataclasses.dataclass(slots=True)
class RayFileOutcome(FileOutcome):
    """A file's outcome from a task; `vectors` by chunk content hash when the task embedded them."""

    vectors: dict[str, np.ndarray] | None = None


@dataclasses.dataclass(slots=True)
class _TaskFile:
    origin: str
    path: str  # absolute: a worker's working directory is not the driver's
    stored_fingerprint: str | None
    embed: bool


@dataclasses.dataclass(slots=True)
class _TaskResult:
    fingerprints: list[str]
    chunks: list[Any]
    outcomes: list[RayFileOutcome]  # errors travel in `errors`, since not every exception pickles
    errors: list[_PortableError | None]
    read_s: float
    parse_s: float
    embed_s: float
    embedded: int
    requests: int


def _require_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise MissingDependencyError("ingestion on Ray", "ray", "ray") from None
    return ray


class RayExecutor:
    """Runs the Ingestor's read hop (read, parse, chunk, embed with a local model) as Ray tasks.

    `address`: the cluster ("host:port", "ray://...", "auto"); None: RAY_ADDRESS, else a running local
    cluster, else Ray starts one in this process. `max_tasks`: tasks in flight (default two per CPU).
    `task_timeout`: seconds one task may take before its files are reported failed.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        max_tasks: int | None = None,
        task_timeout: float = DEFAULT_TASK_TIMEOUT_S,
    ) -> None:
        self.address = address
        self.max_tasks = max_tasks
        self.task_timeout = task_timeout
        self._ray: Any = None
        self._remote: Any = None
        self._slots: asyncio.Semaphore | None = None
        self._started_ray = False
        self._cwd = ""
        self._model_paths: dict[str | None, str | None] = {}  # as given -> as the workers get it

    async def start(self) -> None:
        """Connects to the cluster (once; blocking, so in a thread)."""
        if self._remote is not None:
            return
        ray = _require_ray()
        self._cwd = await asyncio.to_thread(os.getcwd)
        if not ray.is_initialized():
            _quiet_sigterm_warning()
            await asyncio.to_thread(_check_reachable, self.address)
            try:
                await asyncio.to_thread(
                    functools.partial(
                        ray.init, address=self.address, log_to_driver=False, configure_logging=False
                    )
                )
            except ConnectionError as exc:  # "auto" and no cluster running, or the cluster went away
                raise ConfigurationError(f"cannot connect to a Ray cluster ({exc}); {_HINT}") from None
            self._started_ray = True
        resources = await asyncio.to_thread(ray.cluster_resources)
        cpus = int(resources.get("CPU", 1))
        self._slots = asyncio.Semaphore(self.max_tasks or max(2, 2 * cpus))
        self._ray = ray
        self._remote = ray.remote(num_cpus=1, max_retries=TASK_RETRIES)(_read_group)

    async def aclose(self) -> None:
        """Disconnects from the cluster if `start` connected (a cluster started by Ray here stops)."""
        if self._started_ray and self._ray is not None:
            await asyncio.to_thread(self._ray.shutdown)
        self._started_ray = False
        self._remote = None

    async def _for_workers(self, settings: TaskSettings) -> TaskSettings:
        """`settings` with the model directory the driver would load, absolute: a worker has neither the
        driver's working directory (a relative `model_path`) nor its MINI_MODEL_PATH or mini.toml."""
        if not settings.local_model:
            return settings
        key = settings.model_path
        if key not in self._model_paths:
            self._model_paths[key] = await asyncio.to_thread(_driver_model_path, key, self._cwd)
        return dataclasses.replace(settings, model_path=self._model_paths[key])

    async def read_files(
        self,
        units: Sequence[Unit],
        settings: TaskSettings,
        report: IngestReport,
        cache: EmbeddingCache,
    ) -> tuple[list[FileOutcome], float, float]:
        """`grouped.read_files` for `units`, run as one Ray task: sets each unit's fingerprint and chunks;
        returns the outcomes (their vectors, if embedded, are also put in `cache`) and read/parse seconds."""
        assert self._remote is not None and self._slots is not None, "start() first"
        settings = await self._for_workers(settings)
        files = [
            _TaskFile(
                unit.origin,
                Path(self._cwd, unit.path or "").as_posix(),
                unit.stored.fingerprint if unit.stored is not None else None,
                settings.local_model
                and (unit.stored is None or not state.reusable(unit.stored, settings.embed_key)),
            )
            for unit in units
        ]
        async with self._slots:
            ref = self._remote.remote(settings, files)
            try:
                result: _TaskResult = await asyncio.wait_for(
                    asyncio.wrap_future(ref.future()), self.task_timeout
                )
            except asyncio.CancelledError:
                self._ray.cancel(ref, force=True)  # the run stops: so does its work on the cluster
                raise
            except TimeoutError:
                self._ray.cancel(ref, force=True)
                error = IngestWorkerError(f"the Ray task timed out after {self.task_timeout:g} s")
                return [FileOutcome(error=error) for _ in units], 0.0, 0.0
            except Exception as exc:  # the task failed as a whole (beyond Ray's retries)
                error = IngestWorkerError(f"the Ray task failed: {type(exc).__name__}: {exc}")
                log.warning("%s", error)
                return [FileOutcome(error=error) for _ in units], 0.0, 0.0
        for unit, fingerprint, chunks in zip(units, result.fingerprints, result.chunks, strict=False):
            unit.fingerprint, unit.chunks = fingerprint, chunks
        for outcome, portable in zip(result.outcomes, result.errors, strict=True):
            outcome.error = portable.rebuilt() if portable is not None else None
        for outcome in result.outcomes:
            for digest, vector in (outcome.vectors or {}).items():
                cache.put((settings.embed_key, digest), vector)
        report.embedding_requests += result.requests
        timings = report.timings_ms
        timings["embed"] = round(timings.get("embed", 0.0) + result.embed_s * 1000.0, 3)
        return list(result.outcomes), result.read_s, result.parse_s


def _quiet_sigterm_warning() -> None:
    """`ray.init` in a worker thread (so the event loop is not blocked) warns that it cannot set its SIGTERM
    handler there; ours (the CLI's, the server's) stay in charge, which is what we want: not the user's concern."""
    drop_records(
        "ray._private.worker",
        "sigterm-handler",
        lambda message: message.startswith("SIGTERM handler is not set"),
    )


def _driver_model_path(model_path: str | None, cwd: str) -> str | None:
    """The local model's directory as the driver resolves it (its argument, else the settings here), made
    absolute against the driver's working directory; None: the bundled model, installed on every node."""
    if model_path is None:
        from mini.config import load_settings

        model_path = load_settings().model_path
    if model_path is None:
        return None
    path = Path(model_path).expanduser()
    return str(path if path.is_absolute() else Path(cwd, path))


_HINT = "start one with `ray start --head`, or pass its address (--ray HOST:PORT, ray://HOST:PORT, auto)"
CONNECT_TIMEOUT_S = 5.0  # one TCP connect to the cluster's address


def _check_reachable(address: str | None) -> None:
    """An address naming HOST:PORT must accept a TCP connection first: `ray.init` retries an unreachable
    cluster for minutes before it fails (measured: still waiting after 60 s)."""
    if not address or address == "auto" or address.startswith("local"):
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigurationError(f"not a Ray cluster address: {address!r}; {_HINT}")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise ConfigurationError(
            f"cannot reach the Ray cluster at {address} ({exc.strerror or exc}); {_HINT}"
        ) from None


def known_vectors(
    outcome: FileOutcome, needed: dict[CacheKey, np.ndarray], embed_key: str, report: IngestReport
) -> dict[CacheKey, np.ndarray]:
    """`needed` (vectors known from the store) plus those a task embedded. The Ingestor's vector stage
    counts every known vector as a cache hit; the task's are counted as embedded instead."""
    vectors = getattr(outcome, "vectors", None)
    if not vectors:
        return needed
    report.chunks_embedded += len(vectors)
    report.cache_hits -= len(vectors)  # `Vectors.resolve` adds them back
    return {**{(embed_key, digest): vector for digest, vector in vectors.items()}, **needed}


# -- on the worker ----------------------------------------------------------------------------------------


@functools.cache
def _embedder(model: str, model_path: str | None) -> tuple[Embedder, Any]:
    """The worker process's embedder and chunk tokenizer, loaded once per process (Ray reuses workers)."""
    from mini.embeddings.base import create_embedder

    options = {"model_path": model_path} if model_path else {}
    embedder = create_embedder(model, base_url=None, api_key=None, dimension=None, batch_size=None, **options)
    load = getattr(embedder, "chunk_tokenizer", None)
    return embedder, load() if callable(load) else None


def _read_group(settings: TaskSettings, files: list[_TaskFile]) -> _TaskResult:
    """The Ray task: `grouped.read_files` on the worker, then the local model embeds the new files' chunks."""
    from mini import _portal
    from mini.embeddings.base import embed_splitting_rejected

    embedder, tokenizer = (
        _embedder(settings.model, settings.model_path) if settings.local_model else (None, None)
    )
    units = [Unit(f.origin, "file", path=Path(f.path), stored=_stored(f.stored_fingerprint)) for f in files]
    outcomes, read_s, parse_s = grouped.read_files(
        units,
        fingerprint=functools.partial(state.fingerprint, settings.embed_key, settings.config_key),
        parse_limits=settings.parse_limits,
        chunk_tokens=settings.chunk_tokens,
        overlap_tokens=settings.overlap_tokens,
        tokenizer=tokenizer,
        metadata=settings.metadata,
        max_chars=grouped.GROUP_CHARS,
    )
    results = [RayFileOutcome(o.unchanged, o.encoding) for o in outcomes]
    errors = [_PortableError.of(o.error) if o.error is not None else None for o in outcomes]
    # Distinct texts of the files to embed here, embedded in one call (the model batches them).
    texts: dict[str, str] = {}
    for unit, outcome, file, error in zip(units, results, files, errors, strict=False):
        if file.embed and error is None and not outcome.unchanged:
            for chunk in unit.chunks:
                texts.setdefault(chunk.content_hash, chunk.text)
    embed_s, embedded, requests = 0.0, 0, 0
    if texts and embedder is not None:
        started = time.perf_counter()
        vectors, requests = _portal.run(
            embed_splitting_rejected(embedder, list(texts.values()), input_type="document")
        )
        embed_s = time.perf_counter() - started
        by_hash = dict(zip(texts, vectors, strict=True))
        for index, (unit, outcome, file) in enumerate(zip(units, results, files, strict=False)):
            if not file.embed or errors[index] is not None or outcome.unchanged:
                continue
            mine = {chunk.content_hash: by_hash[chunk.content_hash] for chunk in unit.chunks}
            failed = next((v for v in mine.values() if isinstance(v, BaseException)), None)
            if failed is not None:
                errors[index] = _PortableError.of(failed)
                unit.chunks = []
            else:
                outcome.vectors = mine
                embedded += len(mine)
    return _TaskResult(
        [u.fingerprint for u in units[: len(results)]],
        [u.chunks for u in units[: len(results)]],
        results,
        errors,
        read_s,
        parse_s,
        embed_s,
        embedded,
        requests,
    )


def _stored(fingerprint: str | None) -> state.Stored | None:
    return state.Stored(fingerprint, set()) if fingerprint is not None else None


@dataclasses.dataclass(frozen=True, slots=True)
class _PortableError:
    """An exception as plain parts: many of ours take arguments their pickled form does not replay
    (`DocumentError(path, reason)`), so its type, args and attributes travel and the driver rebuilds it."""

    type: type[BaseException]
    args: tuple[Any, ...]
    attributes: dict[str, Any]

    @classmethod
    def of(cls, error: BaseException) -> _PortableError:
        attributes = {k: v for k, v in vars(error).items() if not k.startswith("__")}
        return cls(type(error), tuple(str(a) for a in error.args), attributes)

    def rebuilt(self) -> Exception:
        if not issubclass(self.type, Exception):
            return IngestWorkerError(" ".join(self.args) or self.type.__name__)
        error = Exception.__new__(self.type)
        error.args = self.args
        vars(error).update(self.attributes)
        return error
