"""What a BERT encoder graph is built from and named by: the model's config, its safetensors header, the cache
key of the graph built from them.

Apart from the builder (`_bert_onnx`) because checking a model and finding its cached graph must not import
`onnx` and protobuf (~50-100 ms of a cold `mini query`, bench/cold_start.py): only building a graph does.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Bump whenever the emitted graph changes, so graphs cached by an older builder are never reused.
BUILDER_VERSION = 2  # 2: attention as onnxruntime's fused MultiHeadAttention
OPSET = 17  # the first opset with LayerNormalization


def read_safetensors_header(path: str | Path) -> tuple[bytes, int]:
    """The raw JSON header of a safetensors file and the offset where tensor data starts."""
    with open(path, "rb") as f:
        prefix = f.read(8)
        if len(prefix) != 8:
            raise ValueError(f"{path} is not a safetensors file (too short)")
        (length,) = struct.unpack("<Q", prefix)
        header = f.read(length)
    if len(header) != length or not header.startswith(b"{"):
        raise ValueError(f"{path} is not a safetensors file (bad header)")
    return header, 8 + length


def graph_cache_key(weights_path: str | Path) -> str:
    """A key that changes with the weights file (header + size) and with this builder's output."""
    header, _ = read_safetensors_header(weights_path)
    digest = hashlib.sha256()
    digest.update(f"bert-onnx-v{BUILDER_VERSION}-opset{OPSET}\n".encode())
    digest.update(str(Path(weights_path).stat().st_size).encode() + b"\n")
    digest.update(header)
    return digest.hexdigest()[:24]


@dataclass(frozen=True, slots=True)
class BertConfig:
    """The parts of a Hugging Face `config.json` that shape the encoder."""

    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    layer_norm_eps: float = 1e-12

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BertConfig:
        if data.get("model_type", "bert") != "bert":
            raise ValueError(f"expected a BERT model, config.json says model_type={data.get('model_type')!r}")
        if data.get("hidden_act", "gelu") != "gelu":
            raise ValueError(f"only the erf GELU is supported, config.json says {data.get('hidden_act')!r}")
        if data.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError("only absolute position embeddings are supported")
        config = cls(
            hidden_size=int(data["hidden_size"]),
            num_hidden_layers=int(data["num_hidden_layers"]),
            num_attention_heads=int(data["num_attention_heads"]),
            intermediate_size=int(data["intermediate_size"]),
            layer_norm_eps=float(data.get("layer_norm_eps", 1e-12)),
        )
        if config.hidden_size % config.num_attention_heads:
            raise ValueError("hidden_size is not a multiple of num_attention_heads")
        return config

    @classmethod
    def from_file(cls, path: str | Path) -> BertConfig:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
