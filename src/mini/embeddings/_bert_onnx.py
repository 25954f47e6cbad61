"""Pure builder: BERT weights in a safetensors file -> an ONNX encoder graph (onnx.helper only, no torch)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# What a graph is built from and named by, apart so that finding a cached graph imports no onnx.
from mini.embeddings._bert_spec import OPSET, BertConfig, read_safetensors_header

CONTRIB_DOMAIN = "com.microsoft"  # onnxruntime's own operators; the graph only ever runs on onnxruntime
IR_VERSION = 8

_DTYPES: dict[str, Any] = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}


def load_safetensors(path: str | Path) -> dict[str, np.ndarray]:
    """Every tensor of a safetensors file as a numpy array.

    The format: an 8-byte little-endian header length, a JSON header (dtype, shape, byte offsets per tensor),
    then the raw little-endian data.
    """
    header, data_start = read_safetensors_header(path)
    entries: dict[str, Any] = json.loads(header)
    entries.pop("__metadata__", None)
    # A read-only memory map: arrays are views, so only the bytes actually used are paged in.
    raw = np.memmap(path, dtype=np.uint8, mode="r")
    tensors: dict[str, np.ndarray] = {}
    for name, info in entries.items():
        dtype = _DTYPES.get(info["dtype"])
        if dtype is None:
            raise ValueError(f"tensor {name!r} has unsupported dtype {info['dtype']}")
        begin, end = info["data_offsets"]
        # safetensors stores little-endian data; "<" keeps this correct on big-endian hosts too.
        array = raw[data_start + begin : data_start + end].view(np.dtype(dtype).newbyteorder("<"))
        tensors[name] = array.reshape(info["shape"])
    return tensors


@dataclass(frozen=True, slots=True)
class EncoderGraph:
    """A built encoder: the model without its initializers (small), plus the weights as numpy arrays.

    Kept apart so `write` can stream weights straight from the memory-mapped safetensors file to disk:
    building the 90 MB protobuf in memory (`from_array` + `SerializeToString`) holds the GIL for ~100 ms
    at a time, which stalls the event loop of whoever waits for the model.
    """

    skeleton: onnx.ModelProto
    initializers: dict[str, np.ndarray]

    def to_model(self) -> onnx.ModelProto:
        """The complete in-memory model (for checks and tests; `write` is cheaper)."""
        model = onnx.ModelProto()
        model.CopyFrom(self.skeleton)
        model.graph.initializer.extend(
            numpy_helper.from_array(a, name) for name, a in self.initializers.items()
        )
        return model

    def write(self, f: BinaryIO) -> None:
        """Serialise the complete model to `f`; each weight's bytes go to the file as one unbuffered write.

        Protobuf messages are concatenations of (tag, value) fields in any order, so the model is the
        skeleton's bytes with its graph field re-emitted at the end, followed by one `initializer` entry per
        weight whose TensorProto is its small header (name, dims, type) plus a `raw_data` field that is the
        array itself.
        """
        head = onnx.ModelProto()
        head.CopyFrom(self.skeleton)
        head.ClearField("graph")
        graph_bytes = self.skeleton.graph.SerializeToString()
        entries: list[tuple[bytes, np.ndarray]] = []
        for name, array in self.initializers.items():
            header = onnx.TensorProto(name=name, dims=array.shape, data_type=_onnx_dtype(array))
            prefix = header.SerializeToString() + _field(_RAW_DATA, array.nbytes)
            entries.append((_field(_GRAPH_INITIALIZER, len(prefix) + array.nbytes) + prefix, array))
        graph_size = len(graph_bytes) + sum(len(prefix) + array.nbytes for prefix, array in entries)
        f.write(head.SerializeToString() + _field(_MODEL_GRAPH, graph_size) + graph_bytes)
        for prefix, array in entries:
            f.write(prefix)
            f.write(array.data.cast("B"))  # a view, no copy; file writes release the GIL


# Protobuf field numbers (onnx.proto) of the length-delimited fields `EncoderGraph.write` emits by hand.
_MODEL_GRAPH = 7
_GRAPH_INITIALIZER = 5
_RAW_DATA = 9


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, length: int) -> bytes:
    """Tag (wire type 2, length-delimited) and length prefix of a field whose payload follows."""
    return _varint(number << 3 | 2) + _varint(length)


def _onnx_dtype(array: np.ndarray) -> int:
    return int(helper.np_dtype_to_tensor_dtype(array.dtype))


class _GraphBuilder:
    """Accumulates nodes and initializers with unique names; keeps `build_bert_encoder` readable."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: dict[str, np.ndarray] = {}
        self._count = 0

    def const(self, name: str, value: np.ndarray) -> str:
        # Little-endian and contiguous, as ONNX raw_data requires (a no-op for safetensors arrays).
        self.initializers[name] = np.ascontiguousarray(value, dtype=value.dtype.newbyteorder("<"))
        return name

    def op(self, op_type: str, inputs: list[str], **attrs: Any) -> str:
        self._count += 1
        out = f"{op_type.lower()}_{self._count}"
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=f"{op_type}_{self._count}", **attrs))
        return out

    def linear(self, x: str, weight: np.ndarray, bias: np.ndarray, name: str) -> str:
        # torch Linear stores (out, in); MatMul wants (in, out). ORT fuses MatMul + Add into one kernel.
        w = self.const(f"{name}.weight_t", weight.T)
        b = self.const(f"{name}.bias", bias)
        return self.op("Add", [self.op("MatMul", [x, w]), b])

    def layer_norm(self, x: str, weights: Mapping[str, np.ndarray], name: str, eps: float) -> str:
        scale = self.const(f"{name}.weight", weights[f"{name}.weight"])
        bias = self.const(f"{name}.bias", weights[f"{name}.bias"])
        return self.op("LayerNormalization", [x, scale, bias], axis=-1, epsilon=eps)


def _float32_weights(weights: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    # The graph computes in float32 (fp16 checkpoints are upcast; f32 arrays pass through without a copy).
    # Checkpoints saved from BertFor* heads prefix the encoder with "bert."; BertModel ones do not.
    strip = "embeddings.word_embeddings.weight" not in weights
    return {
        (k.removeprefix("bert.") if strip else k): v.astype(np.float32, copy=False)
        if v.dtype.kind == "f"
        else v
        for k, v in weights.items()
    }


def build_bert_encoder(weights: Mapping[str, np.ndarray], config: BertConfig) -> EncoderGraph:
    """A BERT encoder equal to Hugging Face `BertModel` in eval mode.

    Inputs input_ids, attention_mask, token_type_ids (int64, [batch, seq]); output last_hidden_state
    (float32, [batch, seq, hidden]).
    """
    w = _float32_weights(weights)
    g = _GraphBuilder()
    hidden, heads = config.hidden_size, config.num_attention_heads
    head_dim = hidden // heads
    eps = config.layer_norm_eps

    # Embeddings: word + position + token type, then LayerNorm (dropout is a no-op at inference).
    word = g.op(
        "Gather", [g.const("word_embeddings", w["embeddings.word_embeddings.weight"]), "input_ids"], axis=0
    )
    token_type = g.op(
        "Gather",
        [g.const("token_type_embeddings", w["embeddings.token_type_embeddings.weight"]), "token_type_ids"],
    )
    seq_len = g.op("Shape", ["input_ids"], start=1, end=2)  # [seq], 1-D so it can feed Slice directly
    positions = g.op(
        "Slice",
        [
            g.const("position_embeddings", w["embeddings.position_embeddings.weight"]),
            g.const("zero_1d", np.array([0], dtype=np.int64)),
            seq_len,
            g.const("axis0_1d", np.array([0], dtype=np.int64)),
        ],
    )
    x = g.op("Add", [g.op("Add", [word, token_type]), positions])
    x = g.layer_norm(x, w, "embeddings.LayerNorm", eps)

    # The key padding mask as onnxruntime's attention kernel takes it: int32 [batch, seq], 1 for real tokens.
    key_padding_mask = g.op("Cast", ["attention_mask"], to=TensorProto.INT32)
    one = g.const("one", np.array(1.0, dtype=np.float32))
    qkv_split = g.const("qkv_split", np.array([hidden, hidden, hidden], dtype=np.int64))
    sqrt2 = g.const("sqrt2", np.array(math.sqrt(2.0), dtype=np.float32))
    half = g.const("half", np.array(0.5, dtype=np.float32))
    scale = 1.0 / math.sqrt(head_dim)

    for i in range(config.num_hidden_layers):
        p = f"encoder.layer.{i}"
        # One MatMul for Q, K and V (one larger GEMM beats three small ones); the 1/sqrt(d) score scale is
        # folded into the query weights so the [batch, heads, seq, seq] scores need no extra Mul.
        qkv_w = np.concatenate(
            [
                w[f"{p}.attention.self.query.weight"] * scale,
                w[f"{p}.attention.self.key.weight"],
                w[f"{p}.attention.self.value.weight"],
            ]
        )
        qkv_b = np.concatenate(
            [
                w[f"{p}.attention.self.query.bias"] * scale,
                w[f"{p}.attention.self.key.bias"],
                w[f"{p}.attention.self.value.bias"],
            ]
        )
        qkv = g.linear(x, qkv_w, qkv_b, f"{p}.attention.self.qkv")
        q_out, k_out, v_out = f"{p}.q", f"{p}.k", f"{p}.v"
        g.nodes.append(
            helper.make_node("Split", [qkv, qkv_split], [q_out, k_out, v_out], name=f"{p}.split", axis=-1)
        )
        # softmax(q k^T + mask) v per head, in onnxruntime's fused CPU kernel (contrib op, com.microsoft):
        # written as standard ops (Reshape/Transpose/MatMul/Add/Softmax), the [batch, heads, seq, seq] scores
        # made four passes over memory and took half the time of the int8 graph. scale=1: already folded in.
        # Padding keys get -10000 before the softmax (transformers: float32 min); both give them weight 0.
        context = g.op(
            "MultiHeadAttention",
            [q_out, k_out, v_out, "", key_padding_mask],
            domain=CONTRIB_DOMAIN,
            num_heads=heads,
            scale=1.0,
        )
        attn = g.linear(
            context,
            w[f"{p}.attention.output.dense.weight"],
            w[f"{p}.attention.output.dense.bias"],
            f"{p}.attn_out",
        )
        x = g.layer_norm(g.op("Add", [attn, x]), w, f"{p}.attention.output.LayerNorm", eps)

        # Feed-forward with the exact (erf) GELU, written as PyTorch exports it so ORT's Gelu fusion matches.
        inner = g.linear(
            x, w[f"{p}.intermediate.dense.weight"], w[f"{p}.intermediate.dense.bias"], f"{p}.ffn_in"
        )
        erf = g.op("Erf", [g.op("Div", [inner, sqrt2])])
        gelu = g.op("Mul", [g.op("Mul", [inner, g.op("Add", [erf, one])]), half])
        out = g.linear(gelu, w[f"{p}.output.dense.weight"], w[f"{p}.output.dense.bias"], f"{p}.ffn_out")
        x = g.layer_norm(g.op("Add", [out, x]), w, f"{p}.output.LayerNorm", eps)

    g.nodes.append(helper.make_node("Identity", [x], ["last_hidden_state"], name="output"))
    dims = ["batch", "sequence"]
    graph = helper.make_graph(
        g.nodes,
        "bert_encoder",
        inputs=[
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, dims),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, dims),
            helper.make_tensor_value_info("token_type_ids", TensorProto.INT64, dims),
        ],
        outputs=[helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, [*dims, hidden])],
    )
    # onnx 1.23 stamps IR version 14 by default, which onnxruntime 1.31 rejects (max 13); IR 8 is the version
    # that introduced opset 17, so every onnxruntime that can run this graph can also read the file.
    skeleton = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(CONTRIB_DOMAIN, 1)],
        producer_name="mini-rag",
        ir_version=IR_VERSION,
    )
    return EncoderGraph(skeleton, g.initializers)


def build_from_model_dir(model_dir: str | Path) -> EncoderGraph:
    """Read `config.json` + `model.safetensors` from a Hugging Face model directory and build the encoder."""
    model_dir = Path(model_dir)
    config = BertConfig.from_file(model_dir / "config.json")
    return build_bert_encoder(load_safetensors(model_dir / "model.safetensors"), config)
