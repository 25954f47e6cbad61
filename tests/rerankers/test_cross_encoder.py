"""The cross-encoder reranker with a stand-in `sentence_transformers` module (the real one pulls torch): the
model loads once, from a local directory only, and both loading and prediction run off the event loop."""

from __future__ import annotations

import asyncio
import sys
import threading
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from mini.errors import ConfigurationError, MissingDependencyError
from mini.rerankers.cross_encoder import CrossEncoderReranker
from tests.rerankers.conftest import candidates


class FakeCrossEncoder:
    """Scores a pair by how many query words the passage contains; records where it ran."""

    instances: ClassVar[list[FakeCrossEncoder]] = []

    def __init__(self, model_name_or_path: str, **kwargs: Any) -> None:
        self.path = model_name_or_path
        self.kwargs = kwargs
        self.init_thread = threading.get_ident()
        self.predict_threads: list[int] = []
        self.batches: list[int] = []
        self.output_shape: str = "flat"
        FakeCrossEncoder.instances.append(self)

    def predict(self, pairs: list[tuple[str, str]], *, batch_size: int, show_progress_bar: bool) -> Any:
        self.predict_threads.append(threading.get_ident())
        self.batches.append(len(pairs))
        scores = np.array([len(set(q.split()) & set(p.split())) / 10 for q, p in pairs], dtype=np.float32)
        if self.output_shape == "column":
            return scores[:, None]
        if self.output_shape == "two-labels":
            return np.stack([scores, 1 - scores], axis=1)
        return scores


@pytest.fixture
def fake_st(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[FakeCrossEncoder]]:
    module = types.ModuleType("sentence_transformers")
    module.CrossEncoder = FakeCrossEncoder  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "sentence_transformers", module)
    FakeCrossEncoder.instances = []
    yield FakeCrossEncoder


def _hits() -> list[Any]:
    texts = ["glass bins", "paper on monday", "glass collected on wednesday", "nothing here", "glass"]
    return [h.__class__(h.id, t, h.score, h.metadata) for h, t in zip(candidates(5), texts, strict=True)]


async def test_predicts_in_a_worker_thread_and_ranks_by_model_score(
    fake_st: type[FakeCrossEncoder], tmp_path: Path
) -> None:
    reranker = CrossEncoderReranker(tmp_path, batch_size=2, device="cpu")
    assert FakeCrossEncoder.instances == []  # nothing loaded at construction
    ranked = await reranker.rerank("when is glass collected", _hits(), top_k=3)
    assert [h.id for h in ranked] == ["c2", "c0", "c4"]  # c0 and c4 tie (one shared word): input order
    assert [h.score for h in ranked] == pytest.approx([0.2, 0.1, 0.1])
    [model] = FakeCrossEncoder.instances
    loop_thread = threading.get_ident()
    assert model.init_thread != loop_thread
    assert model.predict_threads and loop_thread not in model.predict_threads
    assert model.batches == [2, 2, 1]  # batch_size pairs per thread hop
    assert model.path == str(tmp_path)
    assert model.kwargs == {"device": "cpu", "local_files_only": True}  # never a download


async def test_concurrent_first_calls_load_the_model_once(
    fake_st: type[FakeCrossEncoder], tmp_path: Path
) -> None:
    reranker = CrossEncoderReranker(tmp_path)
    results = await asyncio.gather(*(reranker.rerank("glass", _hits(), top_k=1) for _ in range(8)))
    assert len(FakeCrossEncoder.instances) == 1
    assert all(r[0].id == "c0" for r in results)
    assert "loaded=True" in repr(reranker)


async def test_one_column_output_is_accepted_and_several_labels_are_refused(
    fake_st: type[FakeCrossEncoder], tmp_path: Path
) -> None:
    reranker = CrossEncoderReranker(tmp_path)
    await reranker.warmup()
    FakeCrossEncoder.instances[0].output_shape = "column"
    ranked = await reranker.rerank("glass collected", _hits(), top_k=1)
    assert ranked[0].id == "c2" and ranked[0].score == pytest.approx(0.2)
    FakeCrossEncoder.instances[0].output_shape = "two-labels"
    with pytest.raises(ConfigurationError, match="one score per pair"):
        await reranker.rerank("glass", _hits(), top_k=1)


async def test_a_missing_model_directory_is_a_configuration_error(
    fake_st: type[FakeCrossEncoder], tmp_path: Path
) -> None:
    reranker = CrossEncoderReranker(tmp_path / "nope")
    with pytest.raises(ConfigurationError, match="not found"):
        await reranker.rerank("q", _hits(), top_k=1)
    assert FakeCrossEncoder.instances == []


def test_without_sentence_transformers_the_error_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # makes the import fail
    with pytest.raises(MissingDependencyError) as info:
        CrossEncoderReranker(tmp_path)
    assert info.value.extra == "torch"
    assert "mini-rag[torch]" in str(info.value)


async def test_empty_input_loads_nothing(fake_st: type[FakeCrossEncoder], tmp_path: Path) -> None:
    assert await CrossEncoderReranker(tmp_path).rerank("q", [], top_k=3) == []
    assert FakeCrossEncoder.instances == []
