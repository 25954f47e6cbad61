"""Local embeddings on every core: float vs int8 all-MiniLM-L6-v2, one core vs every core, load time, cosine.

    python bench/local_embeddings.py [--texts 256] [--rounds 1] [--ndcg] [--st-python PYTHON] [--no-write]

Same process, same SciFact abstracts (title + text, as `mini eval beir` ingests them; the first --texts of
corpus.jsonl), every configuration measured in each round, interleaved, median over rounds:
- "one batch at a time": batches of 32 run one after the other on a 1-thread session (the behaviour before);
- "every core (shipped)": `LocalOnnxEmbedder.embed`, one 1-thread batch per core at once;
- "intra-op threads": one batch at a time on a session with intra_op_num_threads = cores (the alternative).
Load = onnxruntime session from the cached graph + tokenizer, median of 3. Cosine: int8 vs float rows of the
same texts. sentence-transformers on torch runs in a child interpreter (--st-python, default this one: one
with the `torch` extra), measured only if it has sentence-transformers. Writes the section "Local embeddings
on every core (issue 21)" of BENCHMARKS.md unless --no-write.

--ndcg instead embeds all 5,183 abstracts with both models as shipped (long: ~10 min on 2 cores), scores
dense document retrieval (a document at its whole abstract, 256 tokens) on the 300 SciFact test queries and
writes the section "int8 vs float all-MiniLM-L6-v2 on SciFact (issue 21)": the int8 default's bar.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

try:  # `python bench/local_embeddings.py`; `python -m bench.local_embeddings` finds it as bench._common
    from _common import REPO, machine, write_section
except ModuleNotFoundError:
    from bench._common import REPO, machine, write_section

HEADING = "## Local embeddings on every core (issue 21)"
QUALITY_HEADING = "## int8 vs float all-MiniLM-L6-v2 on SciFact (issue 21)"
SCIFACT = Path(os.environ.get("SCIFACT_DIR", REPO.parent / "shared" / "data" / "scifact"))
BATCH = 32


def scifact_texts(limit: int | None) -> list[str]:
    texts = []
    with (SCIFACT / "corpus.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            item = json.loads(line)
            title, text = item.get("title", "").strip(), item.get("text", "").strip()
            texts.append(f"{title}\n\n{text}" if title and text else title or text)
            if limit is not None and len(texts) >= limit:
                break
    return texts


def open_session(graph: str, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])


def one_at_a_time(runtime: Any, texts: list[str]) -> np.ndarray:
    order = np.argsort([len(t) for t in texts], kind="stable")
    out = np.empty((len(texts), runtime.dimension), dtype=np.float32)
    for start in range(0, len(texts), BATCH):
        index = order[start : start + BATCH]
        out[index] = runtime.embed_batch([texts[i] for i in index])
    return out


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


async def measure(args: argparse.Namespace) -> str:
    from mini.embeddings import local_onnx, quantize
    from mini.embeddings.local_onnx import LocalOnnxEmbedder

    cores = os.cpu_count() or 1
    texts = scifact_texts(args.texts)
    model_dir = local_onnx.resolve_model_dir(None)
    cache = local_onnx.resolve_cache_dir(None)
    float_graph = local_onnx.load_or_build_graph(model_dir, cache)
    assert isinstance(float_graph, str)
    quantize_s, int8_graph = timed(lambda: quantize.load_or_quantize(float_graph, rebuild=True))
    graphs = {"float": float_graph, "int8": int8_graph}
    spec = local_onnx.read_spec(model_dir)

    loads: dict[str, list[float]] = {name: [] for name in graphs}
    for _ in range(3):
        for name, graph in graphs.items():
            started = time.perf_counter()
            open_session(graph, 1)
            local_onnx._open_tokenizer(model_dir, spec.max_seq_length)
            loads[name].append(time.perf_counter() - started)

    runtimes = {}
    for name, graph in graphs.items():
        tokenizer = local_onnx._open_tokenizer(model_dir, spec.max_seq_length)
        runtimes[name, "one"] = local_onnx._Runtime(open_session(graph, 1), tokenizer, spec)
        runtimes[name, "intra"] = local_onnx._Runtime(open_session(graph, cores), tokenizer, spec)
    embedders = {
        "float": LocalOnnxEmbedder(batch_size=BATCH),
        "int8": LocalOnnxEmbedder("all-MiniLM-L6-v2-int8", batch_size=BATCH),
    }
    for embedder in embedders.values():
        await embedder.embed(texts[:4])  # load outside the timing
    for runtime in runtimes.values():
        runtime.embed_batch(texts[:4])

    seconds: dict[tuple[str, str], list[float]] = {}
    vectors: dict[str, np.ndarray] = {}
    for _ in range(args.rounds):
        for name in graphs:
            for mode in ("one", "every", "intra"):
                if mode == "every":
                    started = time.perf_counter()
                    vectors[name] = await embedders[name].embed(texts)
                    elapsed = time.perf_counter() - started
                else:
                    runtime = runtimes[name, mode]
                    elapsed, _ = await asyncio.to_thread(timed, partial(one_at_a_time, runtime, texts))
                seconds.setdefault((name, mode), []).append(elapsed)
    rate = {key: len(texts) / statistics.median(values) for key, values in seconds.items()}
    st_rate = sentence_transformers_rate(model_dir, texts, args.rounds, args.st_python)
    cosines = (vectors["int8"].astype(np.float64) * vectors["float"]).sum(axis=1)

    base = rate["float", "one"]
    labels = {
        "one": "one batch at a time (before)",
        "every": "every core (shipped)",
        "intra": f"intra-op threads = {cores}",
    }
    rows = [
        f"| {name} | {labels[mode]} | {rate[name, mode]:.1f} | {rate[name, mode] / base:.2f}x | "
        + (f"{rate[name, mode] / st_rate:.2f}x |" if st_rate else "not measured |")
        for name in graphs
        for mode in ("one", "every", "intra")
    ]
    best = max(rate["int8", "every"], rate["float", "every"])
    full_rate = rate["float", "every"], rate["int8", "every"]
    lines = [
        HEADING,
        "",
        "```",
        f"python bench/local_embeddings.py --texts {args.texts} --rounds {args.rounds}"
        + (" --st-python PYTHON_WITH_TORCH_EXTRA" if args.st_python != sys.executable else ""),
        "```",
        "",
        f"{machine()} {len(texts)} SciFact abstracts (title + text, ~256 tokens after truncation), batches of "
        f"{BATCH}, every configuration in the same run, median of {args.rounds} round(s). texts/s; ratios are "
        "to float one-batch-at-a-time and to sentence-transformers (torch CPU, batch 32) measured in the same run.",
        "",
        "| model | how | texts/s | vs before | vs sentence-transformers |",
        "|---|---|---:|---:|---:|",
        *rows,
        "",
        "| what | float | int8 |",
        "|---|---:|---:|",
        f"| session from the cached graph + tokenizer, median of 3 | {statistics.median(loads['float']) * 1000:.0f} ms "
        f"| {statistics.median(loads['int8']) * 1000:.0f} ms |",
        f"| making the int8 graph from the float one (once per machine, child process) | - | {quantize_s:.1f} s |",
        f"| SciFact full index, extrapolated: 13,071 chunks (default chunking) at this rate, every core "
        f"| {13071 / full_rate[0] / 60:.1f} min | {13071 / full_rate[1] / 60:.1f} min |",
        "",
        f"int8 vs float, cosine of the same texts' vectors: min {cosines.min():.4f}, 1st percentile "
        f"{np.percentile(cosines, 1):.4f}, mean {cosines.mean():.4f} (the bar for the default: >= 0.99).",
    ]
    if st_rate is None:
        lines += [
            "",
            "sentence-transformers/torch are not installed in this environment: the ST column is not measured. "
            f"The issue measured ST at about 12 texts/s on these texts on 2 cores; the best rate here is {best:.1f}.",
        ]
    return "\n".join(lines) + "\n"


_ST_CHILD = r"""
import json, statistics, sys, time
from sentence_transformers import SentenceTransformer
model_dir, texts_file, rounds, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
texts = json.load(open(texts_file, encoding="utf-8"))
model = SentenceTransformer(model_dir, device="cpu")
model.encode(texts[:4])
times = []
for _ in range(rounds):
    started = time.perf_counter()
    model.encode(texts, batch_size=batch)
    times.append(time.perf_counter() - started)
print(len(texts) / statistics.median(times))
"""


def sentence_transformers_rate(model_dir: Path, texts: list[str], rounds: int, python: str) -> float | None:
    """sentence-transformers (torch CPU, its default threads: every core) on the same texts and weights, in a
    child interpreter `python` (one with the `torch` extra; torch stays out of this process); None if that
    interpreter has no sentence-transformers."""
    probe = subprocess.run([python, "-c", "import sentence_transformers"], capture_output=True)
    if probe.returncode != 0:
        return None
    with tempfile.NamedTemporaryFile("w", suffix=".json", encoding="utf-8", delete=False) as fh:
        json.dump(texts, fh)
    try:
        command = [python, "-c", _ST_CHILD, str(model_dir), fh.name, str(rounds), str(BATCH)]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
    finally:
        os.unlink(fh.name)
    return float(done.stdout.strip().splitlines()[-1])


async def quality() -> str:
    """The int8 default's bar: SciFact nDCG@10 and cosine to the float model, both models as shipped."""
    from mini.embeddings.local_onnx import LocalOnnxEmbedder
    from mini.eval.beir import load_beir

    embedders = {
        "float": LocalOnnxEmbedder(batch_size=BATCH),
        "int8": LocalOnnxEmbedder("all-MiniLM-L6-v2-int8", batch_size=BATCH),
    }
    from mini.eval.metrics import mean, ndcg_at_k

    dataset = await asyncio.to_thread(load_beir, SCIFACT, "test")
    ids = [doc.metadata["doc_id"] for doc in dataset.corpus]
    docs = [doc.text for doc in dataset.corpus]
    qids = list(dataset.queries)
    scores = {}
    corpora = {}
    for name, embedder in embedders.items():
        started = time.perf_counter()
        corpus = corpora[name] = await embedder.embed(docs)
        elapsed = time.perf_counter() - started
        queries = await embedder.embed([dataset.queries[q] for q in qids], input_type="query")
        top = np.argsort(-(queries @ corpus.T), axis=1)[:, :10]
        scores[name] = (
            mean(
                ndcg_at_k([ids[i] for i in row], dataset.qrels[q], 10)
                for q, row in zip(qids, top, strict=True)
            ),
            elapsed,
        )
    (f_ndcg, f_s), (q_ndcg, q_s) = scores["float"], scores["int8"]
    cosines = (corpora["int8"].astype(np.float64) * corpora["float"]).sum(axis=1)
    verdict = "met" if cosines.min() >= 0.99 and f_ndcg - q_ndcg <= 0.005 else "NOT met"
    return "\n".join(
        [
            QUALITY_HEADING,
            "",
            "```",
            "python bench/local_embeddings.py --ndcg",
            "```",
            "",
            f"{machine()} The bar for making int8 the default (issue 21): cosine >= 0.99 to the float model on "
            f"SciFact texts and nDCG@10 down by at most 0.005. Run of {time.strftime('%Y-%m-%d %H:%M')}: **{verdict}**.",
            "",
            "| | float `local:all-MiniLM-L6-v2` | int8 `local:all-MiniLM-L6-v2-int8` (default) |",
            "|---|---:|---:|",
            f"| SciFact test nDCG@10, dense over whole abstracts ({len(docs):,}, 256 tokens), {len(qids)} queries "
            f"| {f_ndcg:.4f} | {q_ndcg:.4f} (drop {f_ndcg - q_ndcg:+.4f}) |",
            f"| cosine to the float vector, all {len(docs):,} abstracts: min / 1st percentile / mean | 1 "
            f"| {cosines.min():.4f} / {np.percentile(cosines, 1):.4f} / {cosines.mean():.4f} |",
            f"| embedding the {len(docs):,} abstracts, every core (timing only indicative: other jobs may run) "
            f"| {f_s:.0f} s | {q_s:.0f} s |",
            "",
            "How the int8 graph is made and why the first two layers' FFN outputs stay float: "
            "docs/design-decisions.md (issue 21).",
        ]
    )


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--texts", type=int, default=256)
    options.add_argument("--rounds", type=int, default=1)
    options.add_argument(
        "--ndcg",
        action="store_true",
        help="instead: SciFact nDCG@10 and cosine, float vs int8 (long; own section)",
    )
    options.add_argument(
        "--st-python",
        default=sys.executable,
        help="interpreter with sentence-transformers + torch for the comparison (default: this one)",
    )
    options.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = options.parse_args()
    section = asyncio.run(quality() if args.ndcg else measure(args))
    print(section)
    if not args.no_write:
        write_section(section, QUALITY_HEADING if args.ndcg else HEADING)
        print("BENCHMARKS.md updated", file=sys.stderr)


if __name__ == "__main__":
    main()
