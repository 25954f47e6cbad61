"""How a sentence-transformers model turns hidden states into a sentence vector: its pooling, length, casing and
prompts, read from the model directory's ST files; plus the pooling maths itself (pure numpy).

The files, as sentence-transformers writes them:

- `modules.json`: the pipeline, e.g. Transformer -> Pooling (in `1_Pooling/`) -> Normalize. A directory without
  it is a plain Hugging Face model, which sentence-transformers loads as Transformer + mean pooling.
- `<pooling dir>/config.json`: `pooling_mode_*` flags (several set = the vectors are concatenated, in ST's order
  cls, max, mean, mean_sqrt_len) and `include_prompt` (False: prompt tokens do not count in the pooling).
- `sentence_bert_config.json`: `max_seq_length` (tokens, specials included) and `do_lower_case`.
- `config_sentence_transformers.json`: `prompts` ({"query": "query: ", ...}), `default_prompt_name`,
  `similarity_fn_name`.

Rows are always L2-normalised, Normalize module or not: the `Embedder` contract promises unit rows and every
store ranks by cosine, for which the length of a vector does not matter.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mini.errors import ConfigurationError

if TYPE_CHECKING:
    from mini.embeddings.base import InputType

logger = logging.getLogger("mini.embeddings")

TRANSFORMER = "sentence_transformers.models.Transformer"
POOLING = "sentence_transformers.models.Pooling"
NORMALIZE = "sentence_transformers.models.Normalize"

# sentence-transformers' concatenation order; the keys are the Pooling config's flags.
POOLING_FLAGS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len",
}
UNSUPPORTED_POOLING_FLAGS = ("pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken")
# Where encode_document looks for a prompt, in this order (sentence-transformers' `encode_document`).
DOCUMENT_PROMPT_NAMES = ("document", "passage", "corpus")


@dataclass(frozen=True, slots=True)
class EmbeddingSpec:
    """What the local embedder needs to reproduce a sentence-transformers model's vectors."""

    dimension: int
    pooling: tuple[str, ...] = ("mean",)
    include_prompt: bool = True
    normalize: bool = True  # whether the model has a Normalize module (rows are normalised either way)
    max_seq_length: int = 256
    do_lower_case: bool = False
    query_prompt: str = ""
    document_prompt: str = ""
    similarity: str | None = None

    def prompt(self, input_type: InputType) -> str:
        return self.query_prompt if input_type == "query" else self.document_prompt


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"{path} is not readable JSON ({exc}); download the model again") from exc


def _optional_json(path: Path) -> Any:
    return _read_json(path) if path.is_file() else None


def check_architecture(model_dir: Path, config: Mapping[str, Any]) -> None:
    """Refuse what the ONNX builder cannot run (it raises ValueError), before any weight is read."""
    from mini.embeddings._bert_spec import BertConfig

    try:
        BertConfig.from_dict(config)
    except (ValueError, KeyError, TypeError) as exc:
        detail = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
        raise ConfigurationError(
            f"{model_dir} cannot run on the local embedder ({detail}): it runs BERT encoders with absolute "
            "positions only (model_type 'bert', e.g. all-MiniLM-L6-v2, BAAI/bge-small-en-v1.5, "
            "intfloat/e5-small-v2); use one of those or a remote embedding model (openai:...)"
        ) from exc


def read_spec(model_dir: Path) -> EmbeddingSpec:
    """The model's sentence-transformers configuration. Blocking (small file reads): call from a thread.

    Raises ConfigurationError for what the local embedder cannot reproduce: a non-BERT architecture, module
    types other than Transformer/Pooling/Normalize (e.g. Dense), weighted-mean or last-token pooling."""
    config = _read_json(model_dir / "config.json")
    if not isinstance(config, dict):
        raise ConfigurationError(f"{model_dir / 'config.json'} is not a JSON object")
    check_architecture(model_dir, config)
    hidden = int(config["hidden_size"])
    positions = int(config.get("max_position_embeddings", 512))

    pooling_dir: Path | None = None
    normalize = False
    modules = _optional_json(model_dir / "modules.json")
    for module in modules or ():  # no modules.json: a plain model, mean pooling (as sentence-transformers)
        kind, path = module.get("type", ""), module.get("path", "")
        if kind == TRANSFORMER and path not in ("", "."):
            raise ConfigurationError(
                f"{model_dir}: the transformer lives in the subfolder {path!r}; point MINI_MODEL_PATH at "
                "that folder (its pooling then defaults to mean)"
            )
        if kind == POOLING:
            pooling_dir = model_dir / path
        elif kind == NORMALIZE:
            normalize = True
        elif kind != TRANSFORMER:
            raise ConfigurationError(
                f"{model_dir}: the sentence-transformers module {kind!r} is not supported by the local "
                "embedder (it reproduces Transformer, Pooling and Normalize only)"
            )

    pooling: tuple[str, ...] = ("mean",)
    include_prompt = True
    if pooling_dir is not None:
        pooling_config = _optional_json(pooling_dir / "config.json") or {}
        pooling, include_prompt = _pooling_modes(model_dir, pooling_config)

    sbert = _optional_json(model_dir / "sentence_bert_config.json") or {}
    max_seq_length = min(int(sbert.get("max_seq_length") or positions), positions)

    st_config = _optional_json(model_dir / "config_sentence_transformers.json") or {}
    prompts: dict[str, str] = dict(st_config.get("prompts") or {})
    default = prompts.get(st_config.get("default_prompt_name") or "", "")
    document_names = [name for name in DOCUMENT_PROMPT_NAMES if name in prompts]
    spec = EmbeddingSpec(
        dimension=hidden * len(pooling),
        pooling=pooling,
        include_prompt=include_prompt,
        normalize=normalize,
        max_seq_length=max_seq_length,
        do_lower_case=bool(sbert.get("do_lower_case", False)),
        query_prompt=prompts.get("query", default),
        document_prompt=prompts[document_names[0]] if document_names else default,
        similarity=st_config.get("similarity_fn_name"),
    )
    if spec.similarity not in (None, "cosine"):
        logger.warning(
            "%s is meant to be compared with %s similarity; mini-rag stores rank by cosine, so rankings can "
            "differ from the model card's",
            model_dir,
            spec.similarity,
        )
    return spec


def _pooling_modes(model_dir: Path, config: Mapping[str, Any]) -> tuple[tuple[str, ...], bool]:
    unsupported = [flag for flag in UNSUPPORTED_POOLING_FLAGS if config.get(flag)]
    if unsupported:
        raise ConfigurationError(
            f"{model_dir}: {', '.join(unsupported)} is not supported by the local embedder "
            "(it pools by cls, mean, max or mean_sqrt_len)"
        )
    modes = tuple(mode for flag, mode in POOLING_FLAGS.items() if config.get(flag))
    if not modes:
        raise ConfigurationError(f"{model_dir}: the Pooling config sets no pooling_mode_*")
    return modes, bool(config.get("include_prompt", True))


def pool(hidden: np.ndarray, mask: np.ndarray, modes: tuple[str, ...]) -> np.ndarray:
    """Sentence vectors [b, h * len(modes)] from token states [b, s, h], as sentence-transformers' Pooling
    computes them; `mask` [b, s] marks the tokens that count (1) and padding (0)."""
    weights = mask.astype(np.float32)
    counts = np.maximum(weights.sum(axis=1, keepdims=True), 1e-9)
    parts: list[np.ndarray] = []
    summed: np.ndarray | None = None
    for mode in modes:
        if mode == "cls":
            parts.append(hidden[:, 0, :])  # the first token whatever the mask says, as ST does
        elif mode == "max":
            parts.append(np.where(weights[:, :, None] > 0, hidden, np.float32(-1e9)).max(axis=1))
        else:
            if summed is None:
                # [b, 1, s] @ [b, s, h] -> [b, 1, h]: one batched GEMV instead of materialising hidden * mask.
                summed = np.matmul(weights[:, None, :], hidden)[:, 0, :]
            parts.append(summed / (counts if mode == "mean" else np.sqrt(counts)))
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)
