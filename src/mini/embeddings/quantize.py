"""An int8 copy of a local embedding graph, made on the user's machine from the cached float graph and cached
next to it: `local:all-MiniLM-L6-v2-int8` (any `local:` model name + `-int8`).

Dynamic quantization (onnxruntime.quantization.quantize_dynamic): the weights of the six layers' linear
MatMuls become int8 once, activations are quantized per batch at run time; embeddings, LayerNorm, softmax and
the attention products stay float. Nothing int8 is shipped: the bundled package holds only the float weights,
and a quantizer change (QUANTIZER_VERSION) or a new float graph gives a new file name.

The quantizer runs in a child process (`python -m mini.embeddings.quantize FLOAT INT8`): it is pure-Python
protobuf work that would hold the GIL for about a second and a half (stalling the event loop of whoever waits
for the model), and its ~300 MB of transient copies go back to the OS with the child.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mini.errors import ConfigurationError

logger = logging.getLogger("mini.embeddings")

# Bump whenever the quantization settings change, so int8 graphs made by older settings are never reused.
# 2: the first layers' FFN outputs stay float. (The float graph's own key changes with its builder.)
QUANTIZER_VERSION = 2
INT8_SUFFIX = "-int8"
# Only the weight MatMuls: quantizing the word-embedding Gather too saves memory but not time, and costs cosine.
OPS_TO_QUANTIZE = ["MatMul"]
# The FFN output projections of the first layers stay float: their inputs (after GELU) are where BERT models
# are known to carry outlier activations, which one int8 scale per batch tensor represents worst. On the 300
# SciFact abstracts least close to the float model, cosine min: all int8 0.9889; layer 0's kept float 0.9917;
# layers 0-1 0.9933; every layer 0.9956 at twice the time; the last layers kept float gain nothing.
FLOAT_FFN_OUT_LAYERS = 2
_CHILD_TIMEOUT_S = 600


def split_variant(name: str) -> tuple[str, bool]:
    """`all-MiniLM-L6-v2-int8` -> (`all-MiniLM-L6-v2`, True); any other name -> (name, False)."""
    if name.lower().endswith(INT8_SUFFIX) and len(name) > len(INT8_SUFFIX):
        return name[: -len(INT8_SUFFIX)], True
    return name, False


def int8_graph_file(float_graph: Path) -> Path:
    """Where the int8 copy of `float_graph` is cached: next to it, keyed by it and by the quantizer version."""
    return float_graph.with_name(f"{float_graph.stem}-int8-q{QUANTIZER_VERSION}.onnx")


def quantize_file(source: str | Path, target: str | Path) -> None:
    """Quantize the float graph at `source` into `target` (in this process; blocking, holds the GIL)."""
    import onnx

    graph = onnx.load(str(source)).graph
    kept_float = {f"encoder.layer.{i}.ffn_out.weight_t" for i in range(FLOAT_FFN_OUT_LAYERS)}
    exclude = [node.name for node in graph.node if node.op_type == "MatMul" and kept_float & set(node.input)]
    # onnxruntime's quantizer writes a shape-inferred copy next to its input under a fixed name
    # (`<stem>-inferred.onnx`) and deletes it after: two processes quantizing the same cached graph at once
    # (two test workers, two first `mini` commands) deleted each other's. Each quantizes its own link to it.
    with tempfile.TemporaryDirectory(dir=Path(target).parent, prefix=".mini-quantize-") as work:
        private = Path(work) / "float.onnx"
        try:
            os.link(source, private)
        except OSError:  # another filesystem, or no hard links there
            shutil.copyfile(source, private)
        _quantize(private, Path(target), exclude)


def _quantize(source: Path, target: Path, exclude: list[str]) -> None:
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Per-channel scales (one per output column) are what keep the vectors close: one scale per weight
    # matrix gave cosine 0.89-0.94 to the float model on SciFact abstracts, per-channel >= 0.99.
    quantize_dynamic(
        source,
        target,
        weight_type=QuantType.QInt8,
        op_types_to_quantize=OPS_TO_QUANTIZE,
        per_channel=True,
        nodes_to_exclude=exclude,
        extra_options={
            "MatMulConstBOnly": True,
            # Shape inference cannot see through the contrib attention op: every tensor here is float32.
            "DefaultTensorType": TensorProto.FLOAT,
        },
    )


def _child_env() -> dict[str, str]:
    # The child imports this very package, from wherever this process found it (an unusual sys.path included).
    package_root = str(Path(__file__).resolve().parents[2])
    inherited = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": package_root + (os.pathsep + inherited if inherited else "")}


def _quantize_in_child(source: Path, target: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mini.embeddings.quantize", str(source), str(target)],
        capture_output=True,
        text=True,
        timeout=_CHILD_TIMEOUT_S,
        env=_child_env(),
    )
    if done.returncode != 0:
        raise ConfigurationError(
            f"could not make the int8 embedding graph from {source} ({done.stderr.strip()[-2000:]}); "
            "use the float model (drop -int8 from the model name)"
        )


def load_or_quantize(float_graph: str | bytes, *, rebuild: bool = False) -> str | bytes:
    """The int8 graph of `float_graph` (a cached file's path, or the graph's bytes when the cache is not
    writable): the cached copy's path, made first if needed; bytes if it cannot be cached. Blocking."""
    started = time.perf_counter()
    if isinstance(float_graph, bytes):
        return _quantize_uncached(float_graph)
    source = Path(float_graph)
    target = int8_graph_file(source)
    if target.is_file() and not rebuild:
        logger.debug("int8 ONNX graph cache hit: %s", target)
        return str(target)
    # A unique temp name in the same directory + os.replace, as for the float graph: readers see no file or
    # the whole file, and two processes quantizing at once each replace it with identical bytes.
    tmp = ""
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        os.close(fd)
        _quantize_in_child(source, Path(tmp))
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except OSError as exc:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        logger.warning(
            "could not cache the int8 graph next to %s (%s); made in memory this time", source, exc
        )
        return _quantize_uncached(source.read_bytes())
    except BaseException:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        raise
    logger.info("made the int8 embedding graph %s in %.1fs (once)", target, time.perf_counter() - started)
    return str(target)


def _quantize_uncached(graph: bytes) -> bytes:
    with tempfile.TemporaryDirectory(prefix="mini-int8-") as tmp:
        source, target = Path(tmp) / "float.onnx", Path(tmp) / "int8.onnx"
        source.write_bytes(graph)
        _quantize_in_child(source, target)
        return target.read_bytes()


def _main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m mini.embeddings.quantize FLOAT_GRAPH INT8_GRAPH", file=sys.stderr)
        return 2
    # The quantizer's advice to run shape pre-processing is for conv nets; it goes to the root logger.
    logging.getLogger().setLevel(logging.ERROR)
    quantize_file(argv[0], argv[1])
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
