"""Indexing the whole of BEIR SciFact with the local model: wall time, chunks, chunks/s.

    python bench/scifact_index.py [--data ../shared/data/scifact] [--embedding-model local:all-MiniLM-L6-v2]

What `mini eval beir` does first: the 5,183 abstracts (title + text) ingested with the default chunking into a
fresh embedded store, embedded by the local model on every core (default: the int8 variant). The ONNX graphs
are built beforehand (a first use on a machine builds and quantizes once: not counted). Prints markdown.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

try:  # `python bench/scifact_index.py`; `python -m bench.scifact_index` finds bench._common
    from _common import REPO, machine, run
except ModuleNotFoundError:
    from bench._common import REPO, machine, run

SCIFACT = Path(os.environ.get("SCIFACT_DIR", REPO.parent / "shared" / "data" / "scifact"))


async def main_async(args: argparse.Namespace) -> str:
    from mini import AgenticRAG, EmbeddingModel, VectorStore
    from mini.eval.beir import ingest_beir, load_beir

    dataset = await asyncio.to_thread(load_beir, args.data, "test")
    model = EmbeddingModel(args.embedding_model) if args.embedding_model else EmbeddingModel()
    await model.embed_async(["warm up: build or load the graph, outside the timing"])
    with tempfile.TemporaryDirectory() as tmp:
        rag = AgenticRAG(VectorStore(tmp, collection_name="scifact"), model)
        started = time.perf_counter()
        report = await ingest_beir(rag, dataset)
        wall = time.perf_counter() - started
        await rag.aclose()
    assert report.ok, report.failures
    command = "python bench/scifact_index.py" + (
        f" --embedding-model {args.embedding_model}" if args.embedding_model else ""
    )
    return "\n".join(
        [
            f"    {command}",
            "",
            f"{machine()} Model `{model.name}`. {len(dataset.corpus):,} abstracts -> {report.chunks_added:,} "
            f"chunks in {report.embedding_requests:,} batches: **{wall:.0f} s ({wall / 60:.1f} min)**, "
            f"{report.chunks_added / wall:.1f} chunks/s, wall time of the whole ingestion (read, chunk, embed, "
            "write, index).",
        ]
    )


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--data", type=Path, default=SCIFACT)
    options.add_argument("--embedding-model", help="default: the configured default (local int8)")
    run(main_async, options)


if __name__ == "__main__":
    main()
