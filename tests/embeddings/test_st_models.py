"""Other sentence-transformers models: pooling, prompts, length and casing read from their ST files, checked
against a numpy reference computed from the ONNX encoder's hidden states; unsupported models refused."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from mini.embeddings import local_onnx
from mini.embeddings.base import InputType
from mini.embeddings.local_onnx import MODEL_PACKAGE, LocalOnnxEmbedder
from mini.errors import ConfigurationError

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec(MODEL_PACKAGE) is None, reason="uses the bundled model's weights"
)

TEXTS = ["The Cat sat on the mat.", "Quarterly revenue grew by ten percent in the third quarter."]
MODULES = [
    {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
    {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
]
NORMALIZE = {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}


@pytest.fixture(scope="module")
def bundled_dir() -> Path:
    path = local_onnx.bundled_model_dir()
    assert path is not None
    return path


@pytest.fixture(scope="module")
def graph_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx-cache")  # one graph: every model dir below shares the weights


@pytest.fixture(scope="module")
def session(bundled_dir: Path, graph_cache: Path) -> ort.InferenceSession:
    return ort.InferenceSession(local_onnx.load_or_build_graph(bundled_dir, graph_cache))


def make_model(
    root: Path,
    bundled: Path,
    *,
    pooling: str = "mean",
    normalize: bool = True,
    include_prompt: bool = True,
    prompts: dict[str, str] | None = None,
    sbert: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    modules: list[dict[str, Any]] | None = None,
) -> Path:
    """A model directory with the bundled weights and tokenizer (symlinks) and the given ST configuration."""
    root.mkdir()
    for name in ("model.safetensors", "tokenizer.json"):
        (root / name).symlink_to(bundled / name)
    base = json.loads((bundled / "config.json").read_text())
    (root / "config.json").write_text(json.dumps(base | (config or {})))
    (root / "modules.json").write_text(json.dumps(modules or [*MODULES, *([NORMALIZE] if normalize else [])]))
    (root / "1_Pooling").mkdir()
    flags = {f"pooling_mode_{m}_token{'s' * (m != 'cls')}": m == pooling for m in ("cls", "mean", "max")}
    (root / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": 384, "include_prompt": include_prompt} | flags)
    )
    (root / "sentence_bert_config.json").write_text(json.dumps(sbert or {"max_seq_length": 256}))
    (root / "config_sentence_transformers.json").write_text(json.dumps({"prompts": prompts or {}}))
    return root


def reference(
    session: ort.InferenceSession,
    bundled: Path,
    text: str,
    *,
    pooling: str,
    prompt: str = "",
    include_prompt: bool = True,
    max_tokens: int = 256,
    lower: bool = False,
) -> np.ndarray:
    """sentence-transformers' rules written out for one text (no padding), from the encoder's hidden states."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(bundled / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_tokens)
    full = (prompt + text).lower() if lower else prompt + text
    ids = np.array([tokenizer.encode(full).ids], dtype=np.int64)
    (hidden,) = session.run(
        None, {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    )
    states = hidden[0].astype(np.float64)
    if prompt and not include_prompt:  # prompt tokens, [CLS] included and its [SEP] not, leave the pooling
        states = states[len(tokenizer.encode(prompt).ids) - 1 :]
    vector = {"cls": hidden[0, 0], "mean": states.mean(axis=0), "max": states.max(axis=0)}[pooling]
    return vector / np.linalg.norm(vector)


CASES: dict[str, dict[str, Any]] = {
    "cls": {"pooling": "cls"},
    "mean-without-normalize": {"pooling": "mean", "normalize": False},
    "max": {"pooling": "max"},
    "query-prompt": {"pooling": "mean", "prompts": {"query": "query: ", "passage": "passage: "}},
    "prompt-excluded-from-pooling": {
        "pooling": "mean",
        "prompts": {"query": "query: "},
        "include_prompt": False,
    },
    "short-and-lowercased": {"pooling": "mean", "sbert": {"max_seq_length": 8, "do_lower_case": True}},
}


@pytest.mark.parametrize("case", list(CASES))
async def test_vectors_follow_the_models_sentence_transformers_config(
    case: str, tmp_path: Path, bundled_dir: Path, graph_cache: Path, session: ort.InferenceSession
) -> None:
    options = CASES[case]
    model_dir = make_model(tmp_path / case, bundled_dir, **options)
    embedder = LocalOnnxEmbedder("acme/custom", model_path=str(model_dir), cache_dir=str(graph_cache))
    prompts = options.get("prompts", {})
    sbert = options.get("sbert", {})
    rules = {
        "pooling": options["pooling"],
        "include_prompt": options.get("include_prompt", True),
        "max_tokens": sbert.get("max_seq_length", 256),
        "lower": sbert.get("do_lower_case", False),
    }
    pairs: list[tuple[InputType, str]] = [
        ("query", prompts.get("query", "")),
        ("document", prompts.get("passage", "")),
    ]
    for input_type, prompt in pairs:
        ours = await embedder.embed(TEXTS, input_type=input_type)  # one batch: padding must not matter
        expected = np.stack([reference(session, bundled_dir, t, prompt=prompt, **rules) for t in TEXTS])
        np.testing.assert_allclose(ours, expected, atol=2e-5)
    assert embedder.dimension == 384


async def test_the_prompt_changes_query_vectors_only(
    tmp_path: Path, bundled_dir: Path, graph_cache: Path
) -> None:
    # Guards the parity test above against a prompt that is silently never applied.
    model_dir = make_model(tmp_path / "m", bundled_dir, prompts={"query": "query: "})
    embedder = LocalOnnxEmbedder("acme/custom", model_path=str(model_dir), cache_dir=str(graph_cache))
    plain = LocalOnnxEmbedder(model_path=str(bundled_dir), cache_dir=str(graph_cache))
    query = await embedder.embed(TEXTS[:1], input_type="query")
    document = await embedder.embed(TEXTS[:1], input_type="document")
    np.testing.assert_allclose(document, await plain.embed(TEXTS[:1]), atol=1e-6)
    assert float(query[0] @ document[0]) < 0.99


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"config": {"model_type": "roberta"}}, "model_type='roberta'"),
        ({"config": {"position_embedding_type": "rotary"}}, "absolute position"),
        (
            {
                "modules": [
                    *MODULES,
                    {"idx": 2, "path": "2_Dense", "type": "sentence_transformers.models.Dense"},
                ]
            },
            "models.Dense",
        ),
    ],
)
async def test_unsupported_models_are_refused_with_a_clear_error(
    options: dict[str, Any], message: str, tmp_path: Path, bundled_dir: Path, graph_cache: Path
) -> None:
    model_dir = make_model(tmp_path / "m", bundled_dir, **options)
    with pytest.raises(ConfigurationError, match=message) as info:
        await LocalOnnxEmbedder("acme/x", model_path=str(model_dir), cache_dir=str(graph_cache)).embed(["hi"])
    assert "\n" not in str(info.value)
